package loader

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"portwatch/bpf"
	"portwatch/bpf/packets"
	"portwatch/catalog"
)

// The differential test: the same frames through the kernel program
// (BPF_PROG_TEST_RUN) and through its Go twin give the same counters. It is
// what keeps twin.go in step with portwatch.c; the fuzz target drives it with
// arbitrary frames.

// diffRig is one loaded program and a catalog, reset between inputs.
type diffRig struct {
	l   *Loader
	cat *catalog.Catalog
}

func newDiffRig(tb testing.TB) *diffRig {
	tb.Helper()
	requirePrivileged(tb)
	cat, err := catalog.Load(catalog.Options{Profiles: []string{"linux", "ipmi", "statelite"}})
	if err != nil {
		tb.Fatal(err)
	}
	// Small tables: a fuzz input never fills them, and resetting them is
	// cheap.
	l, err := Load(Config{Catalog: cat, Sizes: MapSizes{Exchanges: 1024, Ephemeral: 1024, Unexpected: 1024, Flows: 1024}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return &diffRig{l: l, cat: cat}
}

// reset empties every table and zeroes every counter. Only tests do this:
// portwatch itself never resets a kernel counter.
func (r *diffRig) reset(tb testing.TB) {
	tb.Helper()
	clearTables(tb, r.l)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	keys := make([]uint32, catalog.MaxServiceID+1)
	for i := range keys {
		keys[i] = uint32(i)
	}
	zeros := make([]bpf.PortwatchServiceCounters, len(keys)*cpus)
	if _, err := r.l.objs.ServiceStats.BatchUpdate(keys, zeros, nil); err != nil {
		tb.Fatal(err)
	}
	if err := r.l.objs.ParseStats.Put(uint32(0), make([]bpf.PortwatchParseCounters, cpus)); err != nil {
		tb.Fatal(err)
	}
}

// clearTable empties a table: every slot free, through a writable mapping
// of its memory.
func clearTable(tb testing.TB, m *ebpf.Map) {
	tb.Helper()
	mem, err := m.Memory()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := mem.WriteAt(make([]byte, mem.Size()), 0); err != nil {
		tb.Fatal(err)
	}
}

// clearTables empties the loader's four tables.
func clearTables(tb testing.TB, l *Loader) {
	for _, m := range []*ebpf.Map{l.objs.Exchanges, l.objs.Ephemeral, l.objs.Unexpected, l.objs.UdpFlows,
		l.objs.ExchangesIndex, l.objs.EphemeralIndex, l.objs.UnexpectedIndex, l.objs.UdpFlowsIndex} {
		clearTable(tb, m)
	}
}

// run sends frames through the kernel program and a fresh twin and returns
// both snapshots. Frames the kernel refuses to test-run (shorter than an
// Ethernet header) are left out of both. TC runs every other frame, falling
// back to XDP for a frame the TC test run refuses, so that both hooks share
// the comparison.
func (r *diffRig) run(tb testing.TB, frames [][]byte) (kernel, twin bpf.Snapshot) {
	tb.Helper()
	r.reset(tb)
	tw := bpf.NewTwin(r.cat, bpf.DefaultTwinConfig)
	ts := time.Unix(1700000000, 0)
	for i, f := range frames {
		if len(f) < 14 {
			continue
		}
		ran := false
		if i%2 == 1 {
			ret, err := r.l.RunTC(f)
			if err == nil {
				if ret != tcActUnspec {
					tb.Fatalf("frame %d: TC returned %d, not TC_ACT_UNSPEC: the observer must never change traffic", i, ret)
				}
				ran = true
			}
		}
		if !ran {
			ret, err := r.l.RunXDP(f)
			if err != nil {
				tb.Fatalf("frame %d (%d bytes): %v", i, len(f), err)
			}
			if ret != xdpPass {
				tb.Fatalf("frame %d: XDP returned %d, not XDP_PASS: the observer must never change traffic", i, ret)
			}
		}
		tw.Ethernet(f, len(f), ts)
	}
	k, err := r.l.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	return k, tw.Snapshot()
}

// snapshotDiff lists the differences between two snapshots, times aside.
func snapshotDiff(kernel, twin bpf.Snapshot) []string {
	var out []string
	for id := range max(len(kernel.Services), len(twin.Services)) {
		var k, t bpf.ServiceCounters
		if id < len(kernel.Services) {
			k = kernel.Services[id]
		}
		if id < len(twin.Services) {
			t = twin.Services[id]
		}
		if k != t {
			out = append(out, fmt.Sprintf("service %d: kernel %+v, twin %+v", id, k, t))
		}
	}
	for c := range bpf.NumParseCounters {
		if kernel.Parse[c] != twin.Parse[c] {
			out = append(out, fmt.Sprintf("parse counter %s: kernel %d, twin %d", c, kernel.Parse[c], twin.Parse[c]))
		}
	}
	strip := func(c bpf.ExchangeCounters) bpf.ExchangeCounters {
		c.FirstSeen, c.LastSeen = time.Time{}, time.Time{}
		return c
	}
	kernelExchanges, twinExchanges := kernel.ExchangeMap(), twin.ExchangeMap()
	for k, kv := range kernelExchanges {
		tv, ok := twinExchanges[k]
		if !ok {
			out = append(out, fmt.Sprintf("exchange %+v: only in the kernel", k))
		} else if strip(kv) != strip(tv) {
			out = append(out, fmt.Sprintf("exchange %+v: kernel %+v, twin %+v", k, strip(kv), strip(tv)))
		}
	}
	for k := range twinExchanges {
		if _, ok := kernelExchanges[k]; !ok {
			out = append(out, fmt.Sprintf("exchange %+v: only in the twin", k))
		}
	}
	for k, kv := range kernel.Unexpected {
		tv, ok := twin.Unexpected[k]
		if !ok || kv.Answers != tv.Answers || kv.Client != tv.Client {
			out = append(out, fmt.Sprintf("unexpected %+v: kernel %+v, twin %+v (present %v)", k, kv, tv, ok))
		}
	}
	for k := range twin.Unexpected {
		if _, ok := kernel.Unexpected[k]; !ok {
			out = append(out, fmt.Sprintf("unexpected %+v: only in the twin", k))
		}
	}
	slices.Sort(out)
	return out
}

// TestDifferential runs the shared corpus and the mixed management set
// through both and requires identical counters.
func TestDifferential(t *testing.T) {
	r := newDiffRig(t)
	cases := packets.Corpus()
	cases = append(cases, packets.Case{Name: "mixed-round", Frames: packets.MixedRound()})
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			k, tw := r.run(t, c.Frames)
			if d := snapshotDiff(k, tw); len(d) > 0 {
				t.Errorf("kernel and twin differ:\n  %s", strings.Join(d, "\n  "))
			}
		})
	}
}

