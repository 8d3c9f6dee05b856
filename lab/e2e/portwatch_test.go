package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"portwatch/classify"
	"portwatch/internal/privtest"
	"portwatch/lab"
	"portwatch/lab/labtest"
)

// window is the counting window of every observe and analyze run: short,
// so that verdicts come while the traffic still runs.
const window = time.Second

// Limits on waiting for a process; reached only when something is broken.
const (
	readyLimit = 60 * time.Second
	stopLimit  = 30 * time.Second
)

// metricsAddr is where the kernel-backend observers serve /metrics, on the
// loopback of their own lab namespace.
const metricsAddr = "127.0.0.1:9717"

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// portwatchBinary builds cmd/portwatch from this checkout, once per test
// run: the tests run the program an administrator runs.
func portwatchBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			build.err = fmt.Errorf("building portwatch needs the go command in PATH: %w", err)
			return
		}
		if build.dir, build.err = os.MkdirTemp("", "portwatch-e2e-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "portwatch")
		out, err := exec.Command(gobin, "build", "-o", build.bin, "portwatch/cmd/portwatch").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build portwatch/cmd/portwatch: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// requireLab skips the test when it cannot build a lab or inspect BPF
// objects, or fails it when PORTWATCH_REQUIRE_PRIV=1.
func requireLab(t testing.TB) {
	t.Helper()
	labtest.RequirePriv(t)
	privtest.RequireCommand(t, "bpftool", "run lab/install-deps.sh")
}

// observationPoint returns the namespace's host and the interface an
// observer named in scenario headers watches.
func observationPoint(l *lab.Lab, point string) (lab.Host, lab.Interface) {
	switch point {
	case lab.ObserverMN:
		return l.MN(), l.MNInterface()
	case lab.ObserverFW:
		return l.FW(), l.FWNodeInterface()
	}
	panic("no observer " + point)
}

// observer is one `portwatch observe` process inside a lab namespace.
type observer struct {
	point   string // lab.ObserverMN or lab.ObserverFW
	backend string // xdp or capture
	host    lab.Host
	iface   lab.Interface
	listen  string // where /metrics is served in the namespace; empty: nowhere
	events  string // the jsonl output
	ready   string // the ready file

	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer // read only once the process has exited
	exited         chan struct{}
	// kernel is what the kernel backend holds: its BPF programs and links.
	kernel bpfObjects
}

func (o *observer) String() string { return o.point + "/" + o.backend }

// launchObserver starts `portwatch observe` on an observation point of
// the lab; waitReady waits until it watches.
func launchObserver(t *testing.T, l *lab.Lab, left *leftovers, point, backend, listen string) *observer {
	t.Helper()
	host, iface := observationPoint(l, point)
	dir := t.TempDir()
	o := &observer{point: point, backend: backend, host: host, iface: iface, listen: listen,
		events: filepath.Join(dir, "events.jsonl"), ready: filepath.Join(dir, "ready"), exited: make(chan struct{})}
	o.cmd = l.Command(context.Background(), host, portwatchBinary(t), "observe",
		"-i", iface.Name, "--backend", backend, "--window", window.String(),
		"--output", "jsonl:"+o.events, "--web.listen-address="+listen, "--ready-file", o.ready)
	o.cmd.Stdout, o.cmd.Stderr = &o.stdout, &o.stderr
	if err := o.cmd.Start(); err != nil {
		t.Fatalf("%s: starting portwatch observe in %s: %v", o, host.Netns, err)
	}
	left.addProcess(o.cmd.Process.Pid, o.String())
	go func() {
		_ = o.cmd.Wait()
		close(o.exited)
	}()
	t.Cleanup(o.kill)
	return o
}

func (o *observer) waitReady(t *testing.T, left *leftovers) {
	t.Helper()
	deadline := time.Now().Add(readyLimit)
	for {
		if _, err := os.Stat(o.ready); err == nil {
			break
		}
		select {
		case <-o.exited:
			t.Fatalf("%s: portwatch observe ended before it was ready (%s): %s", o, o.cmd.ProcessState, o.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o.kill()
			t.Fatalf("%s: portwatch observe not ready after %v: %s", o, readyLimit, o.stderr.String())
		}
	}
	if o.backend != "xdp" {
		return
	}
	k, err := readBPFObjects(o.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	o.kernel = k
	left.addBPF(k, o.String())
	// XDP on ingress and TC on egress, each a bpf_link, so that both
	// close with the process.
	if !k.hasLink("xdp") || len(k.links) < 2 || len(k.progs) < 2 {
		t.Errorf("%s: want an XDP link and an egress link with their programs; portwatch holds %+v", o, k)
	}
}

// kill ends the process at once; a no-op once it has exited.
func (o *observer) kill() {
	select {
	case <-o.exited:
		return
	default:
	}
	_ = o.cmd.Process.Kill()
	<-o.exited
}

// signalStop asks observe to stop as an administrator does: on SIGTERM it
// judges the last window, detaches, flushes its outputs and prints the
// summary.
func (o *observer) signalStop() { _ = o.cmd.Process.Signal(syscall.SIGTERM) }

// finish waits for observe to end after signalStop and returns what it
// reported.
func (o *observer) finish(t *testing.T) report {
	t.Helper()
	select {
	case <-o.exited:
	case <-time.After(stopLimit):
		// SIGQUIT makes the Go runtime print every goroutine's stack on
		// stderr and exit: what it is stuck on.
		_ = o.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-o.exited:
		case <-time.After(5 * time.Second):
			o.kill()
		}
		t.Errorf("%s: still running %v after SIGTERM; its goroutines:\n%s", o, stopLimit, o.stderr.String())
		return report{source: o.String()}
	}
	if code := o.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s: exit status %d after SIGTERM: %s", o, code, o.stderr.String())
	}
	events, err := readEvents(o.events)
	if err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	for _, ev := range events {
		if ev.Observer.Interface != o.iface.Name || ev.Observer.Backend != o.backend || ev.Observer.Mode == "" {
			t.Errorf("%s: an event says it was seen by %+v", o, ev.Observer)
		}
	}
	states, err := summaryStates(o.stdout.String())
	if err != nil {
		t.Errorf("%s: the summary: %v\n%s", o, err, o.stdout.String())
	}
	if t.Failed() {
		t.Logf("%s: stderr:\n%s", o, o.stderr.String())
	}
	return report{source: o.String(), events: events, states: states, text: o.stdout.String()}
}

// report is what one observer (or analyze) reported about one run.
type report struct {
	source string
	events []classify.Event
	// states is the summary's line of each required service: "name/proto"
	// to its state.
	states map[string]serviceState
	// text is the output for people, shown when a check fails.
	text string
}

type serviceState struct {
	state  classify.ServiceState
	reason classify.Reason
}

func readEvents(path string) ([]classify.Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the jsonl output: %w", err)
	}
	var out []classify.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var ev classify.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s:%d: %v: %s", path, n, err, sc.Text())
		}
		out = append(out, ev)
	}
	return out, sc.Err()
}

