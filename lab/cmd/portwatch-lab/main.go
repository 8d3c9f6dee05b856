// Command portwatch-lab builds, drives and removes the lab: an xCAT
// management network in network namespaces (see lab/README.md).
//
//	portwatch-lab up [--nodes N] [--scenario NAME] [--hold]
//	portwatch-lab status | down
//	portwatch-lab scenario NAME | scenarios
//	portwatch-lab probe [--from n001] [PROBE...]
//	portwatch-lab burst [--count 50] [--concurrency 50]
//	portwatch-lab check [SCENARIO...]
//	portwatch-lab run [--nodes N] [-- COMMAND...]
//	portwatch-lab exec HOST -- COMMAND...
//	portwatch-lab demo --portwatch PATH [--nodes N] [--scenario NAME]
//
// Every subcommand takes --prefix (default pwl-): labs with different
// prefixes are independent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"portwatch/lab"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, args, help string
	run              func(c *cli, args []string) error
}

var commands = []command{
	{"up", "[--nodes N] [--scenario NAME] [--hold]", "build the lab and leave it up (with --hold: until Ctrl-C or SIGTERM, then remove it)", (*cli).up},
	{"down", "", "remove the lab and anything an earlier crashed run left", (*cli).down},
	{"status", "[--json]", "show the lab's namespaces, interfaces, daemons and scenario", (*cli).status},
	{"scenario", "NAME", "load a firewall scenario into fw", (*cli).scenario},
	{"scenarios", "", "list the scenarios and what each expects", (*cli).scenarios},
	{"probe", "[--from HOST] [PROBE...]", "run clients from a node and show their outcomes", (*cli).probe},
	{"burst", "[--count N] [--concurrency C]", "provision N nodes at once", (*cli).burst},
	{"check", "[SCENARIO...]", "load each scenario and check the clients' outcomes against its header", (*cli).check},
	{"run", "[--nodes N] [--scenario NAME] [-- COMMAND...]", "up, run COMMAND (default: check every scenario), down; the lab is described to COMMAND in PORTWATCH_LAB_* variables", (*cli).runCmd},
	{"exec", "HOST -- COMMAND...", "run a command in a host's namespace (mn, fw, bmc, sw, br, n001...)", (*cli).exec},
	{"demo", "--portwatch PATH [--nodes N] [--scenario NAME] [--rounds R]", "the lab with portwatch observing mn and fw live during provisioning runs (make demo)", (*cli).demo},
}

type cli struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	flags  *pflag.FlagSet

	prefix      string
	nodes       int
	scenarioArg string
	hold        bool
	readyFile   string
	jsonOut     bool
	from        string
	count       int
	concurrency int
	portwatch   string
	rounds      int
	window      time.Duration
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: portwatch-lab COMMAND [--prefix P] [flags]")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.help)
	}
	tw.Flush()
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "portwatch-lab: no command %q\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &cli{ctx: ctx, stdout: stdout, stderr: stderr}
	fs := pflag.NewFlagSet("portwatch-lab "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.prefix, "prefix", envOr("PORTWATCH_LAB_PREFIX", lab.DefaultPrefix), "prefix of every namespace name (lowercase letters and digits, then '-')")
	switch cmd.name {
	case "up", "run":
		fs.IntVar(&c.nodes, "nodes", lab.DefaultNodes, fmt.Sprintf("compute nodes, 1 to %d", lab.MaxNodes))
		fs.StringVar(&c.scenarioArg, "scenario", "open", "firewall scenario to load")
		if cmd.name == "up" {
			fs.BoolVar(&c.hold, "hold", false, "stay in the foreground and remove the lab on SIGINT or SIGTERM")
			fs.StringVar(&c.readyFile, "ready-file", "", "write the prefix to this file once the lab is up")
			_ = fs.MarkHidden("ready-file")
		}
	case "demo":
		fs.IntVar(&c.nodes, "nodes", 8, fmt.Sprintf("compute nodes, 1 to %d", lab.MaxNodes))
		fs.StringVar(&c.scenarioArg, "scenario", "burst", "firewall scenario to run the provisioning under")
		fs.StringVar(&c.portwatch, "portwatch", "", "the portwatch binary to run")
		fs.IntVar(&c.rounds, "rounds", 2, "provisioning runs")
		fs.DurationVar(&c.window, "window", 2*time.Second, "portwatch's counting window")
	case "status":
		fs.BoolVar(&c.jsonOut, "json", false, "print JSON")
	case "probe":
		fs.StringVar(&c.from, "from", "n001", "host to run the clients on")
		fs.BoolVar(&c.jsonOut, "json", false, "print JSON")
	case "burst":
		fs.IntVar(&c.count, "count", 0, "nodes to provision (default: every node)")
		fs.IntVar(&c.concurrency, "concurrency", 0, "nodes provisioning at the same time (default: all)")
		fs.BoolVar(&c.jsonOut, "json", false, "print JSON")
	}
	c.flags = fs
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := cmd.run(c, fs.Args()); err != nil {
		fmt.Fprintf(stderr, "portwatch-lab %s: %v\n", cmd.name, err)
		var exit exitError
		if errors.As(err, &exit) {
			return int(exit)
		}
		return 1
	}
	return 0
}

