package loader

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
)

// Benchmarks of the kernel programs run them with BPF_PROG_TEST_RUN and
// report the kernel's own time per run as ns/op, beside an empty program
// (return pass) measured in the same benchmark on the same frames, so that
// the ratio "x-empty" cancels the test harness's fixed cost.
//
//	go test ./loader -run '^$' -bench . -benchtime 1s

// emptyProgram returns a program of the hook's type that only passes.
func emptyProgram(tb testing.TB, typ ebpf.ProgramType, ret int32) *ebpf.Program {
	tb.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "empty", Type: typ, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = prog.Close() })
	return prog
}

type benchHook struct {
	name  string
	prog  func(l *Loader) *ebpf.Program
	empty func(tb testing.TB) *ebpf.Program
}

var benchHooks = []benchHook{
	{"xdp", func(l *Loader) *ebpf.Program { return l.objs.PortwatchXdp },
		func(tb testing.TB) *ebpf.Program { return emptyProgram(tb, ebpf.XDP, xdpPass) }},
	{"tc", func(l *Loader) *ebpf.Program { return l.objs.PortwatchTc },
		func(tb testing.TB) *ebpf.Program { return emptyProgram(tb, ebpf.SchedCLS, -1) }},
}

// kernelTime runs prog on frame n times in one BPF_PROG_TEST_RUN and
// returns the kernel's time per run.
func kernelTime(b *testing.B, prog *ebpf.Program, frame []byte, n int) time.Duration {
	b.Helper()
	_, d, err := prog.Benchmark(frame, n, nil)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// benchRounds interleaves the program and the empty program this many
// times per frame; the median of each counts, so that one preempted or
// cache-cold round does not.
const benchRounds = 5

// minRepeat is the fewest runs of one BPF_PROG_TEST_RUN measurement: a run
// with a repeat count costs a fixed ~16 ms of wall time here (setting up and
// tearing down the test context), and the first runs of a measurement are
// cache-cold, so short measurements read high.
const minRepeat = 100_000

// benchFrames reports the mean kernel time per run over frames, and its
// ratio to the empty program's on the same frames; it returns the sums.
func benchFrames(b *testing.B, prog, empty *ebpf.Program, frames [][]byte) (progNs, emptyNs float64) {
	n := max(b.N/benchRounds, minRepeat)
	for _, f := range frames {
		// Warm the caches and the branch predictors with a round that
		// does not count; as long as the others, so that the benchmark's
		// time stays proportional to b.N.
		kernelTime(b, prog, f, n)
		kernelTime(b, empty, f, n)
		var p, e []float64
		for range benchRounds {
			p = append(p, float64(kernelTime(b, prog, f, n).Nanoseconds()))
			e = append(e, float64(kernelTime(b, empty, f, n).Nanoseconds()))
		}
		progNs += median(p)
		emptyNs += median(e)
	}
	k := float64(len(frames))
	reportVsEmpty(b, progNs/k, emptyNs/k)
	return progNs, emptyNs
}

// newExchangeRound is how many new exchanges one round of
// benchNewExchanges inserts: a quarter of the default exchange table, and
// as many TFTP requests as the default ephemeral table holds.
const newExchangeRound = DefaultMaxEphemeral

// benchNewExchanges is benchFrames for a program that makes a new entry on
// every run: reset empties the tables before each round of n runs.
func benchNewExchanges(b *testing.B, prog, empty *ebpf.Program, frame []byte, n int, reset func()) {
	reset()
	kernelTime(b, prog, frame, n)
	kernelTime(b, empty, frame, n)
	var p, e []float64
	for range max(benchRounds, min(b.N/n, 4*benchRounds)) {
		reset()
		p = append(p, float64(kernelTime(b, prog, frame, n).Nanoseconds()))
		e = append(e, float64(kernelTime(b, empty, frame, n).Nanoseconds()))
	}
	reportVsEmpty(b, median(p), median(e))
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func reportVsEmpty(b *testing.B, progNs, emptyNs float64) {
	b.ReportMetric(progNs, "ns/op")
	b.ReportMetric(emptyNs, "empty-ns/op")
	if emptyNs > 0 {
		b.ReportMetric(progNs/emptyNs, "x-empty")
	}
}

// BenchmarkEstablishedTCP: a data segment of an established connection to a
// catalog port, the commonest packet, which must touch no hash map.
func BenchmarkEstablishedTCP(b *testing.B) {
	l := loadForTest(b, Config{})
	h := hostsFor(1, false)
	frame := tcpFrame(b, ap(h.c, 40000), ap(h.s, 3001), flagPSHACK, 1, make([]byte, 1000))
	for _, hk := range benchHooks {
		empty := hk.empty(b)
		b.Run(hk.name, func(b *testing.B) { benchFrames(b, hk.prog(l), empty, [][]byte{frame}) })
	}
}

// BenchmarkMix runs the shared management-traffic mix (testdata/mgmt-mix.pcapng)
// class by class, in steady state (every exchange already tracked).
// "average" is the mean over all the mix's packets of the class results
// measured just before it in the same run. new-exchange/CLASS times the
// first packet of an exchange: every run comes from a client never seen
// (see freshClientProgram).
func BenchmarkMix(b *testing.B) {
	pkts := readMix(b)
	var classes []string
	byClass := map[string][][]byte{}
	var opening []mixPacket
	for _, p := range pkts {
		if _, ok := byClass[p.class]; !ok {
			classes = append(classes, p.class)
		}
		byClass[p.class] = append(byClass[p.class], p.frame)
		if p.opens && !slices.ContainsFunc(opening, func(o mixPacket) bool { return o.class == p.class }) {
			opening = append(opening, p)
		}
	}
	for _, hk := range benchHooks {
		b.Run(hk.name, func(b *testing.B) {
			l := loadForTest(b, Config{})
			prog, empty := hk.prog(l), hk.empty(b)
			for _, p := range pkts {
				if _, err := prog.Run(&ebpf.RunOptions{Data: p.frame}); err != nil {
					b.Fatal(err)
				}
			}
			// Per class, the sums of its last (longest) measurement.
			measured := map[string][2]float64{}
			for _, class := range classes {
				b.Run(class, func(b *testing.B) {
					progNs, emptyNs := benchFrames(b, prog, empty, byClass[class])
					measured[class] = [2]float64{progNs, emptyNs}
				})
			}
			b.Run("average", func(b *testing.B) {
				for b.Loop() {
				}
				if len(measured) != len(classes) {
					b.Skip("not every class was measured (-bench filters some out)")
				}
				var totalProg, totalEmpty float64
				for _, m := range measured {
					totalProg, totalEmpty = totalProg+m[0], totalEmpty+m[1]
				}
				n := float64(len(pkts))
				reportVsEmpty(b, totalProg/n, totalEmpty/n)
			})

			for _, p := range opening {
				// Each run of one BPF_PROG_TEST_RUN sees a client never
				// seen before: a wrapper program rewrites the client and
				// tail-calls the program, and the same wrapper in front of
				// the empty program is the baseline.
				off := clientOffset(p.frame, p.class)
				fresh := freshClientProgram(b, hk, prog, portwatchAttachType(b, hk), off)
				freshEmpty := freshClientProgram(b, hk, empty, ebpf.AttachNone, off)
				frame := append([]byte(nil), p.frame...)
				clientOutsideMix(frame, p.class)
				b.Run("new-exchange/"+p.class, func(b *testing.B) {
					// Into tables of the default size: emptied before
					// every round, which then fills them no further than
					// their bound.
					benchNewExchanges(b, fresh, freshEmpty, frame, newExchangeRound, func() { clearTables(b, l) })
				})
				if p.class == "tcp-syn" {
					b.Run("new-exchange-full-table/"+p.class, func(b *testing.B) {
						// A flood of new clients into a full table: every
						// insert makes another exchange give way.
						benchFrames(b, fresh, freshEmpty, [][]byte{frame})
					})
				}
			}
		})
	}
}

// clientOffset is where in frame the 32 bits are that freshClient
// rewrites: the low half of a DHCP client's hardware address, or of the
// source address.
func clientOffset(frame []byte, class string) int {
	switch {
	case class == "dhcp-discover":
		return ethHeaderLen + 20 + 8 + 28 + 2
	case frame[ethHeaderLen]>>4 == 6:
		return ethHeaderLen + 8 + 12
	default:
		return ethHeaderLen + 12
	}
}

// portwatchAttachType is the attach type the packet program of hk was
// loaded with.
func portwatchAttachType(b *testing.B, hk benchHook) ebpf.AttachType {
	spec, err := bpf.LoadPortwatch()
	if err != nil {
		b.Fatal(err)
	}
	name := bpf.PortwatchProgPortwatchXdp
	if hk.name == "tc" {
		name = bpf.PortwatchProgPortwatchTc
	}
	return spec.Programs[name].AttachType
}

// freshClientProgram returns a program of hk's type that adds one to the
// 32 bits at offset off of the packet and tail-calls target. A repeated
// test run keeps the packet between runs, so every run of target sees a
// new client.
func freshClientProgram(b *testing.B, hk benchHook, target *ebpf.Program, attach ebpf.AttachType, off int) *ebpf.Program {
	b.Helper()
	typ, ret := ebpf.XDP, int32(xdpPass)
	dataOff, endOff := int16(0), int16(4) // struct xdp_md
	if hk.name == "tc" {
		typ, ret = ebpf.SchedCLS, -1
		dataOff, endOff = 76, 80 // struct __sk_buff
	}
	progs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = progs.Close() })
	if err := progs.Put(uint32(0), uint32(target.FD())); err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		// A tail call needs the caller's type and attach type to be
		// the target's.
		Name: "fresh_client", Type: typ, AttachType: attach, License: "MIT",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R1, dataOff, asm.Word),
			asm.LoadMem(asm.R3, asm.R1, endOff, asm.Word),
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, int32(off+4)),
			asm.JGT.Reg(asm.R4, asm.R3, "tail"),
			asm.LoadMem(asm.R5, asm.R2, int16(off), asm.Word),
			asm.Add.Imm(asm.R5, 1),
			asm.StoreMem(asm.R2, int16(off), asm.R5, asm.Word),
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("tail"),
			asm.LoadMapPtr(asm.R2, progs.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, ret),
			asm.Return(),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = prog.Close() })
	return prog
}