// summaryStates reads the required services' states from the summary
// table observe prints when it stops:
//
//	SERVICE    PORT  PROTO  REQUIRED  TO-PORT  FROM-PORT  STATE
//	tftp-udp   69    udp    yes       10       0          blocked (no-reply): 10.77.1.11->10.77.0.10, ...
func summaryStates(out string) (map[string]serviceState, error) {
	states := map[string]serviceState{}
	inTable := false
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case !inTable:
			inTable = len(f) == 7 && f[0] == "SERVICE" && f[6] == "STATE"
		case len(f) == 0:
			return states, nil
		case len(f) < 7:
			return nil, fmt.Errorf("a summary line with %d columns: %q", len(f), line)
		case f[3] == "yes":
			s := serviceState{state: classify.ServiceState(f[6])}
			if s.state == classify.StateBlocked && len(f) > 7 {
				s.reason = classify.Reason(strings.Trim(f[7], "():,"))
			}
			states[f[0]+"/"+f[2]] = s
		}
	}
	if !inTable {
		return nil, fmt.Errorf("no summary table")
	}
	return states, nil
}

// analysis is the part of `analyze --format json` the tests read.
type analysis struct {
	Input struct {
		Packets uint64 `json:"packets"`
		Damaged string `json:"damaged"`
	} `json:"input"`
	Summary classify.Summary `json:"summary"`
	Events  []classify.Event `json:"events"`
}

