package classify

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Flags
		wantErr string // a substring of the parse or validation error
	}{
		{
			name: "defaults",
			want: Flags{Window: 10 * time.Second, MinAttempts: 3, MinSpan: 3 * time.Second},
		},
		{
			name: "every flag",
			args: []string{"--window", "5s", "--min-attempts", "4", "--min-span", "2500ms",
				"--mgmt-net", "10.0.0.0/16", "--mgmt-net", "fd00:10::/64,192.168.7.0/24"},
			want: Flags{Window: 5 * time.Second, MinAttempts: 4, MinSpan: 2500 * time.Millisecond,
				MgmtNets: []netip.Prefix{
					netip.MustParsePrefix("10.0.0.0/16"),
					netip.MustParsePrefix("fd00:10::/64"),
					netip.MustParsePrefix("192.168.7.0/24"),
				}},
		},
		{
			name: "host bits are masked",
			args: []string{"--mgmt-net", "10.0.3.7/16"},
			want: Flags{Window: 10 * time.Second, MinAttempts: 3, MinSpan: 3 * time.Second,
				MgmtNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}},
		},
		{name: "zero window", args: []string{"--window", "0s"}, wantErr: "--window 0s: must be positive"},
		{name: "negative window", args: []string{"--window", "-1s"}, wantErr: "--window -1s: must be positive"},
		{name: "window too short", args: []string{"--window", "1ns"}, wantErr: "--window 1ns: must be at least 100ms"},
		{name: "zero attempts", args: []string{"--min-attempts", "0"}, wantErr: "--min-attempts 0: must be at least 1"},
		{name: "zero span", args: []string{"--min-span", "0s"}, wantErr: "--min-span 0s: must be positive"},
		{name: "bare address", args: []string{"--mgmt-net", "10.0.0.0"}, wantErr: "10.0.0.0 has no prefix length: write 10.0.0.0/32 for this one host"},
		{name: "bad prefix", args: []string{"--mgmt-net", "10.0.0.0/33"}, wantErr: `"10.0.0.0/33" is not a CIDR prefix (want one such as 10.0.0.0/16 or fd00::/64)`},
		{name: "not an address", args: []string{"--mgmt-net", "mgmt"}, wantErr: `"mgmt" is not a CIDR prefix`},
		{name: "bad duration", args: []string{"--window", "10"}, wantErr: `invalid argument "10" for "--window"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Flags
			fs := pflag.NewFlagSet("portwatch", pflag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			f.Register(fs)
			err := fs.Parse(tt.args)
			if err == nil {
				err = f.Validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Window != tt.want.Window || f.MinAttempts != tt.want.MinAttempts || f.MinSpan != tt.want.MinSpan ||
				!slices.Equal(f.MgmtNets, tt.want.MgmtNets) {
				t.Errorf("flags %+v, want %+v", f, tt.want)
			}
			cfg, err := f.Config(mustCatalog(t), Observer{Host: "mn1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := New(cfg); err != nil {
				t.Errorf("New with the flags' config: %v", err)
			}
		})
	}
}

// TestFlagHelp: every flag explains itself, with its default.
func TestFlagHelp(t *testing.T) {
	var f Flags
	fs := pflag.NewFlagSet("portwatch", pflag.ContinueOnError)
	f.Register(fs)
	help := fs.FlagUsages()
	for _, want := range []string{
		"--window duration", "(default 10s)",
		"--min-attempts int", "SYN retransmits count as one attempt", "(default 3)",
		"--min-span duration", "parallel requests", "(default 3s)",
		"--mgmt-net CIDR", "repeatable", "every server",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
}

func TestNewConfig(t *testing.T) {
	cat := mustCatalog(t)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no catalog", Config{}, "no catalog"},
		{"negative window", Config{Catalog: cat, Window: -time.Second}, "window -1s is negative"},
		{"negative attempts", Config{Catalog: cat, MinAttempts: -1}, "min attempts -1 is negative"},
		{"negative span", Config{Catalog: cat, MinSpan: -time.Second}, "min span -1s is negative"},
		{"negative cap", Config{Catalog: cat, AffectedCap: -1}, "affected cap -1 is negative"},
		{"invalid prefix", Config{Catalog: cat, MgmtNets: []netip.Prefix{{}}}, "not a valid prefix"},
		{"defaults", Config{Catalog: cat}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.cfg.Window != DefaultWindow || c.cfg.MinAttempts != DefaultMinAttempts ||
				c.cfg.MinSpan != DefaultMinSpan || c.cfg.AffectedCap != DefaultAffectedCap {
				t.Errorf("defaults not applied: %+v", c.cfg)
			}
		})
	}
}

// TestThresholdsFromConfig: MinAttempts, MinSpan and AffectedCap are honoured.
func TestThresholdsFromConfig(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat, MinAttempts: 5, MinSpan: 10 * time.Second, AffectedCap: 1})
	w := win{at: 10, ex: []xc{
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 9, attempts: 4},
		{svc: "xcatiport/tcp", client: node2, server: mn, first: 1, last: 9, attempts: 4},
	}}
	if evs := c.Update(snapshot(t, cat, w)); len(evs) != 0 {
		t.Errorf("4 attempts over 8s with MinAttempts 5: %q", shorts(evs))
	}
	w = win{at: 20, ex: []xc{
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 10.5, attempts: 5},
		{svc: "xcatiport/tcp", client: node2, server: mn, first: 1, last: 11, attempts: 5},
	}}
	want := []string{"required_port_blocked xcatiport/tcp 10.0.1.12->10.0.0.1 no-reply"}
	if got := shorts(c.Update(snapshot(t, cat, w))); !slices.Equal(got, want) {
		t.Errorf("MinSpan 10s:\n got  %q\n want %q", got, want)
	}
	w.at, w.ex[0].last, w.ex[0].attempts = 30, 25, 6
	c.Update(snapshot(t, cat, w))
	if got := summaryLine(c.Summary(), "xcatiport/tcp"); got != "xcatiport/tcp blocked no-reply [10.0.1.11->10.0.0.1] +1" {
		t.Errorf("AffectedCap 1: %q", got)
	}
}

// TestScopeMappedAddresses: a server given as an IPv4-mapped IPv6 address
// is judged against IPv4 management networks, and shown as IPv4.
func TestScopeMappedAddresses(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat, MgmtNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}})
	evs := c.Update(snapshot(t, cat, win{at: 10, ex: []xc{
		{svc: "xcatiport/tcp", client: "::ffff:10.0.1.11", server: "::ffff:10.0.0.1", first: 1, last: 1, attempts: 1, closed: 1},
		{svc: "xcatiport/tcp", client: "::ffff:10.0.1.11", server: "::ffff:10.0.9.1", first: 1, last: 1, attempts: 1, closed: 1},
	}}))
	want := []string{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 icmp-port-unreachable"}
	if got := shorts(evs); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