// clientOutsideMix rewrites a request's client (its source address, or for
// DHCP its hardware address) to the first of a range the mix does not use,
// which the fresh-client wrapper then counts up from.
func clientOutsideMix(frame []byte, class string) {
	var id [4]byte
	if class != "dhcp-discover" && frame[ethHeaderLen]>>4 == 4 {
		id[0] = 11 // 11.0.0.0/8: not the mix's 10.0.0.0/8
	}
	off := clientOffset(frame, class)
	copy(frame[off:off+4], id[:])
}

// BenchmarkSnapshot100k drains a table of 100,000 exchanges, made by
// 100,000 SYNs from as many clients.
func BenchmarkSnapshot100k(b *testing.B) {
	const n = 100_000
	l := loadForTest(b, Config{Sizes: MapSizes{Exchanges: 1 << 17}})
	fillExchanges(b, l, n)
	if got := len(mustSnapshot(b, l).Exchanges); got != n {
		b.Fatalf("the table holds %d exchanges, want %d", got, n)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotFullTable drains a default-size exchange table that
// long use has filled: every slot taken (400,000 clients through 131,072
// slots, the later ones evicting), so that the search for a second copy of
// a key goes as far back as each slot's probe distance.
func BenchmarkSnapshotFullTable(b *testing.B) {
	l := loadForTest(b, Config{})
	fillExchanges(b, l, 400_000)
	if got, slots := len(mustSnapshot(b, l).Exchanges), int(l.objs.Exchanges.MaxEntries()); got != slots {
		b.Fatalf("the table holds %d exchanges in %d slots: not full", got, slots)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// fillExchanges runs n SYNs from n clients through the XDP program.
func fillExchanges(b *testing.B, l *Loader, n int) {
	h := hostsFor(1, false)
	frame := tcpFrame(b, ap(h.c, 40000), ap(h.s, 22), flagSYN, 1, nil)
	clientOutsideMix(frame, "syn")
	xdp := benchHooks[0]
	fresh := freshClientProgram(b, xdp, l.objs.PortwatchXdp, portwatchAttachType(b, xdp), clientOffset(frame, "syn"))
	if _, err := fresh.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(n)}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMapMemory reports the maps' kernel memory at the default sizes.
func BenchmarkMapMemory(b *testing.B) {
	for _, cpus := range []int{2, 128} {
		b.Run(fmt.Sprintf("cpus=%d", cpus), func(b *testing.B) {
			var maps []MapMemory
			for b.Loop() {
				var err error
				if maps, err = EstimateMemory(DefaultMapSizes(), cpus); err != nil {
					b.Fatal(err)
				}
			}
			var total uint64
			for _, m := range maps {
				total += m.Bytes
				if m.Name == bpf.PortwatchMapExchanges {
					b.ReportMetric(float64(m.Bytes)/(1<<20), "MiB-exchanges")
				}
			}
			b.ReportMetric(float64(total)/(1<<20), "MiB-total")
		})
	}
}

// BenchmarkStages times frames that stop at successive stages of the
// parser, so that the cost of each stage shows as a difference: Ethernet
// only (ARP), then IPv4 (an unknown transport), then the port lookups (TCP
// data on no catalog port), then a catalog service's counters.
func BenchmarkStages(b *testing.B) {
	h := hostsFor(1, false)
	h6 := hostsFor(1, true)
	data := make([]byte, 1000)
	arp := func() []byte {
		f := udpFrame(b, ap(h.c, 40000), ap(h.s, 9), nil)
		return patch(f, 12, 0x08, 0x06)
	}
	stages := []struct {
		name  string
		frame []byte
	}{
		{"1-ethernet-only", arp()},
		{"2-ipv4-other-l4", patch(tcpFrame(b, ap(h.c, 40000), ap(h.s, 3001), flagPSHACK, 1, data), ethHeaderLen+9, 47)},
		{"3-tcp-data-no-catalog-port", tcpFrame(b, ap(h.c, 40000), ap(h.s, 8080), flagPSHACK, 1, data)},
		{"4-tcp-data-catalog-port", tcpFrame(b, ap(h.c, 40000), ap(h.s, 3001), flagPSHACK, 1, data)},
		{"5-tcp-data-catalog-port-vlan", withVLANs(tcpFrame(b, ap(h.c, 40000), ap(h.s, 3001), flagPSHACK, 1, data), 10)},
		{"6-tcp6-data-catalog-port", tcpFrame(b, ap(h6.c, 40000), ap(h6.s, 3001), flagPSHACK, 1, data)},
	}
	hk := benchHooks[0]
	l := loadForTest(b, Config{})
	prog, empty := hk.prog(l), hk.empty(b)
	for _, st := range stages {
		b.Run(st.name, func(b *testing.B) { benchFrames(b, prog, empty, [][]byte{st.frame}) })
	}
}

// BenchmarkKernelPrimitives times, in programs of a few instructions, the
// kernel operations the packet program uses on the paths that change an
// exchange, to attribute the cost of those paths (bpftool prog profile is
// not available). Each reports its cost above an empty XDP program.
func BenchmarkKernelPrimitives(b *testing.B) {
	requirePrivileged(b)
	// A table like the exchange table: 36-byte keys, 96-byte values.
	lru, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 36, ValueSize: 96, MaxEntries: 65536})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lru.Close() })
	if err := lru.Put(make([]byte, 36), make([]byte, 96)); err != nil {
		b.Fatal(err)
	}
	zeroStack := func(bytes int16) asm.Instructions {
		var ins asm.Instructions
		ins = append(ins, asm.Mov.Imm(asm.R1, 0))
		for off := int16(8); off <= bytes; off += 8 {
			ins = append(ins, asm.StoreMem(asm.RFP, -off, asm.R1, asm.DWord))
		}
		return ins
	}
	const keyAt, valAt = -40, -136 // a 40-byte key slot, then a 96-byte value
	lookup := append(zeroStack(136),
		asm.LoadMapPtr(asm.R1, lru.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyAt),
		asm.FnMapLookupElem.Call(),
	)
	pass := asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("out"), asm.Return()}
	progs := []struct {
		name string
		ins  asm.Instructions
	}{
		{"empty", pass},
		{"ktime_get_ns", append(asm.Instructions{asm.FnKtimeGetNs.Call()}, pass...)},
		{"ktime_get_coarse_ns", append(asm.Instructions{asm.FnKtimeGetCoarseNs.Call()}, pass...)},
		{"jiffies64", append(asm.Instructions{asm.FnJiffies64.Call()}, pass...)},
		{"lru-lookup-hit", append(slices.Clone(lookup), pass...)},
		{"lru-lookup-hit+atomic-add", append(append(slices.Clone(lookup),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		), pass...)},
		{"lru-update-noexist-existing", append(append(zeroStack(136),
			asm.LoadMapPtr(asm.R1, lru.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, keyAt),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, valAt),
			asm.Mov.Imm(asm.R4, 1), // BPF_NOEXIST
			asm.FnMapUpdateElem.Call(),
		), pass...)},
	}
	frame := tcpFrame(b, ap(hostsFor(1, false).c, 40000), ap(hostsFor(1, false).s, 3001), flagPSHACK, 1, nil)
	empty := emptyProgram(b, ebpf.XDP, xdpPass)
	for _, p := range progs {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "primitive", Type: ebpf.XDP, License: "GPL", Instructions: p.ins})
		if err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		b.Run(p.name, func(b *testing.B) {
			progNs, emptyNs := benchFrames(b, prog, empty, [][]byte{frame})
			b.ReportMetric(progNs-emptyNs, "above-empty-ns/op")
		})
		_ = prog.Close()
	}
}

