package loader

import (
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
)

// The packet program stamps exchanges with the kernel's tick counter
// (jiffies), which costs it nothing to read; the loader turns ticks into
// time. A tick lasts 1/CONFIG_HZ seconds, and nothing outside the kernel
// says what CONFIG_HZ is, so the loader measures it.

// kernelHZ are the tick rates the kernel can be built with.
var kernelHZ = []float64{100, 250, 300, 1000}

// tickSample is one reading of the tick counter and the monotonic clock
// together, by the program portwatch_clock.
type tickSample struct {
	ticks  uint64
	monoNs int64
}

// clockFrame is what portwatch_clock runs on: it reads no packet, but a
// test run needs an Ethernet header's worth.
var clockFrame [14]byte

func (l *Loader) readTicks() (tickSample, error) {
	if _, err := l.objs.PortwatchClock.Run(&ebpf.RunOptions{Data: clockFrame[:], Repeat: 1}); err != nil {
		return tickSample{}, fmt.Errorf("reading the kernel's tick counter: %w", err)
	}
	var s tickSample
	var mono uint64
	if err := l.objs.ClockTicks.Get(&s.ticks); err != nil {
		return tickSample{}, err
	}
	if err := l.objs.ClockMonoNs.Get(&mono); err != nil {
		return tickSample{}, err
	}
	s.monoNs = int64(mono)
	return s, nil
}

// tickScale places the kernel's ticks on the monotonic clock: hz ticks a
// second, and tick edge began at monotonic time edgeNs. Measured once: the
// kernel advances its ticks by the monotonic clock, so the two never drift
// apart, and every snapshot turns a stamp into the same time.
type tickScale struct {
	hz     int64
	edge   uint64
	edgeNs int64
}

// monoNs is the monotonic time at which tick stamp began. Whole seconds
// and the rest apart: at 300 Hz a tick is not a whole number of
// nanoseconds, and a rounded one would drift by milliseconds a day.
func (s tickScale) monoNs(stamp uint64) int64 {
	d := int64(stamp - s.edge)
	return s.edgeNs + d/s.hz*1e9 + d%s.hz*1e9/s.hz
}

// minTickSpan is how long measureTick watches the tick counter. A reading
// can come late (this process preempted): over three ticks, a millisecond
// late is a third of the way from 250 Hz to 300 Hz; over 100 ms it is 1%.
const minTickSpan = 100 * time.Millisecond

// measureTick measures the tick scale: the length of a tick is the
// monotonic time between the first and the last tick edge seen over
// minTickSpan, rounded to the nearest tick rate the kernel can have.
func (l *Loader) measureTick() (tickScale, error) {
	const edges = 4
	deadline := time.Now().Add(time.Second)
	first, err := l.readTicks()
	if err != nil {
		return tickScale{}, err
	}
	var edgesSeen []tickSample
	prev := first.ticks
	for len(edgesSeen) < edges || edgesSeen[len(edgesSeen)-1].monoNs-edgesSeen[0].monoNs < minTickSpan.Nanoseconds() {
		if time.Now().After(deadline) {
			return tickScale{}, fmt.Errorf("the kernel's tick counter did not advance within a second")
		}
		s, err := l.readTicks()
		if err != nil {
			return tickScale{}, err
		}
		if s.ticks == prev {
			continue
		}
		prev = s.ticks
		edgesSeen = append(edgesSeen, s)
	}
	return tickScaleOf(edgesSeen), nil
}

// tickScaleOf turns tick edges, each read at or after it happened, into the
// tick scale.
func tickScaleOf(edgesSeen []tickSample) tickScale {
	start, end := edgesSeen[0], edgesSeen[len(edgesSeen)-1]
	perTick := float64(end.monoNs-start.monoNs) / float64(end.ticks-start.ticks)
	best, bestErr := kernelHZ[0], math.Inf(1)
	for _, hz := range kernelHZ {
		if d := math.Abs(perTick - 1e9/hz); d < bestErr {
			best, bestErr = hz, d
		}
	}
	// Each reading that saw a new tick came at or after that tick's edge
	// (later when this process was not running): the earliest one, carried
	// back to the first edge, places the ticks best.
	scale := tickScale{hz: int64(best), edge: start.ticks, edgeNs: start.monoNs}
	for _, e := range edgesSeen[1:] {
		scale.edgeNs = min(scale.edgeNs, e.monoNs-(scale.monoNs(e.ticks)-scale.edgeNs))
	}
	return scale
}

// clockStepSlack is the largest change of the wall clock's offset from the
// monotonic clock, between two snapshots, that tickClock follows: NTP's
// slewing moves it by milliseconds; a larger change is a step.
const clockStepSlack = time.Second

// followOffset returns the offset to convert times with, given the one in
// use and the one just measured: the measured one unless the wall clock was
// stepped. A step is not followed: stamps converted across it would move
// by the step (back: every later packet would look older than the newest
// one seen, its exchange unchanged, until the clock caught up; the spans
// of attempts would shrink or grow by it). Times then differ from the wall
// clock by the step until portwatch restarts.
func followOffset(inUse, measured int64) (offset int64, stepped bool) {
	if d := measured - inUse; d > clockStepSlack.Nanoseconds() || d < -clockStepSlack.Nanoseconds() {
		return inUse, true
	}
	return measured, false
}

// tickClock returns a bpf.Clock that turns tick stamps into wall time, and
// the time of the snapshot on the same line. The offset of the wall clock
// from the monotonic one is read anew for every snapshot and followed while
// it drifts (NTP slews), not when it is stepped (followOffset). The caller
// holds snapMu.
func (l *Loader) tickClock() (bpf.Clock, time.Time, error) {
	if l.ticks.hz == 0 {
		scale, err := l.measureTick()
		if err != nil {
			return nil, time.Time{}, err
		}
		l.ticks = scale
	}
	measured, err := monotonicOffset()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !l.haveOffset {
		l.wallOffset, l.haveOffset = measured, true
	}
	offset, stepped := followOffset(l.wallOffset, measured)
	// Once per step: the measured offset jitters by microseconds from one
	// snapshot to the next.
	if _, again := followOffset(l.steppedTo, measured); stepped && again {
		l.steppedTo = measured
		l.log.Warn("the wall clock was stepped; portwatch keeps the time line it had, so that its judgements stay right, and its times differ from the clock by the step until it restarts",
			"step", time.Duration(measured-l.wallOffset).String())
	}
	l.wallOffset = offset
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the monotonic clock: %w", err)
	}
	scale := l.ticks
	return func(stamp uint64) time.Time {
		if stamp == 0 {
			return time.Time{}
		}
		return time.Unix(0, offset+scale.monoNs(stamp))
	}, time.Unix(0, offset+mono.Nano()), nil
}
