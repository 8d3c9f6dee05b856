package loader

import (
	"slices"
	"testing"
	"time"
)

// TestTickStamps: the program stamps exchanges with kernel ticks, and the
// snapshot turns them into the wall time at which the packets were seen,
// to within a tick.
func TestTickStamps(t *testing.T) {
	l := loadForTest(t, Config{})
	if hz := 1e9 / float64(l.ticks.ns); !slices.Contains(kernelHZ, hz) {
		t.Fatalf("measured a tick of %d ns (%g Hz), not a rate the kernel can have", l.ticks.ns, hz)
	}
	h := hostsFor(1, false)
	before := time.Now()
	if _, err := l.RunXDP(tcpFrame(t, ap(h.c, 40000), ap(h.s, 3001), flagSYN, 1, nil)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := l.RunXDP(tcpFrame(t, ap(h.c, 40000), ap(h.s, 3001), flagSYN, 2, nil)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	snap := mustSnapshot(t, l)
	if len(snap.Exchanges) != 1 {
		t.Fatalf("%d exchanges, want 1", len(snap.Exchanges))
	}
	c := snap.Exchanges[0].Counters
	// A stamp is the start of the tick the packet came in; allow one
	// more tick and a millisecond for the reading of the clocks.
	slack := time.Duration(l.ticks.ns) + time.Millisecond
	if c.FirstSeen.Before(before.Add(-slack)) || c.FirstSeen.After(before.Add(300*time.Millisecond)) {
		t.Errorf("first seen %v, want just after %v", c.FirstSeen, before)
	}
	if c.LastSeen.Before(after.Add(-50*time.Millisecond-slack)) || c.LastSeen.After(after.Add(slack)) {
		t.Errorf("last seen %v, want just before %v", c.LastSeen, after)
	}
	if gap := c.LastSeen.Sub(c.FirstSeen); gap < 300*time.Millisecond-slack || gap > after.Sub(before)+slack {
		t.Errorf("first to last seen %v, want about 300 ms", gap)
	}
}