// BenchmarkSlotWrite times what the tables' layout decides for a new
// entry: a program that only writes a 144-byte slot (an exchange slot's
// size) in an array of 18 MiB (the exchange table's size before it became
// an arena), either the slot after the last run's (as the arena's chunks
// are filled) or one at a random place (as a slot chosen by the key's hash
// would be). No load and no atomic, and the array stays warm from one run
// to the next: a floor, which the cold lines of a real table only raise.
func BenchmarkSlotWrite(b *testing.B) {
	requirePrivileged(b)
	const slots, slotBytes = 2 * DefaultMaxExchanges, 144
	newArray := func(flags uint32, entries, value uint32) *ebpf.Map {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: value, MaxEntries: entries, Flags: flags})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close() })
		return m
	}
	arena := newArray(unix.BPF_F_MMAPABLE, slots, slotBytes)
	runs := newArray(0, 1, 8)
	// The run number: runs[0]++, in R7.
	lookup := func(m *ebpf.Map, keyReg asm.Register) asm.Instructions {
		return asm.Instructions{
			asm.StoreMem(asm.RFP, -8, keyReg, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
		}
	}
	program := func(random bool) asm.Instructions {
		ins := asm.Instructions{asm.Mov.Imm(asm.R6, 0)}
		ins = append(ins, lookup(runs, asm.R6)...)
		ins = append(ins,
			asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
			asm.Mov.Reg(asm.R8, asm.R7),
			asm.Add.Imm(asm.R8, 1),
			asm.StoreMem(asm.R0, 0, asm.R8, asm.DWord),
		)
		if random {
			// A multiplicative hash of the run number.
			ins = append(ins, asm.Mul.Imm(asm.R7, -1640531535), asm.RSh.Imm(asm.R7, 12))
		}
		ins = append(ins, asm.And.Imm(asm.R7, slots-1))
		ins = append(ins, lookup(arena, asm.R7)...)
		for off := int16(0); off < slotBytes; off += 8 {
			ins = append(ins, asm.StoreMem(asm.R0, off, asm.R8, asm.DWord))
		}
		return append(ins, asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("out"), asm.Return())
	}
	frame := tcpFrame(b, ap(hostsFor(1, false).c, 40000), ap(hostsFor(1, false).s, 3001), flagPSHACK, 1, nil)
	empty := emptyProgram(b, ebpf.XDP, xdpPass)
	for _, random := range []bool{false, true} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "slot_write", Type: ebpf.XDP, License: "GPL", Instructions: program(random)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = prog.Close() })
		name := "next-slot"
		if random {
			name = "random-slot"
		}
		b.Run(name, func(b *testing.B) {
			progNs, emptyNs := benchFrames(b, prog, empty, [][]byte{frame})
			b.ReportMetric(progNs-emptyNs, "above-empty-ns/op")
		})
	}
}

// BenchmarkColdLoad is the machine's baseline for the new-exchange figures:
// a load from a random line of a buffer larger than the caches (a pointer
// chase, so that each load waits for the one before). The first packet of
// a new exchange reads one random slot of a table of tens of MiB, so it
// cannot cost less than one such load.
func BenchmarkColdLoad(b *testing.B) {
	for _, mib := range []int{1, 64} {
		b.Run(fmt.Sprintf("MiB=%d", mib), func(b *testing.B) {
			const line = 8 // int64s per 64-byte cache line
			lines := mib << 20 / 64
			next := make([]int64, lines*line)
			order := rand.Perm(lines)
			for i, at := range order {
				next[at*line] = int64(order[(i+1)%lines] * line)
			}
			p := int64(0)
			for b.Loop() {
				p = next[p]
			}
			coldLoadSink = p
		})
	}
}

var coldLoadSink int64