// encodeFrames packs frames into one fuzz input: a 2-byte length before
// each frame.
func encodeFrames(frames [][]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeFrames undoes encodeFrames; a length longer than what is left takes
// what is left, so every input means something. At most 32 frames.
func decodeFrames(b []byte) [][]byte {
	var frames [][]byte
	for len(b) >= 2 && len(frames) < 32 {
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b), 1514)
		frames = append(frames, b[:n])
		b = b[n:]
	}
	return frames
}

// TestDifferentialSeeds keeps the committed seed corpus of FuzzDifferential
// equal to the shared corpus: go test -run TestDifferentialSeeds -update.
func TestDifferentialSeeds(t *testing.T) {
	for _, c := range packets.Corpus() {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", encodeFrames(c.Frames))
		golden(t, "fuzz/FuzzDifferential/"+c.Name, []byte(want))
	}
}

// FuzzDifferential feeds arbitrary frame sequences to the kernel program and
// the twin: both must pass every packet and count exactly alike.
func FuzzDifferential(f *testing.F) {
	for _, c := range packets.Corpus() {
		f.Add(encodeFrames(c.Frames))
	}
	r := newDiffRig(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		k, tw := r.run(t, decodeFrames(input))
		if d := snapshotDiff(k, tw); len(d) > 0 {
			t.Errorf("kernel and twin differ:\n  %s", strings.Join(d, "\n  "))
		}
	})
}
