package lab

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Step is one step of a provisioning run.
type Step struct {
	Name   string `json:"name"`
	Result Result `json:"result"`
}

// Provisioning is what one node's provisioning run did.
type Provisioning struct {
	Node     string        `json:"node"`
	Steps    []Step        `json:"steps"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
}

// OK reports whether every step succeeded.
func (p Provisioning) OK() bool {
	for _, s := range p.Steps {
		if s.Result.Outcome != OutcomeOK {
			return false
		}
	}
	return true
}

// Step returns the named step's result.
func (p Provisioning) Step(name string) (Result, bool) {
	for _, s := range p.Steps {
		if s.Name == name {
			return s.Result, true
		}
	}
	return Result{}, false
}

// provisionStep is a step of what a PXE-booting node does. A step that the
// rest needs (no lease, no kernel, no image: no install) ends the run when
// it fails; the install-status reports and syslog do not.
type provisionStep struct {
	name   string
	probe  string // the probe whose traffic the step makes
	needed bool
	run    func(l *Lab, ctx context.Context, h Host) Result
}

var provisionSteps = []provisionStep{
	{"dhcp", "dhcp", true, func(l *Lab, ctx context.Context, h Host) Result { return l.DHCP(ctx, h) }},
	{"tftp-boot-file", "tftp", true, func(l *Lab, ctx context.Context, h Host) Result { return l.TFTPGet(ctx, h) }},
	{"http-image", "http", true, func(l *Lab, ctx context.Context, h Host) Result { return l.HTTPGet(ctx, h) }},
	{"status-installing", "status-tcp", false, func(l *Lab, ctx context.Context, h Host) Result {
		return l.XcatdTCP(ctx, h, 3002, "installstatus installing")
	}},
	{"syslog", "syslog-udp", false, func(l *Lab, ctx context.Context, h Host) Result { return l.Syslog(ctx, h, "udp") }},
	{"status-booted", "status-tcp", false, func(l *Lab, ctx context.Context, h Host) Result {
		return l.XcatdTCP(ctx, h, 3002, "installstatus booted")
	}},
}

// ProvisionSteps names the steps of a provisioning run, in order, with the
// probe whose outcome each step has in a scenario.
func ProvisionSteps() (steps, probes []string) {
	for _, s := range provisionSteps {
		steps = append(steps, s.name)
		probes = append(probes, s.probe)
	}
	return steps, probes
}

// Provision does on one node what a PXE-booting xCAT node does: DHCP (with
// the PXE boot option), the boot file over TFTP, the install image over
// HTTP, "installstatus installing" to xcatd's port 3002, a syslog message,
// and "installstatus booted".
func (l *Lab) Provision(ctx context.Context, h Host) Provisioning {
	p := Provisioning{Node: h.Name, Start: time.Now()}
	failed := ""
	for _, s := range provisionSteps {
		var r Result
		if failed != "" {
			r = Result{Probe: s.probe, Host: h.Name, Outcome: OutcomeSkipped, ExitCode: -1,
				Output: "skipped: " + failed + " failed", Start: time.Now()}
		} else {
			r = s.run(l, ctx, h)
			r.Probe = s.probe
			if s.needed && r.Outcome != OutcomeOK {
				failed = s.name
			}
		}
		p.Steps = append(p.Steps, Step{Name: s.name, Result: r})
	}
	p.Duration = time.Since(p.Start)
	return p
}

// BurstResult is a provisioning burst's outcome.
type BurstResult struct {
	Runs        []Provisioning `json:"runs"`
	Concurrency int            `json:"concurrency"`
	Duration    time.Duration  `json:"duration"`
}

// Burst provisions the nodes at once, at most concurrency at a time (0: all
// of them), as a rack does after a power-on.
func (l *Lab) Burst(ctx context.Context, nodes []Host, concurrency int) BurstResult {
	if concurrency <= 0 || concurrency > len(nodes) {
		concurrency = len(nodes)
	}
	res := BurstResult{Runs: make([]Provisioning, len(nodes)), Concurrency: concurrency}
	start := time.Now()
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, h := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res.Runs[i] = l.Provision(ctx, h)
		}()
	}
	wg.Wait()
	res.Duration = time.Since(start)
	return res
}

// Counts tallies outcomes by step: Counts()["tftp-boot-file"][OutcomeOK].
func (b BurstResult) Counts() map[string]map[Outcome]int {
	out := map[string]map[Outcome]int{}
	for _, r := range b.Runs {
		for _, s := range r.Steps {
			if out[s.Name] == nil {
				out[s.Name] = map[Outcome]int{}
			}
			out[s.Name][s.Result.Outcome]++
		}
	}
	return out
}

// CheckBurst compares every step of every run with the scenario: a step has
// the outcome of its probe, or is skipped after a needed step failed.
func (s *Scenario) CheckBurst(b BurstResult) []Mismatch {
	var out []Mismatch
	for _, run := range b.Runs {
		failed := false
		for i, st := range run.Steps {
			want := s.ExpectedOutcome(provisionSteps[i].probe)
			if failed {
				want = OutcomeSkipped
			}
			if st.Result.Outcome != want {
				r := st.Result
				r.Probe = st.Name
				out = append(out, Mismatch{Result: r, Want: want})
			}
			failed = failed || (provisionSteps[i].needed && want != OutcomeOK)
		}
	}
	return out
}

// String renders the tally as a small table, one line per step.
func (b BurstResult) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d nodes, %d at a time, %.1fs\n", len(b.Runs), b.Concurrency, b.Duration.Seconds())
	counts := b.Counts()
	for _, s := range provisionSteps {
		c := counts[s.name]
		var parts []string
		for o, n := range c {
			parts = append(parts, fmt.Sprintf("%s=%d", o, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(&sb, "  %-18s %s\n", s.name, strings.Join(parts, " "))
	}
	return sb.String()
}
