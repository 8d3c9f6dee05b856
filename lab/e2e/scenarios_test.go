package e2e

import (
	"context"
	"testing"
	"time"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// scenarioNodes is how many nodes make each scenario's traffic: more than
// one, so that "every affected node" is a set.
const scenarioNodes = 3

// TestScenarios runs every firewall scenario (but the burst, TestBurst)
// on one lab, switching the rule set between them. For each, portwatch
// watches mn's interface and fw's node-facing interface with the kernel
// backend and the capture backend while every node provisions and runs
// every client, and tcpdump captures the same interfaces. Per observation
// point, the kernel backend must report exactly the verdicts the scenario's
// header expects there (the blocked service with its reason for every node,
// the unexpected port once, nothing else), and the capture backend and
// `portwatch analyze` of the tcpdump capture must report the same; every
// summary must show the expected blocks and nothing else blocked; and
// /metrics, scraped while observe runs, must show them.
func TestScenarios(t *testing.T) {
	requireLab(t)
	portwatchBinary(t) // before the lab: a build failure costs no lab
	left := newLeftovers(t)
	l := labtest.Start(t, lab.Config{Nodes: scenarioNodes})
	for _, s := range lab.Scenarios() {
		if s.Burst != nil {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			if err := l.LoadScenario(s.Name); err != nil {
				t.Fatal(err)
			}
			w := startWatch(t, l, left)
			answered := runScenarioTraffic(t, l, s, l.Nodes())
			w.checkMetrics(t, s)
			w.stop(t)
			w.judge(t, s, l.Nodes(), answered)
		})
	}
}

// TestBurst is the scenario portwatch is for: a rack of nodes provisions at
// once through a firewall that drops the install-status port. fw's
// node-facing observer must report that port blocked exactly once per
// node, and nothing else (not capture_one_sided either); mn's observer
// never sees the port. The capture backend and tcpdump's captures,
// analyzed, must agree, and /metrics must show the block.
func TestBurst(t *testing.T) {
	requireLab(t)
	portwatchBinary(t)
	s, err := lab.ScenarioByName("burst")
	if err != nil {
		t.Fatal(err)
	}
	nodes := max(s.Burst.Nodes, 50)
	left := newLeftovers(t)
	l := labtest.Start(t, lab.Config{Nodes: nodes, Scenario: s.Name})
	w := startWatch(t, l, left)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := l.Burst(ctx, l.Nodes(), s.Burst.Concurrency)
	t.Logf("%s", b)
	checkOutcomes(t, s, b, nil)
	w.checkMetrics(t, s)
	w.stop(t)
	w.judge(t, s, l.Nodes(), answeredServices(b, nil))
}
