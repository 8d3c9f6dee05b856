package lab_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// TestScenarios is the lab's ground truth: for every scenario, each client
// run from a node ends as the scenario's header says. One lab serves all
// scenarios; LoadScenario switches them.
func TestScenarios(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 2})
	ctx := context.Background()
	node := l.Node(1)
	for _, s := range lab.Scenarios() {
		if s.Burst != nil {
			continue // TestBurst
		}
		t.Run(s.Name, func(t *testing.T) {
			if err := l.LoadScenario(s.Name); err != nil {
				t.Fatal(err)
			}
			if got := l.Scenario(); got != s.Name {
				t.Fatalf("Scenario() = %q after loading %q", got, s.Name)
			}
			results, err := l.ProbeAll(ctx, node)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				t.Logf("%s", r)
			}
			for _, m := range s.Check(results) {
				t.Errorf("%s", m)
			}
		})
	}
}

// Blocked ports fail fast enough for tests, and the way a person would
// recognise: a reset is refused at once, an ICMP admin-prohibited is "No
// route to host".
func TestBlockedPortErrors(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 1})
	ctx := context.Background()
	tests := []struct {
		scenario, probe string
		want            lab.Outcome
		wantOutput      string
	}{
		{"reject-xcatd", "xcatd-tcp", lab.OutcomeRefused, "connection refused"},
		{"prohibit-status", "status-tcp", lab.OutcomeUnreachable, "no route to host"},
		{"drop-tftp", "tftp", lab.OutcomeTimeout, "Transfer timed out"},
		{"open", "http-alt", lab.OutcomeTimeout, "Timeout was reached"},
	}
	for _, tt := range tests {
		t.Run(tt.scenario+"/"+tt.probe, func(t *testing.T) {
			if err := l.LoadScenario(tt.scenario); err != nil {
				t.Fatal(err)
			}
			r, err := l.Probe(ctx, l.Node(1), tt.probe)
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != tt.want || !strings.Contains(r.Output, tt.wantOutput) {
				t.Errorf("%s", lab.Mismatch{Result: r, Want: tt.want})
			}
			t.Logf("%s after %v", r.Outcome, r.Duration)
		})
	}
}

// TestCaptureKeepsLastPackets sends a few datagrams and stops the capture
// at once: every one of them must be in the file (tcpdump ends on SIGINT
// without reading the packet ring's open block; Stop must wait for it).
func TestCaptureKeepsLastPackets(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 1})
	ctx := context.Background()
	const datagrams, port = 5, 9 // discard: nobody listens, nothing answers
	c, err := l.StartCapture(ctx, l.Node(1), "", fmt.Sprintf("udp dst port %d", port))
	if err != nil {
		t.Fatal(err)
	}
	send := fmt.Sprintf("for i in $(seq %d); do echo last > /dev/udp/%s/%d; done", datagrams, l.MN().Addr, port)
	if out, err := l.Command(ctx, l.Node(1), "bash", "-c", send).CombinedOutput(); err != nil {
		_, _ = c.Stop()
		t.Fatalf("sending: %v: %s", err, out)
	}
	file, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if n, known := c.Dropped(); !known || n != 0 {
		t.Errorf("tcpdump dropped %d packets (known: %v)", n, known)
	}
	if written := len(readCapture(t, file)); written != datagrams {
		t.Errorf("the capture holds %d of the %d datagrams sent just before Stop", written, datagrams)
	}
}

// A client that exits 0 but leaves a child holding its output open is
// still judged by what it did: the lab does not wait for the child, and the
// run is not a failure.
func TestRunOutputHeldOpen(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 1})
	r := l.Run(context.Background(), l.Node(1), 20*time.Second, "sh", "-c", "echo started; sleep 8 & exit 0")
	if r.Outcome != lab.OutcomeOK || !strings.Contains(r.Output, "started") {
		t.Errorf("%v, want ok with its output", r)
	}
	if r.Duration > 7*time.Second {
		t.Errorf("the run took %v: it waited for the child", r.Duration)
	}
}