// analyzeCapture runs `portwatch analyze --format json` over a capture.
func analyzeCapture(t *testing.T, name, file string) report {
	t.Helper()
	cmd := exec.Command(portwatchBinary(t), "analyze", "--format", "json", "--window", window.String(), file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: portwatch analyze %s: %v: %s", name, file, err, stderr.String())
	}
	var a analysis
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("%s: portwatch analyze --format json: %v", name, err)
	}
	if a.Input.Packets == 0 || a.Input.Damaged != "" {
		t.Errorf("%s: the capture %s: %d packets, damaged %q", name, file, a.Input.Packets, a.Input.Damaged)
	}
	states := map[string]serviceState{}
	for _, s := range a.Summary.Services {
		if s.Required {
			states[s.Service+"/"+s.Proto] = serviceState{state: s.State, reason: s.Reason}
		}
	}
	return report{source: name, events: a.Events, states: states, text: string(out)}
}

// scrape fetches /metrics from inside the observer's namespace, as a
// Prometheus server on that host would.
func (o *observer) scrape(ctx context.Context, l *lab.Lab) (map[string]*dto.MetricFamily, error) {
	cmd := l.Command(ctx, o.host, "curl", "-sS", "--fail", "--max-time", "10", "http://"+o.listen+"/metrics")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("curl http://%s/metrics in %s: %v: %s", o.listen, o.host.Netns, err, stderr.String())
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %v", err)
	}
	return families, nil
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, p := range m.GetLabel() {
		out[p.GetName()] = p.GetValue()
	}
	return out
}

// blockedGauges reads portwatch_verdict: the required services ("name/proto")
// whose gauge is 1, with the reason label.
func blockedGauges(families map[string]*dto.MetricFamily) map[string]classify.Reason {
	out := map[string]classify.Reason{}
	for _, m := range families["portwatch_verdict"].GetMetric() {
		l := labels(m)
		if l["status"] == "required" && m.GetGauge().GetValue() == 1 {
			out[l["service"]+"/"+l["proto"]] = classify.Reason(l["reason"])
		}
	}
	return out
}

// bpfObjects are the BPF programs and links a process holds.
type bpfObjects struct {
	progs []int
	links map[int]string // link id: link type (xdp, tcx...)
}

func (k bpfObjects) hasLink(kind string) bool {
	for _, t := range k.links {
		if t == kind {
			return true
		}
	}
	return false
}

// readBPFObjects lists the BPF programs and links a process has open, from
// /proc/PID/fdinfo (bpftool here cannot tell which process holds what).
func readBPFObjects(pid int) (bpfObjects, error) {
	k := bpfObjects{links: map[int]string{}}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return k, err
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil || (target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link") {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			return k, err
		}
		fields := map[string]string{}
		for line := range strings.Lines(string(info)) {
			if key, value, ok := strings.Cut(line, ":"); ok {
				fields[key] = strings.TrimSpace(value)
			}
		}
		if target == "anon_inode:bpf-prog" {
			id, err := strconv.Atoi(fields["prog_id"])
			if err != nil {
				return k, fmt.Errorf("fd %s of %d: prog_id %q", fd.Name(), pid, fields["prog_id"])
			}
			k.progs = append(k.progs, id)
			continue
		}
		id, err := strconv.Atoi(fields["link_id"])
		if err != nil {
			return k, fmt.Errorf("fd %s of %d: link_id %q", fd.Name(), pid, fields["link_id"])
		}
		k.links[id] = fields["link_type"]
	}
	return k, nil
}

// loadedBPF asks bpftool which program and link ids exist on the machine.
// bpftool walks the ids one by one and gives up when one vanishes between
// two steps, which other tests freeing their programs can make happen: a
// failed listing is tried again.
func loadedBPF() (progs, links map[int]bool, err error) {
	list := func(kind string) (map[int]bool, error) {
		var out []byte
		var err error
		for try := 0; try < 5; try++ {
			if out, err = exec.Command("bpftool", "-j", kind, "show").Output(); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return nil, fmt.Errorf("bpftool %s show: %v", kind, err)
		}
		var objs []struct {
			ID int `json:"id"`
		}
		if err := json.Unmarshal(out, &objs); err != nil {
			return nil, fmt.Errorf("bpftool -j %s show: %v", kind, err)
		}
		ids := map[int]bool{}
		for _, o := range objs {
			ids[o.ID] = true
		}
		return ids, nil
	}
	if progs, err = list("prog"); err != nil {
		return nil, nil, err
	}
	links, err = list("link")
	return progs, links, err
}
