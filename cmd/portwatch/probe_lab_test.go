package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"portwatch/classify"
	"portwatch/internal/privtest"
	"portwatch/lab"
	"portwatch/lab/labtest"
)

// labOpenStates is what a probe from a node to mn finds, row by row, when
// the firewall lets every catalog port through (scenario open): the
// services the lab runs answer; those it does not run (echo, conserver,
// NFS, RMC, NIM, snmptrapd, a PXE boot server, TFTP over TCP: lab/README.md,
// "Not there") are closed; syslog over UDP never answers; rsync/udp and
// xcatiport/udp have no request (docs/probe.md).
var labOpenStates = map[string]string{
	"xcatdport/tcp": "open", "xcatdport/udp": "open", "xcatiport/tcp": "open", "xcatiport/udp": "untestable",
	"xcatlport/tcp": "open", "echo-udp/udp": "closed", "ssh-tcp/tcp": "open", "rsync/tcp": "open",
	"rsync/udp": "untestable", "domain-tcp/tcp": "open", "domain-udp/udp": "open", "bootps/udp": "open",
	"tftp-tcp/tcp": "closed", "tftp-udp/udp": "open", "www-tcp/tcp": "open", "sunrpc-udp/udp": "open",
	"rsyslogd/tcp": "open", "rsyslogd/udp": "no-answer", "rmc-tcp/tcp": "closed", "rmc-udp/udp": "closed",
	"conserver/tcp": "closed", "nim/tcp": "closed", "nfsd-tcp/tcp": "closed", "nfsd-udp/udp": "closed",
	"mount-tcp/tcp": "open", "mount-udp/udp": "open", "awk/tcp": "closed", "snmptrap/tcp": "closed",
	"snmptrap/udp": "closed", "pxe/udp": "closed",
}

// stateOfReason is the probe state a scenario's blocking rule implies, by
// the reason its header expects the observer to report.
var stateOfReason = map[classify.Reason]string{
	classify.ReasonNoReply:             "no-answer",
	classify.ReasonReset:               "closed",
	classify.ReasonICMPAdminProhibited: "filtered",
	classify.ReasonICMPPortUnreachable: "closed",
}

// observerStates is what the observer on mn makes of each scenario's
// blocked rows: a rule on fw keeps the request from mn (blocked-inbound),
// except the missing TFTP helper, which lets the request in and drops the
// answer (blocked-return).
var observerStates = map[string]map[string]string{
	"open":            {},
	"unexpected-open": {},
	"drop-tftp":       {"tftp-udp/udp": "blocked-inbound"},
	"reject-xcatd":    {"xcatdport/tcp": "blocked-inbound"},
	"prohibit-status": {"xcatiport/tcp": "blocked-inbound"},
	"tftp-no-helper":  {"tftp-udp/udp": "blocked-return"},
	"burst":           {"xcatiport/tcp": "blocked-inbound"},
}

// labRun runs this test binary as portwatch inside the lab's namespaces.
type labRun struct {
	t   testing.TB
	l   *lab.Lab
	exe string
}

func startLab(t *testing.T) *labRun {
	t.Helper()
	l := labtest.Start(t, lab.Config{Nodes: 1})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &labRun{t: t, l: l, exe: exe}
}

