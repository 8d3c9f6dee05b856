package loader

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portwatch/bpf"
	"portwatch/catalog"
)

// readPortMap returns the non-empty entries of the kernel's port map.
func readPortMap(t *testing.T, l *Loader) map[uint32]bpf.PortwatchPortEntry {
	t.Helper()
	out := map[uint32]bpf.PortwatchPortEntry{}
	var k uint32
	var v bpf.PortwatchPortEntry
	it := l.objs.Ports.Iterate()
	for it.Next(&k, &v) {
		if v != (bpf.PortwatchPortEntry{}) {
			out[k] = v
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantPortMap(cat *catalog.Catalog) map[uint32]bpf.PortwatchPortEntry {
	out := map[uint32]bpf.PortwatchPortEntry{}
	for _, e := range bpf.PortMap(cat) {
		out[e.Index] = e.Value
	}
	return out
}

func TestSetCatalog(t *testing.T) {
	base := testCatalog(t)
	l := loadForTest(t, Config{Catalog: base})
	if got, want := readPortMap(t, l), wantPortMap(base); !maps.Equal(got, want) {
		t.Fatalf("after Load the port map has %d entries, want the catalog's %d", len(got), len(want))
	}

	learned := func(port uint16) *catalog.Catalog {
		c, err := base.WithLearnedPort("mount-udp/udp", port)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	moved, err := catalog.Load(catalog.Options{Ports: []string{"xcatdport=3011"}})
	if err != nil {
		t.Fatal(err)
	}
	mountd := base.ByKey("mount-udp/udp").ID
	idx := func(proto catalog.Proto, port uint16) uint32 {
		i, _ := bpf.PortIndex(proto, port)
		return i
	}
	for _, step := range []struct {
		name    string
		cat     *catalog.Catalog
		present map[uint32]uint16 // index -> service that must be there
		absent  []uint32
	}{
		{"mountd learned", learned(20048), map[uint32]uint16{idx(catalog.UDP, 20048): uint16(mountd)}, nil},
		{"mountd moved", learned(20049), map[uint32]uint16{idx(catalog.UDP, 20049): uint16(mountd)},
			[]uint32{idx(catalog.UDP, 20048)}},
		{"site moves xcatd", moved, map[uint32]uint16{idx(catalog.TCP, 3011): 1, idx(catalog.UDP, 3011): 2},
			[]uint32{idx(catalog.TCP, 3001), idx(catalog.UDP, 3001), idx(catalog.UDP, 20049)}},
		{"back to the built-in table", base, map[uint32]uint16{idx(catalog.TCP, 3001): 1},
			[]uint32{idx(catalog.TCP, 3011)}},
	} {
		if err := l.SetCatalog(step.cat); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := readPortMap(t, l)
		if want := wantPortMap(step.cat); !maps.Equal(got, want) {
			t.Errorf("%s: the port map differs from the catalog's (%d entries, want %d)", step.name, len(got), len(want))
		}
		for i, svc := range step.present {
			if got[i].Service != svc {
				t.Errorf("%s: entry %#x serves %d, want %d", step.name, i, got[i].Service, svc)
			}
		}
		for _, i := range step.absent {
			if _, ok := got[i]; ok {
				t.Errorf("%s: entry %#x is still set", step.name, i)
			}
		}
	}

	// A learned port takes traffic at once.
	if err := l.SetCatalog(learned(20048)); err != nil {
		t.Fatal(err)
	}
	h := hostsFor(1, false)
	before := mustSnapshot(t, l)
	if _, err := l.RunXDP(udpFrame(t, ap(h.c, 900), ap(h.s, 20048), []byte("mnt"))); err != nil {
		t.Fatal(err)
	}
	after := mustSnapshot(t, l)
	if n := after.Services[mountd].Requests - before.Services[mountd].Requests; n != 1 {
		t.Errorf("a request to the learned mountd port counted %d times under mount-udp, want 1", n)
	}
}

// While the port map is rewritten again and again, traffic to a port that
// every catalog keeps is never counted as traffic on no catalog port.
func TestSetCatalogKeepsStablePorts(t *testing.T) {
	base := testCatalog(t)
	l := loadForTest(t, Config{Catalog: base})
	var cats []*catalog.Catalog
	for _, port := range []uint16{20048, 20049} {
		c, err := base.WithLearnedPort("mount-udp/udp", port)
		if err != nil {
			t.Fatal(err)
		}
		cats = append(cats, c)
	}
	h := hostsFor(2, false)
	frame := tcpFrame(t, ap(h.c, 40000), ap(h.s, 3001), flagACK, 1, []byte("data"))
	before := mustSnapshot(t, l)

	var sent atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.RunXDP(frame); err != nil {
				t.Error(err)
				return
			}
			sent.Add(1)
		}
	})
	for i := range 300 {
		if err := l.SetCatalog(cats[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()

	after := mustSnapshot(t, l)
	if got := after.Services[1].Packets - before.Services[1].Packets; got != sent.Load() {
		t.Errorf("xcatdport/tcp counted %d of %d packets", got, sent.Load())
	}
	if n := after.Parse[bpf.ParseNonCatalog] - before.Parse[bpf.ParseNonCatalog]; n != 0 {
		t.Errorf("%d packets to 3001 were taken for traffic on no catalog port", n)
	}
}

// Batch lookups and plain iteration must read the same snapshot.
func TestSnapshotWithoutBatchOps(t *testing.T) {
	l := loadForTest(t, Config{})
	cases := frameCases()
	for i, c := range cases {
		if c.tcRefused {
			continue
		}
		for _, f := range c.frames(t, hostsFor(i+1, c.family == v6Only)) {
			if _, err := l.RunXDP(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	batch := mustSnapshot(t, l)
	l.noBatch = true
	iterated := mustSnapshot(t, l)
	if len(batch.Exchanges) < 40 || len(batch.Unexpected) < 2 {
		t.Fatalf("the frames left %d exchanges and %d unexpected ports; the comparison needs more",
			len(batch.Exchanges), len(batch.Unexpected))
	}
	if !reflect.DeepEqual(batch.Services, iterated.Services) || !reflect.DeepEqual(batch.Parse, iterated.Parse) {
		t.Error("batch lookups and iteration read different per-CPU counters")
	}
	// Timestamps differ by the clock offset, read anew per snapshot.
	near := func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Millisecond }
	if len(batch.Exchanges) != len(iterated.Exchanges) || len(batch.Unexpected) != len(iterated.Unexpected) {
		t.Fatalf("batch lookups read %d exchanges and %d unexpected ports, iteration %d and %d",
			len(batch.Exchanges), len(batch.Unexpected), len(iterated.Exchanges), len(iterated.Unexpected))
	}
	iteratedExchanges := iterated.ExchangeMap()
	for k, b := range batch.ExchangeMap() {
		i := iteratedExchanges[k]
		if !near(b.FirstSeen, i.FirstSeen) || !near(b.LastSeen, i.LastSeen) {
			t.Errorf("exchange %+v: timestamps %v/%v and %v/%v", k, b.FirstSeen, b.LastSeen, i.FirstSeen, i.LastSeen)
		}
		b.FirstSeen, b.LastSeen, i.FirstSeen, i.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if b != i {
			t.Errorf("exchange %+v: batch read %+v, iteration %+v", k, b, i)
		}
	}
	for k, b := range batch.Unexpected {
		i := iterated.Unexpected[k]
		if !near(b.FirstSeen, i.FirstSeen) || b.Answers != i.Answers || b.Client != i.Client {
			t.Errorf("unexpected port %+v: batch read %+v, iteration %+v", k, b, i)
		}
	}
}

func TestBytesCounted(t *testing.T) {
	l := loadForTest(t, Config{})
	h := hostsFor(3, false)
	for _, hk := range hooks {
		frame := udpFrame(t, ap(h.c, 40000), ap(h.s, 161), make([]byte, 333))
		before := mustSnapshot(t, l)
		if _, err := hk.run(l, frame); err != nil {
			t.Fatal(err)
		}
		after := mustSnapshot(t, l)
		snmp := testCatalog(t).ByKey("snmp/udp").ID
		if got := after.Services[snmp].Bytes - before.Services[snmp].Bytes; got != uint64(len(frame)) {
			t.Errorf("%s: counted %d bytes for a %d-byte frame", hk.name, got, len(frame))
		}
	}
}

// No driver hands a program a frame shorter than an Ethernet header, and
// BPF_PROG_TEST_RUN refuses one; the parser's truncated_ethernet counter is
// its guard for such a frame all the same.
func TestRuntsRefused(t *testing.T) {
	l := loadForTest(t, Config{})
	for _, hk := range hooks {
		for n := range ethHeaderLen {
			if _, err := hk.run(l, make([]byte, n)); !errors.Is(err, unix.EINVAL) {
				t.Errorf("%s: a %d-byte frame: %v, want EINVAL", hk.name, n, err)
			}
		}
	}
}

// The clock conversion: a packet run now is stamped now, in wall time.
func TestSnapshotWallClock(t *testing.T) {
	l := loadForTest(t, Config{})
	h := hostsFor(4, false)
	start := mustSnapshot(t, l).Time
	if _, err := l.RunXDP(tcpFrame(t, ap(h.c, 40000), ap(h.s, 22), flagSYN, 1, nil)); err != nil {
		t.Fatal(err)
	}
	snap := mustSnapshot(t, l)
	key := bpf.ExchangeKey{Service: testCatalog(t).ByKey("ssh-tcp/tcp").ID, Client: h.c, Server: h.s}
	ex, ok := snap.ExchangeMap()[key]
	if !ok {
		t.Fatalf("no exchange %+v", key)
	}
	// The offset is read to within a few microseconds; allow scheduling.
	const slack = 50e6
	if ex.FirstSeen.Before(start.Add(-slack)) || ex.FirstSeen.After(snap.Time.Add(slack)) {
		t.Errorf("first seen %v is outside [%v, %v]", ex.FirstSeen, start, snap.Time)
	}
	if !ex.LastSeen.Equal(ex.FirstSeen) {
		t.Errorf("one packet: last seen %v differs from first seen %v", ex.LastSeen, ex.FirstSeen)
	}
}

// The port map of a loader is its own: two loaders do not share maps.
func TestLoadersAreIndependent(t *testing.T) {
	a := loadForTest(t, Config{})
	b := loadForTest(t, Config{})
	h := hostsFor(5, false)
	if _, err := a.RunXDP(tcpFrame(t, ap(h.c, 40000), ap(h.s, 22), flagSYN, 1, nil)); err != nil {
		t.Fatal(err)
	}
	if n := len(mustSnapshot(t, b).Exchanges); n != 0 {
		t.Errorf("a fresh loader sees %d exchanges of another", n)
	}
	ia, _ := a.objs.Exchanges.Info()
	ib, _ := b.objs.Exchanges.Info()
	idA, _ := ia.ID()
	idB, _ := ib.ID()
	if idA == idB {
		t.Errorf("both loaders use exchange map %d: pinning or map reuse crept in", idA)
	}
}

// A full perf ring loses samples; every copy is either delivered or
// counted as lost.
func TestLearnEventsLost(t *testing.T) {
	l := loadForTest(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.LearnEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.LearnEvents(ctx); err == nil {
		t.Error("a second LearnEvents succeeded")
	}
	h := hostsFor(6, false)
	frame := udpFrame(t, ap(h.c, 41300), ap(h.s, 111), rpcGetport)
	// All runs on one CPU, so that one ring overflows and the sample sent
	// last, on that CPU, carries the count of the lost ones. The thread
	// stays locked: it ends with the test instead of going back, pinned,
	// to the scheduler.
	runtime.LockOSThread()
	var one unix.CPUSet
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	// Nobody reads the channel yet: its buffer and then the rings fill.
	const sent = 5000
	for range sent {
		if _, err := l.RunXDP(frame); err != nil {
			t.Fatal(err)
		}
	}
	read := func(f []byte) {
		if !bytes.Equal(f, frame) {
			t.Fatalf("a learn event of %d bytes is not the frame", len(f))
		}
	}
	var received uint64
	// Drain what the channel and the rings hold.
	for idle := false; !idle; {
		select {
		case f := <-events:
			read(f)
			received++
		case <-time.After(200 * time.Millisecond):
			idle = true
		}
	}
	// The kernel reports the samples it dropped with the next one it
	// queues: send one more.
	if _, err := l.RunXDP(frame); err != nil {
		t.Fatal(err)
	}
	const total = sent + 1
	deadline := time.After(10 * time.Second)
	for received+l.LearnLost() < total {
		select {
		case f := <-events:
			read(f)
			received++
		case <-deadline:
			t.Fatalf("received %d and lost %d of %d copies", received, l.LearnLost(), total)
		}
	}
	if l.LearnLost() == 0 || received+l.LearnLost() != total {
		t.Errorf("received %d and lost %d of %d copies; want some lost and none unaccounted",
			received, l.LearnLost(), total)
	}
	cancel()
	for range events {
	}
}