// TestTFTPNoHelper shows why the scenario blocks TFTP: the read request
// reaches mn and the server sends DATA from a new port, but no DATA
// reaches the node, because the firewall cannot relate it to the request.
func TestTFTPNoHelper(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 1, Scenario: "tftp-no-helper"})
	ctx := context.Background()
	atMN, err := l.StartCapture(ctx, l.MN(), "", "udp")
	if err != nil {
		t.Fatal(err)
	}
	atNode, err := l.StartCapture(ctx, l.Node(1), "", "udp")
	if err != nil {
		t.Fatal(err)
	}
	r := l.TFTPGet(ctx, l.Node(1))
	files, err := lab.StopCaptures(atMN, atNode)
	if err != nil {
		t.Fatal(err)
	}
	mnFile, nodeFile := files[0], files[1]
	for _, c := range []*lab.Capture{atMN, atNode} {
		if n, known := c.Dropped(); !known || n != 0 {
			t.Errorf("tcpdump writing %s dropped %d packets (known: %v): the counts below prove nothing", c.Path, n, known)
		}
	}
	if r.Outcome != lab.OutcomeTimeout {
		t.Errorf("TFTP fetch: %s, want timeout: %s", r.Outcome, r.Output)
	}
	mn := countTFTP(t, mnFile, l.MN().Addr.String())
	node := countTFTP(t, nodeFile, l.MN().Addr.String())
	t.Logf("on mn: %+v; on the node: %+v", mn, node)
	if mn.rrq == 0 || mn.data == 0 {
		t.Errorf("on mn: %d read requests in, %d DATA out; want both", mn.rrq, mn.data)
	}
	if node.rrq == 0 || node.data != 0 {
		t.Errorf("on the node: %d read requests out, %d DATA in; want requests and no DATA", node.rrq, node.data)
	}

	// The same exchange with the helper (scenario open) succeeds.
	if err := l.LoadScenario("open"); err != nil {
		t.Fatal(err)
	}
	if r := l.TFTPGet(ctx, l.Node(1)); r.Outcome != lab.OutcomeOK {
		t.Errorf("TFTP with the helper: %s", r.Output)
	}
}

type tftpCounts struct{ rrq, data int }

// countTFTP counts, in a pcap file, read requests to the server's port 69
// and DATA from the server's other ports.
func countTFTP(t *testing.T, file, server string) tftpCounts {
	t.Helper()
	var c tftpCounts
	for _, data := range readCapture(t, file) {
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil || len(udp.Payload) < 2 {
			continue
		}
		const opRRQ, opDATA = 1, 3
		switch op := binary.BigEndian.Uint16(udp.Payload); {
		case op == opRRQ && udp.DstPort == 69 && ip.DstIP.String() == server:
			c.rrq++
		case op == opDATA && ip.SrcIP.String() == server && udp.SrcPort != 69:
			c.data++
		}
	}
	return c
}

// readCapture returns the frames of a pcap file.
func readCapture(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, data)
	}
}

// TestBurst provisions 50 nodes at once: all succeed with the open
// firewall, and under the burst scenario every node installs and every
// status report to TCP 3002 times out.
func TestBurst(t *testing.T) {
	s, err := lab.ScenarioByName("burst")
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Start(t, lab.Config{Nodes: s.Burst.Nodes})
	ctx := context.Background()

	open := l.Burst(ctx, l.Nodes(), s.Burst.Concurrency)
	t.Logf("open: %s", open)
	for _, run := range open.Runs {
		if !run.OK() {
			for _, st := range run.Steps {
				if st.Result.Outcome != lab.OutcomeOK {
					t.Errorf("open: %s %s: %s: %s", run.Node, st.Name, st.Result.Outcome, st.Result.Output)
				}
			}
		}
	}

	if err := l.LoadScenario(s.Name); err != nil {
		t.Fatal(err)
	}
	blocked := l.Burst(ctx, l.Nodes()[:s.Burst.Nodes], s.Burst.Concurrency)
	t.Logf("burst: %s", blocked)
	for _, m := range s.CheckBurst(blocked) {
		t.Errorf("%s", m)
	}
	if n := blocked.Counts()["status-booted"][lab.OutcomeTimeout]; n != s.Burst.Nodes {
		t.Errorf("%d of %d status reports timed out", n, s.Burst.Nodes)
	}
}