func (r *labRun) command(ctx context.Context, h lab.Host, args ...string) *exec.Cmd {
	cmd := r.l.Command(ctx, h, r.exe, args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	return cmd
}

// portwatch runs one portwatch command in a host and returns its exit
// status and output.
func (r *labRun) portwatch(h lab.Host, stdin string, args ...string) (int, string, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := r.command(ctx, h, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		r.t.Fatalf("portwatch %v in %s: %v", args, h.Name, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// probeOutput is the JSON document of `probe --format json`, as a script
// reads it.
type probeOutput struct {
	Results []struct {
		Target      string   `json:"target"`
		Service     string   `json:"service"`
		Proto       string   `json:"proto"`
		Port        int      `json:"port"`
		Required    bool     `json:"required"`
		State       string   `json:"state"`
		Reason      string   `json:"reason"`
		ProbeReason string   `json:"probe_reason"`
		Evidence    string   `json:"evidence"`
		RTTms       *float64 `json:"rtt_ms"`
	} `json:"results"`
	Errors   []probeTargetError `json:"errors"`
	Observer *struct {
		Error string `json:"error"`
	} `json:"observer"`
	Summary probeSummary `json:"summary"`
}

func (r *labRun) probe(args ...string) (int, probeOutput, string) {
	r.t.Helper()
	code, out, errOut := r.portwatch(r.l.Node(1), "", append([]string{"probe", "--format", "json"}, args...)...)
	var doc probeOutput
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		r.t.Fatalf("probe %v: exit %d, not JSON (%v):\n%s\n%s", args, code, err, out, errOut)
	}
	return code, doc, errOut
}

// rows indexes results by "name/proto" (one target).
func (d probeOutput) rows() map[string]int {
	m := map[string]int{}
	for i, r := range d.Results {
		m[r.Service+"/"+r.Proto] = i
	}
	return m
}

// startObserver runs `portwatch observe` on mn's interface, serving its
// endpoint on mn's address, and returns the URL a node gives --observer.
func (r *labRun) startObserver() string {
	r.t.Helper()
	mn := r.l.MN()
	ready := filepath.Join(r.t.TempDir(), "ready")
	listen := netip.AddrPortFrom(mn.Addr, 9717).String()
	cmd := r.command(context.Background(), mn, "observe", "-i", mn.Iface, "-q", "--web.listen-address", listen, "--ready-file", ready)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return "http://" + listen
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			r.t.Fatalf("observe did not get ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *labRun) sysctl(h lab.Host, setting string) {
	r.t.Helper()
	if out, err := r.l.Command(context.Background(), h, "sysctl", "-w", setting).CombinedOutput(); err != nil {
		r.t.Fatalf("sysctl %s in %s: %v: %s", setting, h.Name, err, out)
	}
}

// loadScenario loads a firewall scenario and lets nodes reach the
// observer's endpoint, which no scenario allows by itself.
func (r *labRun) loadScenario(name string) {
	r.t.Helper()
	if err := r.l.LoadScenario(name); err != nil {
		r.t.Fatal(err)
	}
	rule := fmt.Sprintf("add rule inet portwatch_lab scenario ip daddr %s tcp dport 9717 accept", r.l.MN().Addr)
	if out, err := r.l.Command(context.Background(), r.l.FW(), "nft", strings.Fields(rule)...).CombinedOutput(); err != nil {
		r.t.Fatalf("nft %s: %v: %s", rule, err, out)
	}
}

// TestProbeLabScenarios probes mn from a node through every firewall
// scenario: without an observer (states as nmap gives them, compared with
// nmap itself on the TCP rows), then with the observer on mn.
func TestProbeLabScenarios(t *testing.T) {
	r := startLab(t)
	// mn answers every closed port: the probes back to back would
	// otherwise meet Linux's ICMP rate limit, which
	// TestProbeLabICMPRateLimit covers on its own.
	r.sysctl(r.l.MN(), "net.ipv4.icmp_ratelimit=0")
	observer := r.startObserver()
	mn := r.l.MN().Addr.String()
	for _, s := range lab.Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			r.t = t
			r.loadScenario(s.Name)
			want := map[string]string{}
			for row, state := range labOpenStates {
				want[row] = state
			}
			wantReason := map[string]string{}
			for _, e := range s.Expect {
				if e.Verdict == classify.RequiredPortBlocked && e.Server == "mn" {
					want[e.Service] = stateOfReason[e.Reason]
					wantReason[e.Service] = string(e.Reason)
				}
			}

			code, doc, stderr := r.probe(mn)
			if code != exitFailure {
				t.Errorf("exit %d, want %d: required rows are not open (conserver, echo: not in the lab)\n%s", code, exitFailure, stderr)
			}
			got := doc.rows()
			if len(got) != len(want) {
				t.Errorf("%d rows probed, want %d", len(got), len(want))
			}
			for row, state := range want {
				i, ok := got[row]
				if !ok {
					t.Errorf("%s: not probed", row)
					continue
				}
				res := doc.Results[i]
				if res.State != state {
					t.Errorf("%s: %s (%s), want %s", row, res.State, res.Evidence, state)
				}
				if reason := wantReason[row]; reason != "" && reason != "no-reply" && res.Reason != reason {
					t.Errorf("%s: reason %s, want %s", row, res.Reason, reason)
				}
			}
			if i, ok := got["xcatiport/tcp"]; ok && want["xcatiport/tcp"] == "filtered" &&
				!strings.Contains(doc.Results[i].Evidence, "from "+r.l.FW().Addr.String()) &&
				!strings.Contains(doc.Results[i].Evidence, "from 10.77.1.1") {
				t.Errorf("the ICMP error does not name the firewall: %s", doc.Results[i].Evidence)
			}
			r.compareWithNmap(doc)

			_, doc, stderr = r.probe("--observer", observer, mn)
			if doc.Observer == nil || doc.Observer.Error != "" {
				t.Fatalf("observer: %+v\n%s", doc.Observer, stderr)
			}
			obs, known := observerStates[s.Name]
			if !known {
				t.Fatalf("scenario %s is new: say in observerStates what the observer makes of it", s.Name)
			}
			got = doc.rows()
			for row, state := range want {
				wantObs := state
				switch {
				case obs[row] != "":
					wantObs = obs[row]
				case row == "rsyslogd/udp":
					wantObs = "open" // the observer saw the line arrive
				}
				if res := doc.Results[got[row]]; res.State != wantObs {
					t.Errorf("with the observer, %s: %s (%s), want %s", row, res.State, res.Evidence, wantObs)
				}
			}
		})
	}
}

// nmapRun is what `nmap -oX` says of the ports.
type nmapRun struct {
	Hosts []struct {
		Ports []struct {
			Protocol string `xml:"protocol,attr"`
			Port     int    `xml:"portid,attr"`
			State    struct {
				State  string `xml:"state,attr"`
				Reason string `xml:"reason,attr"`
			} `xml:"state"`
		} `xml:"ports>port"`
	} `xml:"host"`
}

// nmapState is the nmap port state a probe state corresponds to: nmap
// calls silence and every ICMP unreachable "filtered".
var nmapState = map[string]string{"open": "open", "closed": "closed", "filtered": "filtered", "no-answer": "filtered", "unreachable": "filtered"}

// compareWithNmap runs nmap's SYN scan on the TCP rows from the same node
// and checks it agrees with the probe.
func (r *labRun) compareWithNmap(doc probeOutput) {
	r.t.Helper()
	if _, err := exec.LookPath("nmap"); err != nil {
		if privtest.Required() {
			r.t.Fatal("nmap is missing (lab/packages.txt)")
		}
		r.t.Log("nmap is missing: not compared (install it from lab/packages.txt)")
		return
	}
	var ports []string
	probed := map[int]string{}
	for _, res := range doc.Results {
		if res.Proto == "tcp" && res.Port != 0 {
			ports = append(ports, strconv.Itoa(res.Port))
			probed[res.Port] = res.State
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := r.l.Command(ctx, r.l.Node(1), "nmap", "-n", "-Pn", "-sS", "--max-retries", "2", "-p", strings.Join(ports, ","),
		"-oX", "-", r.l.MN().Addr.String()).Output()
	if err != nil {
		r.t.Fatalf("nmap: %v", err)
	}
	var run nmapRun
	if err := xml.Unmarshal(out, &run); err != nil || len(run.Hosts) != 1 {
		r.t.Fatalf("nmap's XML: %v\n%s", err, out)
	}
	seen := 0
	for _, p := range run.Hosts[0].Ports {
		seen++
		if want := nmapState[probed[p.Port]]; p.State.State != want {
			r.t.Errorf("tcp/%d: nmap says %s (%s), probe says %s", p.Port, p.State.State, p.State.Reason, probed[p.Port])
		}
	}
	if seen != len(ports) {
		r.t.Errorf("nmap reported %d of the %d TCP ports", seen, len(ports))
	}
}

// TestProbeLabICMPRateLimit probes mn twice back to back with Linux's
// default ICMP rate limit (a burst of 6, then 1 a second per destination):
// the second run starts with the burst spent, and its slow pass still finds
// every closed port that answers requests.
func TestProbeLabICMPRateLimit(t *testing.T) {
	r := startLab(t)
	r.loadScenario("open")
	mn := r.l.MN().Addr.String()
	r.probe(mn)
	_, doc, _ := r.probe(mn)
	got := doc.rows()
	for _, row := range []string{"echo-udp/udp", "nfsd-udp/udp", "pxe/udp"} {
		if res := doc.Results[got[row]]; res.State != "closed" {
			t.Errorf("%s: %s (%s), want closed", row, res.State, res.Evidence)
		}
	}
	// Empty datagrams get no reply by design: closed when an ICMP error
	// came through, else silent with the hint that it may have been held.
	for _, row := range []string{"rmc-udp/udp", "snmptrap/udp"} {
		res := doc.Results[got[row]]
		if res.State != "closed" && !(res.State == "no-answer" && strings.Contains(res.Evidence, "ICMP errors for other ports")) {
			t.Errorf("%s: %s (%s)", row, res.State, res.Evidence)
		}
	}
}

// TestProbeLabGate checks the exit status and the events: a gate passes
// when every required row it probes is open, and fails, with a
// required_port_blocked event, when one is not.
func TestProbeLabGate(t *testing.T) {
	r := startLab(t)
	mn := r.l.MN().Addr.String()
	rows := "--service=xcatdport,xcatiport/tcp,ssh-tcp,www-tcp,tftp-udp,bootps,domain-udp"
	r.loadScenario("open")
	code, doc, stderr := r.probe(rows, mn)
	if code != exitOK || !doc.Summary.Passed || doc.Summary.RequiredOpen != 7 {
		t.Errorf("open: exit %d, summary %+v\n%s", code, doc.Summary, stderr)
	}

	r.loadScenario("drop-tftp")
	events := filepath.Join(t.TempDir(), "events.jsonl")
	code, doc, _ = r.probe(rows, "--output", "jsonl:"+events, mn)
	if code != exitFailure || doc.Summary.Passed || len(doc.Summary.NotOpen) != 1 ||
		doc.Summary.NotOpen[0] != mn+" tftp-udp/udp no-answer" {
		t.Errorf("drop-tftp: exit %d, summary %+v", code, doc.Summary)
	}
	b, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	var ev classify.Event
	if err := json.Unmarshal(b, &ev); err != nil || bytes.Count(b, []byte("\n")) != 1 {
		t.Fatalf("events file %q: %v", b, err)
	}
	if ev.Verdict != classify.RequiredPortBlocked || ev.Service != "tftp-udp" || ev.Reason != classify.ReasonNoReply ||
		ev.Server != mn || ev.Client != r.l.Node(1).Addr.String() || ev.Observer.Backend != "probe" || ev.Attempts != 3 {
		t.Errorf("event %+v", ev)
	}

	// DHCP through the relay, asked directly rather than by broadcast.
	code, doc, stderr = r.probe("--service", "bootps", "--dhcp-unicast", r.l.FW().Addr.String(), mn)
	if code != exitOK || len(doc.Results) != 1 || !strings.Contains(doc.Results[0].Evidence, "DHCPOFFER from server "+mn) {
		t.Errorf("--dhcp-unicast: exit %d, %+v\n%s", code, doc.Results, stderr)
	}

	// The BMC and the switch, each by its role.
	_, doc, _ = r.probe("--role", "bmc", r.l.BMC().Addr.String())
	if got := doc.rows(); len(got) != 2 || doc.Results[got["ipmi/udp"]].State != "open" || doc.Results[got["ipmi/tcp"]].State != "closed" {
		t.Errorf("bmc: %+v", doc.Results)
	}
	_, doc, _ = r.probe("--role", "switch", "--profile", "flex", "--service", "snmp/udp", r.l.Switch().Addr.String())
	if len(doc.Results) != 1 || doc.Results[0].State != "open" || !strings.Contains(doc.Results[0].Evidence, "sysDescr") {
		t.Errorf("switch: %+v", doc.Results)
	}
	_, doc, _ = r.probe("--role", "switch", "--profile", "flex", "--service", "snmp/udp", "--snmp-community", "wrong", "--timeout", "300ms",
		r.l.Switch().Addr.String())
	if len(doc.Results) != 1 || doc.Results[0].State != "no-answer" {
		t.Errorf("switch, wrong community: %+v", doc.Results)
	}
}

// TestProbeLabBadInput gives an unknown name, garbage lines and an
// observer that is not there: each is said clearly, and the rest is still
// probed.
func TestProbeLabBadInput(t *testing.T) {
	r := startLab(t)
	r.loadScenario("open")
	mn := r.l.MN().Addr.String()
	list := fmt.Sprintf("# targets\n%s\nnot a host at all\n10.77.0.300\n%s\n", r.l.BMC().Addr, mn)
	// No observer runs in this lab; loadScenario lets port 9717 through,
	// so mn refuses the connection.
	code, out, stderr := r.portwatch(r.l.Node(1), list, "probe", "--format", "json", "--service", "ssh-tcp",
		"--timeout", "300ms", "--targets-file", "-", "--observer", "http://"+mn, "no-such-node.cluster.test", mn)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailure, stderr)
	}
	for _, want := range []string{
		`portwatch: probe: standard input:3: "not a host at all": one target a line (an address or a host name); skipped`,
		`portwatch: probe: standard input:4: "10.77.0.300" is not an IP address or a host name`,
		`portwatch: probe: argument 1: target "no-such-node.cluster.test": `,
		`portwatch: probe: observer ` + mn + `:9717: `,
		`connection refused (is 'portwatch observe' running there`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	var doc probeOutput
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	var probed []string
	for _, res := range doc.Results {
		probed = append(probed, res.Target+" "+res.State)
	}
	slices.Sort(probed)
	// The BMC serves no ssh, and fw drops what no rule allows.
	if want := []string{mn + " open", r.l.BMC().Addr.String() + " no-answer"}; !slices.Equal(probed, want) {
		t.Errorf("probed %v, want %v (the duplicate once; the bad lines and the unknown name not)", probed, want)
	}
	if len(doc.Errors) != 1 || doc.Errors[0].Target != "no-such-node.cluster.test" || doc.Summary.InputSkipped != 2 ||
		doc.Observer == nil || doc.Observer.Error == "" {
		t.Errorf("errors %+v, summary %+v, observer %+v", doc.Errors, doc.Summary, doc.Observer)
	}

	code, _, stderr = r.portwatch(r.l.Node(1), "", "probe", "--service", "ipmi", mn)
	if code != exitUsage || !strings.Contains(stderr, `--service "ipmi": served by bmc, not by mn (choose the targets' kind with --role)`) {
		t.Errorf("a row of another role: exit %d, %s", code, stderr)
	}
}

// TestProbeLabUnprivileged runs the probe as nobody: every row works with
// ordinary sockets but the broadcast DISCOVER, which says what it needs, and
// the rows whose clients use ports below 1024 come from an ephemeral port,
// said in the evidence.
func TestProbeLabUnprivileged(t *testing.T) {
	r := startLab(t)
	r.loadScenario("prohibit-status")
	// nobody must be able to run the test binary: a copy in a directory
	// anyone may enter.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "portwatch")
	b, err := os.ReadFile(r.exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := r.l.Command(ctx, r.l.Node(1), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", exe,
		"probe", "--format", "json", "--service", "bootps,nfsd-udp,echo-udp,tftp-udp,ssh-tcp,xcatiport/tcp", r.l.MN().Addr.String())
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.Output()
	var doc probeOutput
	if jerr := json.Unmarshal(out, &doc); jerr != nil {
		t.Fatalf("probe as nobody: %v, %v: %s", err, jerr, out)
	}
	want := map[string]string{"bootps/udp": "error", "nfsd-udp/udp": "closed", "echo-udp/udp": "closed",
		"tftp-udp/udp": "open", "ssh-tcp/tcp": "open", "xcatiport/tcp": "filtered"}
	got := doc.rows()
	for row, state := range want {
		if res := doc.Results[got[row]]; res.State != state {
			t.Errorf("%s as nobody: %s (%s), want %s", row, res.State, res.Evidence, state)
		}
	}
	if ev := doc.Results[got["bootps/udp"]].Evidence; !strings.Contains(ev, "needs a raw socket (CAP_NET_RAW)") {
		t.Errorf("bootps says %q", ev)
	}
	if ev := doc.Results[got["nfsd-udp/udp"]].Evidence; !strings.Contains(ev, "sent from an unprivileged port") {
		t.Errorf("nfsd-udp says %q", ev)
	}
}

// TestProbeLabDestinations captures the node's interface during a probe of
// every row: every packet the node sends goes to the target, or for DHCP
// to the broadcast address; the only other frames are ARP for the gateway.
func TestProbeLabDestinations(t *testing.T) {
	r := startLab(t)
	r.loadScenario("drop-tftp")
	node := r.l.Node(1)
	mn := r.l.MN().Addr
	capture, err := r.l.StartCapture(context.Background(), node, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, _ := r.probe(mn.String())
	path, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) != len(labOpenStates) {
		t.Fatalf("%d rows probed", len(doc.Results))
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	gateway := lab.NodeNet.Addr().Next() // fw's address on the nodes' segment
	sent, broadcast := 0, 0
	for {
		data, _, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth == nil || eth.SrcMAC.String() != node.MAC.String() {
			continue // received, not sent
		}
		switch {
		case p.Layer(layers.LayerTypeARP) != nil:
			arp := p.Layer(layers.LayerTypeARP).(*layers.ARP)
			if target, _ := netip.AddrFromSlice(arp.DstProtAddress); target != gateway && target != node.Addr {
				t.Errorf("ARP for %s", target)
			}
		case p.Layer(layers.LayerTypeIPv4) != nil:
			ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
			sent++
			switch {
			case dst == mn:
			case dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
				udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if udp == nil || udp.DstPort != 67 || udp.SrcPort != 68 {
					t.Errorf("a broadcast that is not a DHCP DISCOVER: %v", p)
				}
				broadcast++
			default:
				t.Errorf("a packet to %s, which is not a target: %v", dst, p)
			}
		default:
			t.Errorf("a frame that is neither IPv4 nor ARP: %v", p)
		}
	}
	if sent < len(labOpenStates) || broadcast == 0 {
		t.Errorf("%d packets sent (%d DHCP broadcasts): the capture missed the probe", sent, broadcast)
	}
}
