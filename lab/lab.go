package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Lab is a management network that is up.
type Lab struct {
	cfg    Config
	topo   *topology
	runDir string

	mu       sync.Mutex
	daemons  []*daemon
	scenario string
	down     bool
}

// ErrExists is returned by Up when a complete lab with the same prefix is
// already up; Attach returns it.
var ErrExists = errors.New("a lab with this prefix is already up")

// Up builds a lab: namespaces, links and addresses, daemons (each listening
// before Up returns), and the firewall scenario. The daemons outlive the
// calling process until Down: a command may build a lab and exit.
//
// Leftovers of an earlier run with the same prefix that crashed are removed
// first. If Up fails or ctx is cancelled, it removes whatever it built.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if st, err := readState(RunDirFor(cfg.Prefix)); err == nil && st.Complete {
		if names, _ := labNamespaces(cfg.Prefix); len(names) == len(newTopology(cfg.Prefix, st.Nodes).all()) {
			return nil, fmt.Errorf("%w: %s (run `portwatch-lab down --prefix %s` first, or use it as it is)", ErrExists, cfg.Prefix, cfg.Prefix)
		}
	}
	if left, _ := FindLeftovers(cfg.Prefix); !left.Empty() {
		cfg.Logf("removing leftovers of an earlier lab %s: %s", cfg.Prefix, left)
		if err := Down(cfg.Prefix); err != nil {
			return nil, err
		}
	}
	l := &Lab{cfg: cfg, topo: newTopology(cfg.Prefix, cfg.Nodes), runDir: RunDirFor(cfg.Prefix)}
	if err := l.build(ctx); err != nil {
		if derr := l.Down(); derr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, derr)
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context) error {
	start := time.Now()
	if err := os.MkdirAll(l.runDir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// The workers of nginx run as nobody and must read the served files.
	if err := os.Chmod(l.runDir, 0o755); err != nil {
		return err
	}
	if err := l.saveState(false); err != nil {
		return err
	}
	if err := l.buildTopology(ctx); err != nil {
		return err
	}
	l.cfg.Logf("%d namespaces up in %v", len(l.topo.all()), time.Since(start).Round(time.Millisecond))
	if err := l.writeFiles(ctx); err != nil {
		return err
	}
	if err := l.startDaemons(ctx); err != nil {
		return err
	}
	l.cfg.Logf("%d daemons listening after %v", len(l.daemons), time.Since(start).Round(time.Millisecond))
	if err := l.LoadScenario(l.cfg.Scenario); err != nil {
		return err
	}
	if err := l.saveState(true); err != nil {
		return err
	}
	l.cfg.Logf("lab %s up in %v", l.cfg.Prefix, time.Since(start).Round(time.Millisecond))
	return nil
}

// startDaemons starts every daemon, those that wait for another after it is
// ready, and waits until all listen.
func (l *Lab) startDaemons(ctx context.Context) error {
	specs, err := l.daemonSpecs()
	if err != nil {
		return err
	}
	if l.cfg.breakDaemon != "" {
		found := false
		for _, s := range specs {
			found = found || s.name == l.cfg.breakDaemon
		}
		if !found {
			return fmt.Errorf("breakDaemon: no daemon %q", l.cfg.breakDaemon)
		}
	}
	ready := map[string]bool{}
	for len(ready) < len(specs) {
		var batch []*daemon
		for _, s := range specs {
			if ready[s.name] || (s.after != "" && !ready[s.after]) {
				continue
			}
			d, err := l.startDaemon(s)
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.daemons = append(l.daemons, d)
			l.mu.Unlock()
			batch = append(batch, d)
		}
		if len(batch) == 0 {
			return fmt.Errorf("daemon start order: a daemon waits for one that does not exist")
		}
		errc := make(chan error, len(batch))
		for _, d := range batch {
			go func() { errc <- l.waitReady(ctx, d) }()
		}
		var errs []error
		for range batch {
			if err := <-errc; err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		for _, d := range batch {
			ready[d.spec.name] = true
		}
		if err := l.saveState(false); err != nil {
			return err
		}
	}
	return nil
}

// Down stops the lab's daemons and clients, removes its namespaces (and with
// them every link, address and nftables table) and its run directory. It
// can be called more than once.
func (l *Lab) Down() error {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return nil
	}
	l.down = true
	daemons := l.daemons
	l.mu.Unlock()
	err := down(l.cfg.Prefix, l.runDir)
	// Reap the daemons this process started, now that they are killed.
	for _, d := range daemons {
		if d.cmd == nil {
			continue
		}
		select {
		case <-d.exited:
		case <-time.After(2 * time.Second):
			_ = d.cmd.Process.Kill()
		}
	}
	return err
}

// Down removes everything a lab with this prefix left: it kills every
// process in the lab's namespaces, deletes the namespaces and the run
// directory. It needs no state from the process that built the lab, so it
// cleans up after one that crashed or was killed.
func Down(prefix string) error {
	if err := ValidatePrefix(prefix); err != nil {
		return err
	}
	return down(prefix, RunDirFor(prefix))
}

func down(prefix, runDir string) error {
	names, err := labNamespaces(prefix)
	if err != nil {
		return err
	}
	inodes := netnsInodes(names)
	killAll(inodes)
	var errs []error
	if len(names) > 0 {
		var lines []string
		for _, n := range names {
			lines = append(lines, "netns del "+n)
		}
		if err := ipBatch(context.Background(), "", lines); err != nil {
			errs = append(errs, err)
		}
	}
	// Processes of a namespace whose name was removed earlier (by hand, or
	// by a Down that was itself interrupted) are found by the run directory
	// on their command line.
	for _, pid := range processesUsing(runDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := os.RemoveAll(runDir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", runDir, err))
	}
	return errors.Join(errs...)
}

// killAll ends every process in the namespaces: SIGTERM, and SIGKILL for
// those still there after a grace period.
func killAll(inodes map[uint64]string) {
	signalAll := func(sig syscall.Signal) int {
		n := 0
		for _, pids := range processesIn(inodes) {
			for _, pid := range pids {
				if syscall.Kill(pid, sig) == nil {
					n++
				}
			}
		}
		return n
	}
	if signalAll(syscall.SIGTERM) == 0 {
		return
	}
	for _, grace := range []time.Duration{3 * time.Second, 2 * time.Second} {
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) {
			if len(processesIn(inodes)) == 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		signalAll(syscall.SIGKILL)
	}
}

// Prefix returns the prefix of every namespace name.
func (l *Lab) Prefix() string { return l.cfg.Prefix }

// RunDir returns the directory with the daemons' configuration and logs.
func (l *Lab) RunDir() string { return l.runDir }

// LogPath returns the log file of a daemon (see Daemons for the names).
func (l *Lab) LogPath(daemon string) string { return l.path("logs", daemon+".log") }

// SyslogPath returns the file where the management node's rsyslogd writes
// what it receives.
func (l *Lab) SyslogPath() string { return l.path("syslog", "received.log") }

// MN returns the management node.
func (l *Lab) MN() Host { return l.topo.mn }

// FW returns the router and firewall; its Addr is its management-side address.
func (l *Lab) FW() Host { return l.topo.fw }

// Bridge returns the namespace of the nodes' bridge.
func (l *Lab) Bridge() Host { return l.topo.br }

// BMC returns the baseboard management controller.
func (l *Lab) BMC() Host { return l.topo.bmc }

// Switch returns the switch's management agent.
func (l *Lab) Switch() Host { return l.topo.sw }

// Nodes returns the compute nodes, n001 first.
func (l *Lab) Nodes() []Host { return append([]Host(nil), l.topo.nodes...) }

// Node returns node i, counting from 1.
func (l *Lab) Node(i int) Host {
	if i < 1 || i > len(l.topo.nodes) {
		panic(fmt.Sprintf("lab: node %d of %d", i, len(l.topo.nodes)))
	}
	return l.topo.nodes[i-1]
}

// Host finds a host by name ("mn", "fw", "bmc", "sw", "br", "n001").
func (l *Lab) Host(name string) (Host, bool) {
	for _, h := range l.topo.all() {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Hosts returns every namespace of the lab.
func (l *Lab) Hosts() []Host { return l.topo.all() }

// MNInterface is the management node's only interface: where portwatch
// attaches XDP and TC on the management node.
func (l *Lab) MNInterface() Interface { return Interface{l.topo.mn.Netns, hostIface} }

// FWNodeInterface is fw's interface towards the nodes: every frame between
// the nodes and the rest of the lab crosses it, in both directions. It is
// a veth, not a bridge (the bridge is in its own namespace), so an XDP
// program on it sees forwarded traffic.
func (l *Lab) FWNodeInterface() Interface { return Interface{l.topo.fw.Netns, fwNodesIface} }

// FWMgmtInterface is fw's interface towards the management node.
func (l *Lab) FWMgmtInterface() Interface { return Interface{l.topo.fw.Netns, fwMgmtIface} }

// FWBMCInterface is fw's interface towards the BMC.
func (l *Lab) FWBMCInterface() Interface { return Interface{l.topo.fw.Netns, fwBMCIface} }

// FWSwitchInterface is fw's interface towards the switch.
func (l *Lab) FWSwitchInterface() Interface { return Interface{l.topo.fw.Netns, fwSwitchIface} }

// Daemons describes the lab's daemons.
func (l *Lab) Daemons() []DaemonInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]DaemonInfo, 0, len(l.daemons))
	for _, d := range l.daemons {
		out = append(out, d.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Scenario returns the name of the scenario loaded in the firewall.
func (l *Lab) Scenario() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.scenario
}

// state is what a lab records in its run directory, for Attach and status.
type state struct {
	Prefix   string       `json:"prefix"`
	Nodes    int          `json:"nodes"`
	RunDir   string       `json:"run_dir"`
	Scenario string       `json:"scenario"`
	Complete bool         `json:"complete"`
	Created  time.Time    `json:"created"`
	Daemons  []DaemonInfo `json:"daemons"`
}

const stateFile = "state.json"

func (l *Lab) saveState(complete bool) error {
	l.mu.Lock()
	st := state{Prefix: l.cfg.Prefix, Nodes: l.cfg.Nodes, RunDir: l.runDir, Scenario: l.scenario,
		Complete: complete, Created: time.Now().UTC()}
	for _, d := range l.daemons {
		st.Daemons = append(st.Daemons, d.info())
	}
	l.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.path(stateFile + ".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.path(stateFile))
}

func readState(runDir string) (*state, error) {
	b, err := os.ReadFile(runDir + "/" + stateFile)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", runDir, stateFile, err)
	}
	return &st, nil
}

// Attach returns the lab with this prefix that another process brought up.
// Its Down works as the builder's would.
func Attach(prefix string) (*Lab, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	runDir := RunDirFor(prefix)
	st, err := readState(runDir)
	if err != nil {
		return nil, fmt.Errorf("no lab %s is up (%v): start one with `portwatch-lab up --prefix %s`", prefix, err, prefix)
	}
	if !st.Complete {
		return nil, fmt.Errorf("lab %s is not complete (still starting, or its start failed): `portwatch-lab down --prefix %s` removes it", prefix, prefix)
	}
	cfg, err := Config{Prefix: prefix, Nodes: st.Nodes, Scenario: st.Scenario}.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg, topo: newTopology(prefix, st.Nodes), runDir: runDir, scenario: st.Scenario}
	for _, di := range st.Daemons {
		h, _ := l.Host(di.Host)
		l.daemons = append(l.daemons, &daemon{spec: daemonSpec{name: di.Name, host: h}, pid: di.PID, log: di.Log,
			listen: di.Listen})
	}
	names, err := labNamespaces(prefix)
	if err != nil {
		return nil, err
	}
	if want := len(l.topo.all()); len(names) != want {
		return nil, fmt.Errorf("lab %s has %d of its %d namespaces: `portwatch-lab down --prefix %s` removes it", prefix, len(names), want, prefix)
	}
	return l, nil
}
