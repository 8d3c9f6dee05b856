package lab

import (
	"flag"
	"net/netip"
	"strings"
	"testing"

	goldenfile "portwatch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, name, []byte(got), *update)
}

// The ip batches are what a person reads to see what the lab builds.
func TestTopologyBatches(t *testing.T) {
	topo := newTopology("pwl-", 2)
	var b strings.Builder
	section := func(title string, lines []string) {
		b.WriteString("# " + title + "\n" + strings.Join(lines, "\n") + "\n\n")
	}
	section("ip -batch (host)", topo.hostBatch())
	section("ip -n pwl-br -batch", topo.bridgeBatch())
	section("ip -n pwl-fw -batch", topo.fwBatch())
	section("ip -n pwl-mn -batch", hostConfigBatch(topo.mn, MgmtNet))
	section("ip -n pwl-bmc -batch", hostConfigBatch(topo.bmc, BMCNet))
	section("ip -n pwl-sw -batch", hostConfigBatch(topo.sw, SwitchNet))
	for _, n := range topo.nodes {
		section("ip -n "+n.Netns+" -batch", hostConfigBatch(n, NodeNet))
	}
	golden(t, "topology-2-nodes.golden", b.String())
}

func TestTopologyAddresses(t *testing.T) {
	topo := newTopology("x-", MaxNodes)
	seenAddr := map[netip.Addr]string{}
	seenMAC := map[string]string{}
	for _, h := range topo.all() {
		if !h.Addr.IsValid() {
			continue
		}
		if !LabNet.Contains(h.Addr) {
			t.Errorf("%s: %s is outside %s", h.Name, h.Addr, LabNet)
		}
		if other, ok := seenAddr[h.Addr]; ok {
			t.Errorf("%s and %s share %s", h.Name, other, h.Addr)
		}
		seenAddr[h.Addr] = h.Name
		if other, ok := seenMAC[h.MAC.String()]; ok {
			t.Errorf("%s and %s share %s", h.Name, other, h.MAC)
		}
		seenMAC[h.MAC.String()] = h.Name
		if h.Role != RoleFW && h.Addr.As4()[3] == routerOctet {
			t.Errorf("%s has fw's address %s", h.Name, h.Addr)
		}
	}
	last := topo.nodes[MaxNodes-1]
	if last.Name != "n200" || last.Addr != netip.MustParseAddr("10.77.1.210") || last.Addr.As4()[3] >= poolFirstOctet {
		t.Errorf("node 200 is %s %s, below the DHCP pool at .%d", last.Name, last.Addr, poolFirstOctet)
	}
}

func TestValidatePrefix(t *testing.T) {
	for prefix, ok := range map[string]bool{
		"pwl-": true, "pt3fa9c1-": true, "a-": true, "abcdefghijk-": true,
		"": false, "pwl": false, "Pwl-": false, "pw_l-": false, "1pw-": false, "-": false,
		"abcdefghijkl-": false, "pw-l-": false,
	} {
		if err := ValidatePrefix(prefix); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", prefix, err, ok)
		}
	}
}

// A prefix's pattern matches its own namespaces and nobody else's.
func TestLabNetnsPattern(t *testing.T) {
	re := labNetnsPattern("pwl-")
	for name, want := range map[string]bool{
		"pwl-mn": true, "pwl-fw": true, "pwl-br": true, "pwl-bmc": true, "pwl-sw": true, "pwl-n001": true, "pwl-n200": true,
		"pwl-x-mn": false, "pwl-n01": false, "pwl-n0001": false, "pwl-mnx": false, "xpwl-mn": false, "pwl-": false,
	} {
		if got := re.MatchString(name); got != want {
			t.Errorf("%q: match = %v, want %v", name, got, want)
		}
	}
}

func TestParseProcAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string
		bad  bool
	}{
		{in: "0A004D0A:0016", want: "10.77.0.10:22"},
		{in: "00000000:006F", want: "0.0.0.0:111"},
		{in: "0100007F:4E50", want: "127.0.0.1:20048"},
		{in: "0A004D0A", bad: true},
		{in: "0A004D:0016", bad: true},
		{in: "ZZ004D0A:0016", bad: true},
	}
	for _, tt := range tests {
		got, err := parseProcAddr(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseProcAddr(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestClassifyOutput(t *testing.T) {
	for out, want := range map[string]Outcome{
		"curl: (7) Failed to connect to 10.77.0.10 port 3001 after 0 ms: Connection refused":      OutcomeRefused,
		"ssh: connect to host 10.77.0.10 port 22: No route to host":                               OutcomeUnreachable,
		"curl: (28) Failed to connect to 10.77.0.10 port 8080 after 2000 ms: Timeout was reached": OutcomeTimeout,
		"tftp> Transfer timed out.":                                        OutcomeTimeout,
		"Timeout: No Response from 10.77.3.10.":                            OutcomeTimeout,
		"udhcpc: no lease, failing":                                        OutcomeTimeout,
		"rsync: failed to connect to 10.77.0.10: Connection reset by peer": OutcomeRefused,
		"Error: Unable to establish IPMI v2 / RMCP+ session":               OutcomeFailed,
	} {
		if got := ClassifyOutput(out); got != want {
			t.Errorf("ClassifyOutput(%q) = %s, want %s", out, got, want)
		}
	}
}
