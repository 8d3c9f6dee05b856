package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"portwatch/lab"
)

// observer is one `portwatch observe` running inside a lab namespace.
type observer struct {
	label string
	iface lab.Interface
	cmd   *exec.Cmd
	ready string
	done  chan struct{}
}

// demo is `make demo`: the lab, two live observers, a provisioning burst
// under a firewall scenario, the verdicts as they happen, the metrics, the
// summaries, and the lab removed at the end or on Ctrl-C.
func (c *cli) demo(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	if c.portwatch == "" {
		return errors.New("--portwatch: the path of the portwatch binary (make demo builds bin/portwatch)")
	}
	if _, err := os.Stat(c.portwatch); err != nil {
		return fmt.Errorf("--portwatch: %w", err)
	}
	scenario, err := lab.ScenarioByName(c.scenarioArg)
	if err != nil {
		return err
	}
	// A reader that goes away (demo | head) must not kill the demo before
	// it removes the lab: writes then fail instead.
	signal.Ignore(syscall.SIGPIPE)
	start := time.Now()
	say := func(format string, a ...any) {
		fmt.Fprintf(c.stdout, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	say("building the lab: a management node, a firewall, %d compute nodes, a BMC and a switch (prefix %s)", c.nodes, c.prefix)
	cfg := c.config()
	cfg.Scenario = "open"
	l, err := lab.Up(c.ctx, cfg)
	if errors.Is(err, lab.ErrExists) {
		return fmt.Errorf("a lab with prefix %s is up already: remove it with 'portwatch-lab down --prefix %s', or pick another --prefix", c.prefix, c.prefix)
	}
	if err != nil {
		return err
	}
	defer func() {
		say("removing the lab")
		if err := l.Down(); err != nil {
			c.logf("removing the lab: %v", err)
		}
	}()

	// Observers outlive a Ctrl-C long enough to print their summaries.
	obsCtx, cancelObs := context.WithCancel(context.Background())
	defer cancelObs()
	dir, err := os.MkdirTemp("", "portwatch-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	observers := []*observer{
		{label: "mn " + l.MNInterface().Name, iface: l.MNInterface()},
		{label: "fw " + l.FWNodeInterface().Name, iface: l.FWNodeInterface()},
	}
	var out sync.Mutex
	for i, o := range observers {
		o.ready = filepath.Join(dir, fmt.Sprintf("ready-%d", i))
		host, _ := l.Host(strings.TrimPrefix(o.iface.Netns, l.Prefix()))
		o.cmd = l.Command(obsCtx, host, c.portwatch, "observe", "-i", o.iface.Name, "--backend", "xdp",
			"--window", c.window.String(), "--web.listen-address", "127.0.0.1:9717", "--ready-file", o.ready)
		o.cmd.Cancel = func() error { return o.cmd.Process.Signal(syscall.SIGTERM) }
		o.cmd.WaitDelay = 10 * time.Second
		stdout, err := o.cmd.StdoutPipe()
		if err != nil {
			return err
		}
		o.cmd.Stderr = o.cmd.Stdout
		if err := o.cmd.Start(); err != nil {
			return fmt.Errorf("starting portwatch observe in %s: %w", o.iface.Netns, err)
		}
		o.done = make(chan struct{})
		go func() {
			defer close(o.done)
			prefixLines(stdout, c.stdout, "["+o.label+"] ", &out)
			o.cmd.Wait()
		}()
	}
	stopObservers := func() {
		cancelObs()
		for _, o := range observers {
			<-o.done
		}
	}
	defer stopObservers()
	for _, o := range observers {
		if err := waitFile(c.ctx, o.ready, o.done, 30*time.Second); err != nil {
			return fmt.Errorf("portwatch observe on %s/%s: %w", o.iface.Netns, o.iface.Name, err)
		}
	}
	say("portwatch observes %s (where the management node's traffic goes) and %s (the firewall's node-facing side)",
		observers[0].label, observers[1].label)
	say("a request the firewall drops never reaches mn: the observer on fw's node side is the one that sees it unanswered")

	if err := l.LoadScenario(scenario.Name); err != nil {
		return err
	}
	say("firewall scenario %q: %s", scenario.Name, oneLine(scenario.Summary))
	for _, e := range scenario.Expect {
		say("  expected: %s", e)
	}
	for round := 1; round <= c.rounds && c.ctx.Err() == nil; round++ {
		say("provisioning run %d of %d: %d nodes at once (DHCP, TFTP, HTTP, xcatd status, syslog)", round, c.rounds, len(l.Nodes()))
		b := l.Burst(c.ctx, l.Nodes(), len(l.Nodes()))
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			say("  %s", strings.TrimSpace(line))
		}
	}
	if c.ctx.Err() == nil {
		// One more window, so that the last attempts are judged.
		select {
		case <-time.After(c.window + time.Second):
		case <-c.ctx.Done():
		}
	}
	if c.ctx.Err() == nil {
		for _, o := range observers {
			host, _ := l.Host(strings.TrimPrefix(o.iface.Netns, l.Prefix()))
			metrics, err := l.Command(c.ctx, host, "curl", "-s", "--max-time", "5", "http://127.0.0.1:9717/metrics").Output()
			if err != nil {
				c.logf("scraping /metrics in %s: %v", o.iface.Netns, err)
				continue
			}
			say("/metrics of the observer on %s (ip netns exec %s curl -s 127.0.0.1:9717/metrics), verdicts and attachment:", o.label, o.iface.Netns)
			for _, line := range strings.Split(string(metrics), "\n") {
				if (strings.HasPrefix(line, "portwatch_verdict{") && strings.HasSuffix(line, " 1")) ||
					strings.HasPrefix(line, "portwatch_attach_info{") {
					say("  %s", line)
				}
			}
		}
	}
	say("stopping the observers; each prints its summary")
	stopObservers()
	return c.ctx.Err()
}

// prefixLines copies r to w line by line, each line behind prefix.
func prefixLines(r io.Reader, w io.Writer, prefix string, mu *sync.Mutex) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "%s%s\n", prefix, sc.Text())
		mu.Unlock()
	}
}

// waitFile waits for path to exist, for the process behind done to exit, or
// for the timeout.
func waitFile(ctx context.Context, path string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return errors.New("exited before it was ready (its output is above)")
		case <-deadline:
			return fmt.Errorf("not ready after %s", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
