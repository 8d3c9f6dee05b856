package loader

import (
	"slices"
	"testing"
	"time"
)

// TestTickStamps: the program stamps exchanges with kernel ticks, and the
// snapshot turns them into the wall time at which the packets were seen,
// to within a tick.
// TestTickScale: a stamp converts exactly at rates whose tick is not a
// whole number of nanoseconds, however far from the measured edge.
func TestTickScale(t *testing.T) {
	s := tickScale{hz: 300, edge: 1000, edgeNs: 5e9}
	for _, c := range []struct {
		stamp uint64
		want  int64
	}{
		{1000, 5e9},
		{1001, 5e9 + 3333333},
		{1300, 6e9},
		{1000 + 300*86400*365, 5e9 + 86400*365*1e9},
		{999, 5e9 - 3333333},
		{700, 4e9},
	} {
		if got := s.monoNs(c.stamp); got != c.want {
			t.Errorf("tick %d: %d ns, want %d", c.stamp, got, c.want)
		}
	}
}

// TestTickRateOfLateReadings: the edges measureTick reads over minTickSpan
// give the kernel's rate even when a reading at either end came late (the
// process preempted for a millisecond and a half), for every rate.
func TestTickRateOfLateReadings(t *testing.T) {
	for _, hz := range kernelHZ {
		tick := 1e9 / hz
		n := int(float64(minTickSpan.Nanoseconds())/tick) + 2
		for _, late := range []int{0, n - 1} {
			var edges []tickSample
			for i := range n {
				ns := int64(float64(i) * tick)
				if i == late {
					ns += 1500 * int64(time.Microsecond)
				}
				edges = append(edges, tickSample{ticks: 5000 + uint64(i), monoNs: 7e9 + ns})
			}
			if got := tickScaleOf(edges).hz; got != int64(hz) {
				t.Errorf("%g Hz, reading %d late: measured %d Hz", hz, late, got)
			}
		}
	}
}

// TestFollowOffset: the wall clock's offset is followed while NTP slews it
// and kept when the clock is stepped, either way.
func TestFollowOffset(t *testing.T) {
	const base = int64(1_700_000_000) * 1e9
	for _, c := range []struct {
		name     string
		measured int64
		want     int64
		stepped  bool
	}{
		{"unchanged", base, base, false},
		{"slewed", base + 3*int64(time.Millisecond), base + 3*int64(time.Millisecond), false},
		{"stepped back a minute", base - int64(time.Minute), base, true},
		{"stepped forward an hour", base + int64(time.Hour), base, true},
	} {
		got, stepped := followOffset(base, c.measured)
		if got != c.want || stepped != c.stepped {
			t.Errorf("%s: offset %d, stepped %v; want %d, %v", c.name, got-base, stepped, c.want-base, c.stepped)
		}
	}
}

func TestTickStamps(t *testing.T) {
	l := loadForTest(t, Config{})
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
	if !slices.Contains(kernelHZ, float64(l.ticks.hz)) {
		t.Fatalf("measured %d ticks a second, not a rate the kernel can have", l.ticks.hz)
	}
	if len(snap.Exchanges) != 1 {
		t.Fatalf("%d exchanges, want 1", len(snap.Exchanges))
	}
	c := snap.Exchanges[0].Counters
	// A stamp is the start of the tick the packet came in; allow one
	// more tick and a millisecond for the reading of the clocks.
	slack := time.Second/time.Duration(l.ticks.hz) + time.Millisecond
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
