package loader

import (
	"bytes"
	"encoding/binary"
	"flag"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	goldenfile "portwatch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestXDPModeSet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want XDPMode
		err  bool
	}{
		{"auto", XDPAuto, false},
		{"native", XDPNative, false},
		{"NATIVE", XDPNative, false},
		{"drv", XDPNative, false},
		{"generic", XDPGeneric, false},
		{"skb", XDPGeneric, false},
		{"hw", "", true},
		{"", "", true},
	} {
		var m XDPMode
		err := m.Set(tc.in)
		if (err != nil) != tc.err || (err == nil && m != tc.want) {
			t.Errorf("Set(%q) = %q, %v; want %q, error %v", tc.in, m, err, tc.want, tc.err)
		}
	}
}

func TestFlags(t *testing.T) {
	cat := testCatalog(t)
	for _, tc := range []struct {
		name    string
		args    []string
		want    Config
		wantErr string
	}{
		{
			name: "defaults are the C program's",
			want: Config{XDPMode: XDPAuto, Egress: EgressAuto, Sizes: MapSizes{65536, 16384, 4096, 16384}},
		},
		{
			name: "every flag",
			args: []string{"--xdp-mode=generic", "--egress-attach=clsact", "--max-exchanges=1000000",
				"--max-ephemeral=512", "--max-unexpected=256", "--max-flows=2048"},
			want: Config{XDPMode: XDPGeneric, Egress: EgressClsact, Sizes: MapSizes{1000000, 512, 256, 2048}},
		},
		{name: "unknown mode", args: []string{"--xdp-mode=offload"}, wantErr: `unknown XDP mode "offload"`},
		{name: "zero entries", args: []string{"--max-exchanges=0"}, wantErr: "--max-exchanges 0: want 256 to 16777216 entries"},
		{name: "too many entries", args: []string{"--max-flows=100000000"}, wantErr: "--max-flows 100000000"},
		{name: "unknown egress", args: []string{"--egress-attach=xdp"}, wantErr: `unknown egress attach kind "xdp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("observe", pflag.ContinueOnError)
			fs.SetOutput(new(bytes.Buffer))
			var f Flags
			f.Register(fs)
			err := fs.Parse(tc.args)
			var cfg Config
			if err == nil {
				cfg, err = f.Config([]string{"eth0"}, cat, quietLog())
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.XDPMode != tc.want.XDPMode || cfg.Egress != tc.want.Egress || cfg.Sizes != tc.want.Sizes {
				t.Errorf("got mode %s egress %s sizes %+v; want %s %s %+v", cfg.XDPMode, cfg.Egress, cfg.Sizes,
					tc.want.XDPMode, tc.want.Egress, tc.want.Sizes)
			}
			if cfg.Catalog != cat || len(cfg.Interfaces) != 1 {
				t.Errorf("catalog or interfaces not carried over: %+v", cfg)
			}
		})
	}
}

// The flags people read: help text and hidden flags.
func TestFlagsHelp(t *testing.T) {
	fs := pflag.NewFlagSet("observe", pflag.ContinueOnError)
	var f Flags
	f.Register(fs)
	if fl := fs.Lookup("egress-attach"); fl == nil || !fl.Hidden {
		t.Error("--egress-attach must exist and be hidden")
	}
	golden(t, "flags.golden", []byte(fs.FlagUsagesWrapped(100)))
}

func TestConfigValidate(t *testing.T) {
	cat := testCatalog(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no catalog", Config{}, "no catalog"},
		{"interface twice", Config{Catalog: cat, Interfaces: []string{"eth0", "eth0"}}, "interface eth0 is given twice"},
		{"empty interface", Config{Catalog: cat, Interfaces: []string{""}}, "an empty interface name"},
		{"small table", Config{Catalog: cat, Sizes: MapSizes{Exchanges: 10}}, "--max-exchanges 10"},
		{"bad mode", Config{Catalog: cat, XDPMode: "hw"}, "--xdp-mode"},
	} {
		err := tc.cfg.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if err := (Config{Catalog: cat}).withDefaults().validate(); err != nil {
		t.Errorf("a config of defaults: %v", err)
	}
	// The other names the flags take are made canonical, so that the
	// attach code, which compares modes, sees them.
	c := Config{Catalog: cat, XDPMode: "skb", Egress: "TCX"}.withDefaults()
	if c.XDPMode != XDPGeneric || c.Egress != EgressTCX {
		t.Errorf("skb and TCX became %q and %q", c.XDPMode, c.Egress)
	}
}

func TestOpenNeedsAnInterface(t *testing.T) {
	_, err := Open(Config{Catalog: testCatalog(t)})
	if err == nil || !strings.Contains(err.Error(), "--interface") {
		t.Fatalf("Open without interfaces: %v", err)
	}
}

func TestLearnFrame(t *testing.T) {
	sample := func(frameLen uint32, body []byte) []byte {
		b := binary.NativeEndian.AppendUint32(nil, frameLen)
		b = binary.NativeEndian.AppendUint32(b, 0)
		return append(b, body...)
	}
	frame := []byte{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		name   string
		sample []byte
		want   []byte
		err    bool
	}{
		{"frame and perf padding", sample(5, append(frame, 0, 0, 0)), frame, false},
		{"exact", sample(5, frame), frame, false},
		{"empty frame", sample(0, nil), []byte{}, false},
		{"shorter than its header", []byte{1, 2, 3}, nil, true},
		{"claims more than it carries", sample(9, frame), nil, true},
	} {
		got, err := learnFrame(tc.sample)
		if (err != nil) != tc.err || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %x, %v; want %x, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, name, got, *update)
}
