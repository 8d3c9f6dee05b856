package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// leftovers remembers what a test started beside the lab (portwatch
// processes, and the BPF programs and links they attached) and checks, when
// the test has ended and its lab is down, that none of it is left.
type leftovers struct {
	mu        sync.Mutex
	processes map[int]string // pid: what it was
	bpf       bpfObjects
}

// newLeftovers returns a tracker whose check runs after every cleanup
// registered later, such as the lab's removal: call it before
// labtest.Start.
func newLeftovers(t *testing.T) *leftovers {
	left := &leftovers{processes: map[int]string{}, bpf: bpfObjects{links: map[int]string{}}}
	t.Cleanup(func() { left.check(t) })
	return left
}

func (left *leftovers) addProcess(pid int, what string) {
	left.mu.Lock()
	defer left.mu.Unlock()
	left.processes[pid] = what
}

func (left *leftovers) addBPF(k bpfObjects, what string) {
	left.mu.Lock()
	defer left.mu.Unlock()
	left.bpf.progs = append(left.bpf.progs, k.progs...)
	for id, kind := range k.links {
		left.bpf.links[id] = what + " " + kind
	}
}

func (left *leftovers) check(t testing.TB) {
	left.mu.Lock()
	defer left.mu.Unlock()
	for pid, what := range left.processes {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs", what, pid)
		}
	}
	if err := waitBPFGone(left.bpf); err != nil {
		t.Errorf("after the test: %v", err)
	}
}

// alive reports whether a process runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the command may hold spaces and parentheses.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	f := strings.Fields(string(rest))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// failingRunEnv makes TestHelperFailingRun run: it is the failing test that
// TestNothingLeftBehind runs in a child process. Its value is the file
// where the child writes what it started.
const failingRunEnv = "PORTWATCH_E2E_FAILING_RUN"

// started is what the failing child tells its parent.
type started struct {
	Prefix    string         `json:"prefix"`
	Processes map[int]string `json:"processes"`
	Progs     []int          `json:"progs"`
	Links     map[int]string `json:"links"`
}

func TestHelperFailingRun(t *testing.T) {
	record := os.Getenv(failingRunEnv)
	if record == "" {
		t.Skip("run by TestNothingLeftBehind")
	}
	left := newLeftovers(t)
	l := labtest.Start(t, lab.Config{Nodes: 1, Scenario: "drop-tftp"})
	t.Run("fails", func(t *testing.T) {
		startWatch(t, l, left)
		r := l.TFTPGet(t.Context(), l.Node(1))
		left.mu.Lock()
		st := started{Prefix: l.Prefix(), Processes: left.processes, Progs: left.bpf.progs, Links: left.bpf.links}
		b, err := json.Marshal(st)
		left.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(record, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Fatalf("this subtest fails on purpose, with its lab, observers and captures running (TFTP: %s)", r.Outcome)
	})
}

// TestNothingLeftBehind runs a test that fails in a subtest while its lab,
// two kernel-backend observers, two capture-backend observers and two
// tcpdumps run, and checks that nothing of it is left afterwards: no
// namespace, no link or nftables table in the host, no process, no BPF
// program or link.
func TestNothingLeftBehind(t *testing.T) {
	requireLab(t)
	portwatchBinary(t) // the child builds its own; this one warms the build cache
	record := filepath.Join(t.TempDir(), "started.json")
	linksBefore := hostLinks(t)
	tablesBefore := hostTables(t)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFailingRun$", "-test.v")
	cmd.Env = append(os.Environ(), failingRunEnv+"="+record)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fails on purpose") {
		t.Fatalf("the failing run: %v (want a failure on purpose):\n%s", err, out)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Fatalf("the failing run skipped:\n%s", out)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the failing run did not say what it started: %v\n%s", err, out)
	}
	var st started
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Processes) != 4 || len(st.Progs) == 0 || len(st.Links) == 0 {
		t.Fatalf("the failing run started %+v: want 4 observers and their BPF programs and links", st)
	}
	t.Logf("the failing run (lab %s) started %v, BPF programs %v and links %v", st.Prefix, st.Processes, st.Progs, st.Links)

	labtest.CheckGone(t, st.Prefix) // namespaces, processes, run directory
	out, err = exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), st.Prefix) {
		t.Errorf("ip netns list still shows %s:\n%s", st.Prefix, out)
	}
	for pid, what := range st.Processes {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs", what, pid)
		}
	}
	if err := waitBPFGone(bpfObjects{progs: st.Progs, links: st.Links}); err != nil {
		t.Error(err)
	}
	// Nothing of the lab is ever in the host's namespace; a link or table
	// there that came and stayed is a leak.
	for name, xdp := range hostLinks(t) {
		was, existed := linksBefore[name]
		if !existed {
			t.Errorf("the host has a new link %s", name)
		} else if xdp && !was {
			t.Errorf("the host's link %s has an XDP program now", name)
		}
	}
	for _, table := range hostTables(t) {
		if !slices.Contains(tablesBefore, table) {
			t.Errorf("the host has a new nftables table %s", table)
		}
	}
}

// hostLinks lists the host namespace's links, and whether each has an XDP
// program.
func hostLinks(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "-j", "-d", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link show: %v", err)
	}
	var links []map[string]any
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("ip -j link show: %v", err)
	}
	m := map[string]bool{}
	for _, l := range links {
		name, _ := l["ifname"].(string)
		_, xdp := l["xdp"]
		m[name] = xdp
	}
	return m
}

// hostTables lists the host namespace's nftables tables ("inet NAME").
func hostTables(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatalf("nft list tables: %v", err)
	}
	var tables []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	return tables
}
