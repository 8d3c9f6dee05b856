package loader

import (
	"errors"
	"fmt"
	"math"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
)

// snapshotBuffers are reused by every snapshot, so that reading the maps
// allocates little beyond the snapshot itself.
type snapshotBuffers struct {
	serviceKeys []uint32
	serviceVals []bpf.PortwatchServiceCounters // per key, one value per CPU
	parseVals   []bpf.PortwatchParseCounters   // one per CPU
	// lastExchanges sizes the next snapshot's exchange list.
	lastExchanges int
	exchanges     exchangeReader
}

// Snapshot reads the cumulative counters: per-service and parse counters
// summed over the CPUs, the exchange table and the unexpected-port table.
// It never resets or deletes anything: rates come from two snapshots. The
// tables are read from memory while the programs write them: an entry that
// changes meanwhile may be seen old or new, and one given way to a new key
// is gone (the classifier takes a vanished exchange as evicted).
func (l *Loader) Snapshot() (bpf.Snapshot, error) {
	l.snapMu.Lock()
	defer l.snapMu.Unlock()

	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return bpf.Snapshot{}, fmt.Errorf("counting CPUs: %w", err)
	}
	clock, now, err := l.tickClock()
	if err != nil {
		return bpf.Snapshot{}, err
	}
	snap := bpf.Snapshot{Time: now}

	if snap.Services, err = l.readServices(cpus); err != nil {
		return bpf.Snapshot{}, fmt.Errorf("reading the service counters: %w", err)
	}
	if snap.Parse, err = l.readParse(cpus); err != nil {
		return bpf.Snapshot{}, fmt.Errorf("reading the parse counters: %w", err)
	}

	// Growing a slice of 100,000 entries costs more than reading them.
	snap.Exchanges = make([]bpf.ExchangeEntry, 0, l.snap.lastExchanges+l.snap.lastExchanges/8)
	snap.Exchanges = l.snap.exchanges.read(l.exchangeTable, clock, snap.Exchanges)
	l.snap.lastExchanges = len(snap.Exchanges)
	snap.Unexpected = make(map[bpf.UnexpectedKey]bpf.UnexpectedCounters)
	readUnexpected(l.unexpectedTable, clock, snap.Unexpected)
	return snap, nil
}

func (l *Loader) readServices(cpus int) ([]bpf.ServiceCounters, error) {
	m := l.objs.ServiceStats
	n := int(m.MaxEntries())
	b := &l.snap
	if len(b.serviceKeys) != n || len(b.serviceVals) != n*cpus {
		b.serviceKeys = make([]uint32, n)
		b.serviceVals = make([]bpf.PortwatchServiceCounters, n*cpus)
	}
	if err := readPerCPUArray(m, b.serviceKeys, b.serviceVals, cpus, l.noBatch); err != nil {
		return nil, err
	}
	out := make([]bpf.ServiceCounters, n)
	for i := range n {
		for _, v := range b.serviceVals[i*cpus : (i+1)*cpus] {
			out[i].Add(v)
		}
	}
	return out, nil
}

func (l *Loader) readParse(cpus int) ([]uint64, error) {
	b := &l.snap
	if len(b.parseVals) != cpus {
		b.parseVals = make([]bpf.PortwatchParseCounters, cpus)
	}
	if err := l.objs.ParseStats.Lookup(uint32(0), b.parseVals); err != nil {
		return nil, err
	}
	out := make([]uint64, bpf.NumParseCounters)
	for _, v := range b.parseVals {
		for i := range out {
			out[i] += v.Count[i]
		}
	}
	return out, nil
}

// readPerCPUArray reads every entry of a per-CPU array into vals, one run
// of cpus values per key, with batch lookups where the kernel has them
// (5.6+) and one lookup per key otherwise.
func readPerCPUArray[V any](m *ebpf.Map, keys []uint32, vals []V, cpus int, noBatch bool) error {
	if !noBatch {
		var cursor ebpf.MapBatchCursor
		off := 0
		for off < len(keys) {
			n, err := m.BatchLookup(&cursor, keys[off:], vals[off*cpus:], nil)
			if errors.Is(err, ebpf.ErrNotSupported) && off == 0 {
				break
			}
			// An array's keys are its indices; the kernel returns them in
			// order, so the values land at their own index.
			off += n
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		if off > 0 {
			return nil
		}
	}
	for i := range keys {
		keys[i] = uint32(i)
		if err := m.Lookup(keys[i], vals[i*cpus:(i+1)*cpus]); err != nil {
			return err
		}
	}
	return nil
}

// monotonicOffset is CLOCK_REALTIME minus CLOCK_MONOTONIC in nanoseconds,
// from the tightest of a few back-to-back readings.
func monotonicOffset() (int64, error) {
	var offset int64
	best := int64(math.MaxInt64)
	for range 3 {
		var before, mono, after unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &before); err != nil {
			return 0, fmt.Errorf("reading the wall clock: %w", err)
		}
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
			return 0, fmt.Errorf("reading the monotonic clock: %w", err)
		}
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &after); err != nil {
			return 0, fmt.Errorf("reading the wall clock: %w", err)
		}
		gap := after.Nano() - before.Nano()
		if gap >= 0 && gap < best {
			best = gap
			offset = before.Nano() + gap/2 - mono.Nano()
		}
	}
	return offset, nil
}