// exitError carries a command's exit status through.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func (c *cli) logf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "portwatch-lab: "+format+"\n", args...)
}

func (c *cli) config() lab.Config {
	return lab.Config{Prefix: c.prefix, Nodes: c.nodes, Scenario: c.scenarioArg, Logf: c.logf}
}

// bringUp builds the lab; "already up" is success, so that up is
// idempotent.
func (c *cli) bringUp() (*lab.Lab, bool, error) {
	l, err := lab.Up(c.ctx, c.config())
	if errors.Is(err, lab.ErrExists) {
		l, err = lab.Attach(c.prefix)
		if err == nil {
			c.logf("lab %s is already up (%d nodes, scenario %s)", c.prefix, len(l.Nodes()), l.Scenario())
		}
		return l, false, err
	}
	return l, err == nil, err
}

func (c *cli) up(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	l, _, err := c.bringUp()
	if err != nil {
		return err
	}
	c.describe(l)
	if c.readyFile != "" {
		if err := os.WriteFile(c.readyFile, []byte(l.Prefix()+"\n"), 0o644); err != nil {
			return err
		}
	}
	if !c.hold {
		return nil
	}
	c.logf("holding the lab; Ctrl-C or SIGTERM removes it")
	<-c.ctx.Done()
	c.logf("removing lab %s", l.Prefix())
	return l.Down()
}

func (c *cli) describe(l *lab.Lab) {
	fmt.Fprintf(c.stdout, "lab %s: %d nodes, scenario %s, files in %s\n", l.Prefix(), len(l.Nodes()), l.Scenario(), l.RunDir())
	fmt.Fprintf(c.stdout, "  management node interface (portwatch XDP+TC): %s\n", l.MNInterface())
	fmt.Fprintf(c.stdout, "  fw node-side interface (second observer):    %s\n", l.FWNodeInterface())
}

func (c *cli) down(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	before, err := lab.FindLeftovers(c.prefix)
	if err != nil {
		return err
	}
	if err := lab.Down(c.prefix); err != nil {
		return err
	}
	after, err := lab.FindLeftovers(c.prefix)
	if err != nil {
		return err
	}
	if !after.Empty() {
		return fmt.Errorf("still there after down: %s", after)
	}
	if before.Empty() {
		c.logf("no lab %s: nothing to remove", c.prefix)
	} else {
		c.logf("removed lab %s: %s", c.prefix, before)
	}
	return nil
}