// The management node reaches the hardware: IPMI to the BMC and SNMP to
// the switch cross fw too.
func TestFromManagementNode(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 1})
	results, err := l.ProbeAll(context.Background(), l.MN(), "ipmi", "snmp")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Outcome != lab.OutcomeOK {
			t.Errorf("%s from mn: %s: %s", r.Probe, r.Outcome, r.Output)
		}
	}
}

// TestIsolation checks that the lab stays in its namespaces: no default
// route anywhere, no IPv6 address, nothing created in the host's namespace,
// and the daemons listen where they say.
func TestIsolation(t *testing.T) {
	before := hostLinks(t)
	l := labtest.Start(t, lab.Config{Nodes: 2})
	for _, h := range l.Hosts() {
		out, err := exec.Command("ip", "-n", h.Netns, "route", "show", "default").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: default route %q (%v)", h.Name, out, err)
		}
		out, err = exec.Command("ip", "-n", h.Netns, "-6", "addr", "show", "scope", "global").CombinedOutput()
		if err != nil || strings.Contains(string(out), "inet6") {
			t.Errorf("%s: IPv6 addresses %q (%v)", h.Name, out, err)
		}
		out, err = exec.Command("ip", "-n", h.Netns, "-6", "addr", "show", "scope", "link").CombinedOutput()
		if err != nil || strings.Contains(string(out), "inet6") {
			t.Errorf("%s: IPv6 link-local addresses %q (%v)", h.Name, out, err)
		}
	}
	if after := hostLinks(t); after != before {
		t.Errorf("the host's links changed:\nbefore %s\nafter  %s", before, after)
	}
	if got := l.MNInterface(); got.Netns != l.MN().Netns || got.Name != "eth0" {
		t.Errorf("MNInterface() = %v", got)
	}
	// fw's node-side interface is a veth, not the bridge: XDP there sees
	// every forwarded frame.
	out, err := exec.Command("ip", "-n", l.FWNodeInterface().Netns, "-d", "link", "show", l.FWNodeInterface().Name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "veth") {
		t.Errorf("fw node interface %v: %s (%v)", l.FWNodeInterface(), out, err)
	}
	if len(l.Daemons()) < 10 {
		t.Errorf("only %d daemons: %+v", len(l.Daemons()), l.Daemons())
	}
}

func hostLinks(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return strings.Join(names, " ")
}

// TestManyNodes builds the largest lab and checks that the last node gets
// its lease through the relay. BenchmarkUpDown measures the time.
func TestManyNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("200 namespaces: not in -short")
	}
	start := time.Now()
	l := labtest.Start(t, lab.Config{Nodes: lab.MaxNodes})
	t.Logf("%d nodes up in %v", lab.MaxNodes, time.Since(start))
	ctx := context.Background()
	for _, h := range []lab.Host{l.Node(1), l.Node(lab.MaxNodes)} {
		if r := l.DHCP(ctx, h); r.Outcome != lab.OutcomeOK {
			t.Errorf("%s: %s", h.Name, r.Output)
		}
	}
	start = time.Now()
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes down in %v", lab.MaxNodes, time.Since(start))
}

// A scenario of one's own, outside the built-in ones, loads the same way:
// here UDP 3001 is rejected with ICMP port unreachable.
func TestLoadScenarioFile(t *testing.T) {
	l := labtest.Start(t, lab.Config{Nodes: 1})
	file := filepath.Join(t.TempDir(), "reject-xcatd-udp.nft")
	src := `# scenario: reject-xcatd-udp
# summary: xcatd's UDP 3001 answers with ICMP port unreachable.
# expect: required_port_blocked xcatdport/udp reason=icmp-port-unreachable server=mn
# probe: xcatd-udp=refused http-alt=timeout
include "open.nft"
add rule inet portwatch_lab scenario ip daddr 10.77.0.10 udp dport 3001 reject
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := l.LoadScenarioFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if l.Scenario() != "reject-xcatd-udp" {
		t.Errorf("Scenario() = %q", l.Scenario())
	}
	results, err := l.ProbeAll(context.Background(), l.Node(1), "xcatd-udp", "xcatd-tcp", "http-alt")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Check(results) {
		t.Errorf("%s", m)
	}
	rules, err := l.Ruleset()
	if err != nil || !strings.Contains(rules, "udp dport 3001 reject") {
		t.Errorf("fw's rule set: %v\n%s", err, rules)
	}
}