func (c *cli) status(args []string) error {
	l, err := lab.Attach(c.prefix)
	if err != nil {
		left, lerr := lab.FindLeftovers(c.prefix)
		if lerr == nil && !left.Empty() {
			return fmt.Errorf("%v\nleft on the machine: %s", err, left)
		}
		return err
	}
	if c.jsonOut {
		return json.NewEncoder(c.stdout).Encode(map[string]any{
			"prefix": l.Prefix(), "run_dir": l.RunDir(), "scenario": l.Scenario(),
			"mn_interface": l.MNInterface(), "fw_node_interface": l.FWNodeInterface(),
			"hosts": l.Hosts(), "daemons": l.Daemons(),
		})
	}
	c.describe(l)
	tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  HOST\tNAMESPACE\tADDRESS\tMAC")
	for _, h := range l.Hosts() {
		if len(l.Nodes()) > 8 && h.Role == lab.RoleNode && h.Name != lab.NodeName(1) && h.Name != lab.NodeName(len(l.Nodes())) {
			continue
		}
		addr := "-"
		if h.Addr.IsValid() {
			addr = h.Addr.String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", h.Name, h.Netns, addr, h.MAC)
	}
	fmt.Fprintln(tw, "  DAEMON\tHOST\tPID\tLISTENING")
	for _, d := range l.Daemons() {
		state := strings.Join(d.Listen, ", ")
		if syscall.Kill(d.PID, 0) != nil {
			state = "NOT RUNNING (see " + d.Log + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", d.Name, d.Host, d.PID, state)
	}
	return tw.Flush()
}

func (c *cli) scenario(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("name one scenario (%s)", strings.Join(lab.ScenarioNames(), ", "))
	}
	l, err := lab.Attach(c.prefix)
	if err != nil {
		return err
	}
	if err := l.LoadScenario(args[0]); err != nil {
		return err
	}
	c.logf("scenario %s loaded in %s", args[0], l.FW().Netns)
	return nil
}

func (c *cli) scenarios(args []string) error {
	for _, s := range lab.Scenarios() {
		fmt.Fprintf(c.stdout, "%s\n  %s\n", s.Name, s.Summary)
		for _, e := range s.Expect {
			fmt.Fprintf(c.stdout, "  expect: %s\n", e)
		}
		for _, p := range lab.ProbeNames() {
			if o, ok := s.Probes[p]; ok {
				fmt.Fprintf(c.stdout, "  probe:  %s=%s\n", p, o)
			}
		}
		if s.Burst != nil {
			fmt.Fprintf(c.stdout, "  burst:  %d nodes, %d at a time\n", s.Burst.Nodes, s.Burst.Concurrency)
		}
	}
	return nil
}

func (c *cli) probe(args []string) error {
	l, err := lab.Attach(c.prefix)
	if err != nil {
		return err
	}
	h, ok := l.Host(c.from)
	if !ok {
		return fmt.Errorf("no host %q in lab %s", c.from, c.prefix)
	}
	results, err := l.ProbeAll(c.ctx, h, args...)
	if err != nil {
		return err
	}
	if c.jsonOut {
		return json.NewEncoder(c.stdout).Encode(results)
	}
	for _, r := range results {
		fmt.Fprintln(c.stdout, r)
	}
	return nil
}

func (c *cli) burst(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	l, err := lab.Attach(c.prefix)
	if err != nil {
		return err
	}
	nodes := l.Nodes()
	if c.count > 0 {
		if c.count > len(nodes) {
			return fmt.Errorf("the lab has %d nodes; bring it up with --nodes %d", len(nodes), c.count)
		}
		nodes = nodes[:c.count]
	}
	res := l.Burst(c.ctx, nodes, c.concurrency)
	if c.jsonOut {
		return json.NewEncoder(c.stdout).Encode(res)
	}
	fmt.Fprint(c.stdout, res)
	return nil
}

func (c *cli) check(args []string) error {
	l, err := lab.Attach(c.prefix)
	if err != nil {
		return err
	}
	return c.checkScenarios(l, args)
}

// checkScenarios loads each scenario, runs its traffic and compares the
// outcomes with its header; it restores the scenario it found.
func (c *cli) checkScenarios(l *lab.Lab, names []string) error {
	if len(names) == 0 {
		names = lab.ScenarioNames()
	}
	orig := l.Scenario()
	defer func() {
		if err := l.LoadScenario(orig); err != nil {
			c.logf("restoring scenario %s: %v", orig, err)
		}
	}()
	failed := 0
	for _, name := range names {
		s, err := lab.ScenarioByName(name)
		if err != nil {
			return err
		}
		if err := l.LoadScenario(name); err != nil {
			return err
		}
		var mismatches []lab.Mismatch
		start := time.Now()
		if s.Burst != nil {
			nodes := l.Nodes()
			if len(nodes) < s.Burst.Nodes {
				c.logf("%s: the lab has %d nodes, the burst wants %d; bursting %d", name, len(nodes), s.Burst.Nodes, len(nodes))
			} else {
				nodes = nodes[:s.Burst.Nodes]
			}
			res := l.Burst(c.ctx, nodes, s.Burst.Concurrency)
			mismatches = s.CheckBurst(res)
		} else {
			results, err := l.ProbeAll(c.ctx, l.Node(1))
			if err != nil {
				return err
			}
			mismatches = s.Check(results)
		}
		verdict := "ok"
		if len(mismatches) > 0 {
			verdict = "FAILED"
			failed++
		}
		fmt.Fprintf(c.stdout, "%-16s %-6s %.1fs\n", name, verdict, time.Since(start).Seconds())
		for _, m := range mismatches {
			fmt.Fprintf(c.stdout, "  %s\n", m)
		}
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
	}
	fmt.Fprintf(c.stdout, "%d passed, %d failed\n", len(names)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d scenarios did not behave as their headers say", failed, len(names))
	}
	return nil
}

func (c *cli) runCmd(args []string) (err error) {
	l, built, err := c.bringUp()
	if err != nil {
		return err
	}
	if built {
		defer func() {
			c.logf("removing lab %s", l.Prefix())
			if derr := l.Down(); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	c.describe(l)
	if len(args) == 0 {
		return c.checkScenarios(l, nil)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.stdout, c.stderr
	cmd.Env = append(os.Environ(),
		"PORTWATCH_LAB_PREFIX="+l.Prefix(),
		"PORTWATCH_LAB_RUN_DIR="+l.RunDir(),
		"PORTWATCH_LAB_NODES="+strconv.Itoa(len(l.Nodes())),
		"PORTWATCH_LAB_MN_NETNS="+l.MNInterface().Netns,
		"PORTWATCH_LAB_MN_IFACE="+l.MNInterface().Name,
		"PORTWATCH_LAB_FW_NETNS="+l.FWNodeInterface().Netns,
		"PORTWATCH_LAB_FW_NODE_IFACE="+l.FWNodeInterface().Name,
	)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-c.ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err = <-done
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exitError(exit.ExitCode())
	}
	return err
}

func (c *cli) exec(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("want HOST -- COMMAND [ARGS]")
	}
	l, err := lab.Attach(c.prefix)
	if err != nil {
		return err
	}
	h, ok := l.Host(args[0])
	if !ok {
		return fmt.Errorf("no host %q in lab %s", args[0], c.prefix)
	}
	cmd := l.Command(context.Background(), h, args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.stdout, c.stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exitError(exit.ExitCode())
	}
	return err
}
