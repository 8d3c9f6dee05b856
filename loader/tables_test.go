package loader

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
	"portwatch/catalog"
)

// A table holds at least the entries asked for, in whole chunks; the
// chunks of all CPUs fit in a quarter of it where it is large enough for a
// slot each; its index has two entries per slot, and room in an entry for
// every slot number.
func TestShapeTable(t *testing.T) {
	for _, entries := range []int{MinMapEntries, 1000, DefaultMaxExchanges, 100000, MaxMapEntries} {
		for _, cpus := range []int{1, 2, 6, 128, 1024} {
			s := shapeTable(entries, cpus)
			switch {
			case int(s.slots) < entries || s.slots%s.chunk != 0 || int(s.slots) >= entries+int(s.chunk):
				t.Errorf("%d entries, %d CPUs: %d slots in chunks of %d", entries, cpus, s.slots, s.chunk)
			case s.chunk < 1 || s.chunk > uint32(chunkMax):
				t.Errorf("%d entries, %d CPUs: chunks of %d", entries, cpus, s.chunk)
			case s.chunk > 1 && int(s.chunk)*cpus*4 > entries:
				t.Errorf("%d entries, %d CPUs: chunks of %d take more than a quarter", entries, cpus, s.chunk)
			case s.buckets&(s.buckets-1) != 0 || int(s.buckets)*bucketEntries < 2*int(s.slots):
				t.Errorf("%d entries, %d CPUs: %d buckets for %d slots", entries, cpus, s.buckets, s.slots)
			case s.slotMask() < s.slots || s.slotMask()&(s.slotMask()+1) != 0:
				t.Errorf("%d entries: slot mask %#x for %d slots", entries, s.slotMask(), s.slots)
			}
		}
	}
}

// keyHash is key_hash of portwatch.c over an exchange key: the tests use it
// to pick keys that share an index bucket.
func keyHash(k bpf.PortwatchExchangeKey, seed uint64) uint64 {
	b, err := binary.Append(nil, binary.NativeEndian, k)
	if err != nil {
		panic(err)
	}
	h := seed
	for i := 0; i < len(b); i += 8 {
		h = (h ^ binary.NativeEndian.Uint64(b[i:])) * 0x9e3779b97f4a7c15
		h ^= h >> 29
	}
	return h
}

func exchangeKeyOf(client, server netip.Addr, service catalog.ServiceID) bpf.PortwatchExchangeKey {
	return bpf.PortwatchExchangeKey{Client: client.As16(), Server: server.As16(), Service: uint16(service)}
}

// pinThread locks the calling goroutine to its thread and the thread to
// cpu, so that its test runs take slots from that CPU's chunks, in order.
// The thread stays locked: it ends with the goroutine instead of going
// back, pinned, to the scheduler.
func pinThread(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// onOneCPU pins the test's goroutine to CPU 0 for the rest of the test.
func onOneCPU(t *testing.T) {
	t.Helper()
	if err := pinThread(0); err != nil {
		t.Fatal(err)
	}
}

// tableRig sends SYNs to ssh on one server from numbered clients.
type tableRig struct {
	t      *testing.T
	l      *Loader
	server netip.Addr
	ssh    catalog.ServiceID
}

func newTableRig(t *testing.T, cfg Config) *tableRig {
	onOneCPU(t)
	l := loadForTest(t, cfg)
	ssh := l.cfg.Catalog.Lookup(catalog.TCP, 22, 40000)
	if ssh == nil {
		t.Fatal("no catalog row for tcp/22")
	}
	return &tableRig{t: t, l: l, server: netip.MustParseAddr("10.9.0.1"), ssh: ssh.ID}
}

func rigClient(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}) }

// syn sends a SYN from client c; each port makes a new attempt.
func (r *tableRig) syn(c netip.Addr, port uint16) {
	r.t.Helper()
	if _, err := r.l.RunXDP(tcpFrame(r.t, ap(c, port), ap(r.server, 22), flagSYN, uint32(port), nil)); err != nil {
		r.t.Fatal(err)
	}
}

// attempts maps each client in a snapshot to its attempts.
func (r *tableRig) attempts() (map[netip.Addr]uint64, bpf.Snapshot) {
	r.t.Helper()
	s := mustSnapshot(r.t, r.l)
	got := map[netip.Addr]uint64{}
	for _, e := range s.Exchanges {
		if _, dup := got[e.Key.Client]; dup {
			r.t.Errorf("the snapshot lists %v twice", e.Key.Client)
		}
		got[e.Key.Client] = e.Counters.Attempts
	}
	return got, s
}

// The slot a new key takes is the next of the arena whose key no packet
// used since the hand last passed it; used ones keep their key for one
// more round. After TAKE_SCAN used slots in a row, the next gives way
// anyway.
func TestTableGivesWayToUnusedSlots(t *testing.T) {
	// A seed under which no index bucket overflows (see TestTableFullBucket
	// for what then happens), so that every key stays found.
	shape := shapeTable(MinMapEntries, mustPossibleCPUs(t))
	server := netip.MustParseAddr("10.9.0.1")
	seed := seedWithoutFullBuckets(t, shape, func(i int) bpf.PortwatchExchangeKey {
		return exchangeKeyOf(rigClient(i), server, sshService(t))
	}, int(shape.slots)+5)
	r := newTableRig(t, Config{Sizes: MapSizes{Exchanges: MinMapEntries}, tableSeed: seed})
	slots := int(r.l.objs.Exchanges.MaxEntries())
	for i := range slots {
		r.syn(rigClient(i), 40000)
	}
	got, s := r.attempts()
	if len(got) != slots || s.Parse[bpf.ParseMapUpdateFailed] != 0 {
		t.Fatalf("filling %d slots: the table holds %d exchanges, %d failed inserts", slots, len(got),
			s.Parse[bpf.ParseMapUpdateFailed])
	}
	for i, slot := range r.l.exchangeTable.slots {
		if slot.Key.Client != rigClient(i).As16() {
			t.Fatalf("slot %d holds %v, want client %d: one CPU fills the arena in order", i,
				netip.AddrFrom16(slot.Key.Client).Unmap(), i)
		}
	}

	// Every client but four sends again: their slots are marked used.
	stale := []int{3, 40, 41, 100}
	for i := range slots {
		if !slices.Contains(stale, i) {
			r.syn(rigClient(i), 40001)
		}
	}
	// Four new clients take the four unused slots, in the hand's order,
	// the fourth after passing 58 used ones.
	for i := range len(stale) {
		r.syn(rigClient(slots+i), 40000)
	}
	got, _ = r.attempts()
	for i := range slots + len(stale) {
		want := uint64(2)
		switch {
		case i >= slots:
			want = 1
		case slices.Contains(stale, i):
			want = 0
		}
		if got[rigClient(i)] != want {
			t.Errorf("client %d: %d attempts, want %d", i, got[rigClient(i)], want)
		}
	}
	for n, i := range stale {
		if c := r.l.exchangeTable.slots[i].Key.Client; c != rigClient(slots+n).As16() {
			t.Errorf("slot %d holds %v, want new client %d", i, netip.AddrFrom16(c).Unmap(), slots+n)
		}
	}

	// The hand passed slots 0-100, clearing their marks; 101 on are all
	// used. A fifth new client passes TAKE_SCAN of them, and the next
	// gives way.
	r.syn(rigClient(slots+len(stale)), 40000)
	victim := 101 + int(bpf.PortwatchTableShapeTAKE_SCAN)
	got, s = r.attempts()
	if got[rigClient(slots+len(stale))] != 1 || got[rigClient(victim)] != 0 {
		t.Errorf("after a scan of used slots: new client %d attempts, client %d (slot %d) %d attempts; want 1 and 0",
			got[rigClient(slots+len(stale))], victim, victim, got[rigClient(victim)])
	}
	if n := s.Parse[bpf.ParseExchangeNew]; n != uint64(slots+len(stale)+1) {
		t.Errorf("exchange_new %d, want %d", n, slots+len(stale)+1)
	}
	if n := s.Parse[bpf.ParseMapUpdateFailed]; n != 0 {
		t.Errorf("map_update_failed %d, want 0", n)
	}
}

// When a key's index bucket is full, the entry whose slot the hand reaches
// first gives way. Its slot keeps its counts, and the key's next packet
// makes a second slot; a snapshot adds the two together.
func TestTableFullBucket(t *testing.T) {
	const seed = 0x5eed
	r := newTableRig(t, Config{Sizes: MapSizes{Exchanges: 4096}, tableSeed: seed})
	mask := uint64(r.l.objs.ExchangesIndex.MaxEntries() - 1)
	entries := int(bpf.PortwatchTableShapeBUCKET_ENTRIES)

	// entries+1 clients whose exchanges share bucket 0.
	var clients []netip.Addr
	for i := 0; len(clients) <= entries; i++ {
		if keyHash(exchangeKeyOf(rigClient(i), r.server, r.ssh), seed)&mask == 0 {
			clients = append(clients, rigClient(i))
		}
	}
	for _, c := range clients {
		r.syn(c, 40000)
	}
	// The last took slot entries; of the others' slots (0 to entries-1),
	// slot 0 is the one the hand reaches first after it.
	first := clients[0]
	var bucket bpf.PortwatchIndexBucket
	if err := r.l.objs.ExchangesIndex.Lookup(uint32(0), &bucket); err != nil {
		t.Fatal(err)
	}
	slotMask := shapeTable(4096, mustPossibleCPUs(t)).slotMask()
	for i, e := range bucket.Entry {
		if e&slotMask == 1 {
			t.Errorf("index entry %d still points at slot 0", i)
		}
	}
	r.syn(first, 40001)
	r.syn(first, 40002)
	got, s := r.attempts()
	if len(got) != len(clients) {
		t.Errorf("the snapshot holds %d exchanges, want %d", len(got), len(clients))
	}
	for _, c := range clients {
		want := uint64(1)
		if c == first {
			want = 3
		}
		if got[c] != want {
			t.Errorf("%v: %d attempts, want %d", c, got[c], want)
		}
	}
	if n := s.Parse[bpf.ParseExchangeNew]; n != uint64(len(clients)+1) {
		t.Errorf("exchange_new %d, want %d: the first client's second packet makes one new slot", n, len(clients)+1)
	}
}

// seedWithoutFullBuckets is a hash seed under which the n keys key(0) to
// key(n-1) leave every index bucket of a table of that shape room for
// another.
func seedWithoutFullBuckets(t *testing.T, shape tableShape, key func(int) bpf.PortwatchExchangeKey, n int) uint64 {
	t.Helper()
	for seed := uint64(1); seed < 1000; seed++ {
		per := make([]int, shape.buckets)
		fits := true
		for i := range n {
			b := keyHash(key(i), seed) & uint64(shape.buckets-1)
			if per[b]++; per[b] >= int(bpf.PortwatchTableShapeBUCKET_ENTRIES) {
				fits = false
				break
			}
		}
		if fits {
			return seed
		}
	}
	t.Fatal("no seed leaves room in every bucket")
	return 0
}

func sshService(t *testing.T) catalog.ServiceID {
	t.Helper()
	ssh := testCatalog(t).Lookup(catalog.TCP, 22, 40000)
	if ssh == nil {
		t.Fatal("no catalog row for tcp/22")
	}
	return ssh.ID
}

// The entry that gives way in a full bucket is the one whose slot the
// hand reaches first, whichever CPU inserts: not the key that another CPU
// inserted a moment ago in a chunk it reserved after this CPU's.
func TestTableFullBucketVictimByHand(t *testing.T) {
	cpus := mustPossibleCPUs(t)
	if cpus < 2 {
		t.Skip("needs two CPUs")
	}
	const seed, entries = 0x5eed, 4096
	shape := shapeTable(entries, cpus)
	r := newTableRig(t, Config{Sizes: MapSizes{Exchanges: entries}, tableSeed: seed})
	buckets := uint64(r.l.objs.ExchangesIndex.MaxEntries())
	bucketOf := func(c netip.Addr) uint64 { return keyHash(exchangeKeyOf(c, r.server, r.ssh), seed) & (buckets - 1) }
	// Clients of bucket 0 (full once BUCKET_ENTRIES of them are in) and
	// of others, to move CPU 0 to its next chunk.
	var in0, others []netip.Addr
	for i := 0; len(in0) <= int(bpf.PortwatchTableShapeBUCKET_ENTRIES) || len(others) < int(shape.chunk); i++ {
		if c := rigClient(i); bucketOf(c) == 0 {
			in0 = append(in0, c)
		} else {
			others = append(others, c)
		}
	}
	entriesPerBucket := int(bpf.PortwatchTableShapeBUCKET_ENTRIES)
	first, older := in0[0], in0[:entriesPerBucket-1]
	newer, last := in0[entriesPerBucket-1], in0[entriesPerBucket]
	// CPU 0 (this thread): the older keys, then others to the end of
	// its first chunk and one into its second.
	for _, c := range older {
		r.syn(c, 40000)
	}
	fill := int(shape.chunk) - len(older) + 1
	if fill < 1 {
		t.Fatalf("chunks of %d slots: too small for this test", shape.chunk)
	}
	for _, c := range others[:fill] {
		r.syn(c, 40000)
	}
	// CPU 1 inserts the newer key: a chunk after CPU 0's second.
	done := make(chan error)
	go func() {
		if err := pinThread(1); err != nil {
			done <- err
			return
		}
		_, err := r.l.RunXDP(tcpFrame(t, ap(newer, 40000), ap(r.server, 22), flagSYN, 40000, nil))
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The bucket is full; CPU 0's next key must push out the first key
	// (slot 0, which the hand reaches first), not the newer one.
	r.syn(last, 40000)
	before := mustSnapshot(t, r.l).Parse[bpf.ParseExchangeNew]
	r.syn(newer, 40001)
	if after := mustSnapshot(t, r.l).Parse[bpf.ParseExchangeNew]; after != before {
		t.Errorf("the newer key lost its index entry: its next SYN made a second slot")
	}
	r.syn(first, 40001)
	if after := mustSnapshot(t, r.l).Parse[bpf.ParseExchangeNew]; after != before+1 {
		t.Errorf("the first key kept its index entry: exchange_new %d, want %d", after, before+1)
	}
}

func mustPossibleCPUs(t *testing.T) int {
	t.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Every slot type starts with the state and where, which readSlots reads
// the same way whatever the type.
func TestSlotHeads(t *testing.T) {
	check := func(name string, state, where uintptr) {
		if state != 0 || where != 4 {
			t.Errorf("%s: state at %d, where at %d; readSlots wants 0 and 4", name, state, where)
		}
	}
	var x bpf.PortwatchExchangeSlot
	check("exchange", unsafe.Offsetof(x.State), unsafe.Offsetof(x.Where))
	var u bpf.PortwatchUnexpectedSlot
	check("unexpected", unsafe.Offsetof(u.State), unsafe.Offsetof(u.Where))
	var e bpf.PortwatchEphemeralSlot
	check("ephemeral", unsafe.Offsetof(e.State), unsafe.Offsetof(e.Where))
	var f bpf.PortwatchFlowSlot
	check("flow", unsafe.Offsetof(f.State), unsafe.Offsetof(f.Where))
}

// A key may be in several slots anywhere in the arena; a snapshot shows one
// exchange with all their counts. Claimed slots whose key is still being
// written are left out.
func TestReadSlotsMergesCopies(t *testing.T) {
	for _, keys := range []int{0, 5000} {
		t.Run(fmt.Sprintf("after %d other keys", keys), func(t *testing.T) { testReadSlotsMergesCopies(t, keys) })
	}
}

// testReadSlotsMergesCopies puts others keys of their own before the
// copies, so that the copy index must grow.
func testReadSlotsMergesCopies(t *testing.T, others int) {
	all := make([]bpf.PortwatchExchangeSlot, others+64)
	for i := range others {
		all[i] = bpf.PortwatchExchangeSlot{State: uint32(i)<<2 | 2}
		all[i].Key.Service = 8
		binary.BigEndian.PutUint32(all[i].Key.Client[12:], uint32(i))
		all[i].Value = bpf.PortwatchExchangeValue{Attempts: 1, FirstSeen: 100, LastSeen: 100}
	}
	slots := all[others:]
	put := func(i int, tag uint32, client byte, attempts, first, last uint64) {
		slots[i] = bpf.PortwatchExchangeSlot{State: tag}
		slots[i].Key.Client[15] = client
		slots[i].Key.Service = 7
		slots[i].Value = bpf.PortwatchExchangeValue{Attempts: attempts, FirstSeen: first, LastSeen: last}
	}
	put(10, 6, 1, 1, 100, 150)
	put(11, 10, 2, 4, 100, 100)
	put(12, 6, 1, 2, 90, 120) // client 1 again
	put(13, 6, 3, 5, 100, 100)
	put(63, 14, 4, 1, 200, 210)
	put(0, 18, 5, 1, 100, 100)
	put(1, 14, 4, 3, 205, 300) // client 4 again, before its other copy
	slots[30].State = slotBusy // a key being written: not read
	slots[30].Key.Client[15] = 1
	put(42, 6, 1, 9, 100, 100) // client 1 a third time
	clock := func(stamp uint64) time.Time { return time.Unix(int64(stamp), 0) }
	var r exchangeReader
	got := r.read(&slotTable[bpf.PortwatchExchangeSlot]{slots: all}, clock, nil)
	type row struct {
		client          byte
		attempts        uint64
		first, lastSeen int64
	}
	var rows []row
	for _, e := range got {
		if e.Key.Service == 8 {
			if e.Counters.Attempts != 1 {
				t.Errorf("%v: %d attempts, want 1", e.Key, e.Counters.Attempts)
			}
			others--
			continue
		}
		rows = append(rows, row{e.Key.Client.As16()[15], e.Counters.Attempts,
			e.Counters.FirstSeen.Unix(), e.Counters.LastSeen.Unix()})
	}
	if others != 0 {
		t.Errorf("%d of the other keys are missing", others)
	}
	want := []row{
		{1, 12, 90, 150},
		{2, 4, 100, 100},
		{3, 5, 100, 100},
		{4, 4, 200, 300},
		{5, 1, 100, 100},
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.client, b.client) })
	if !slices.Equal(rows, want) {
		t.Errorf("read %+v\nwant %+v", rows, want)
	}
}

// A remembered TFTP request notes its exchange's slot, so that the
// transfer's packets skip hashing the exchange's key. When that slot has
// gone to another exchange, the packets still count to their own, and the
// note is mended.
func TestTFTPExchangeHintChecked(t *testing.T) {
	l := loadForTest(t, Config{})
	h := hostsFor(7, false)
	other := hostsFor(8, false)
	rrq := append([]byte{0, 1}, []byte("xcat/xnba.kpxe\x00octet\x00")...)
	data := append([]byte{0, 3, 0, 1}, make([]byte, 512)...)
	run := func(f []byte) {
		t.Helper()
		if _, err := l.RunXDP(f); err != nil {
			t.Fatal(err)
		}
	}
	run(udpFrame(t, ap(h.c, 41100), ap(h.s, 69), rrq))
	run(tcpFrame(t, ap(other.c, 40000), ap(other.s, 22), flagSYN, 1, nil))

	// Point the request's note at the other exchange's slot.
	xslot := func(client netip.Addr) uint32 {
		for i, s := range l.exchangeTable.slots {
			if s.State > slotBusy && s.Key.Client == client.As16() {
				return uint32(i)
			}
		}
		t.Fatalf("no exchange of %v", client)
		return 0
	}
	mine, theirs := xslot(h.c), xslot(other.c)
	note := ephemeralNote{l: l}
	if got := note.get(t); got != mine+1 {
		t.Errorf("the request notes slot %d, its exchange is in %d", int(got)-1, mine)
	}
	note.set(t, theirs+1)

	run(udpFrame(t, ap(h.s, 50000), ap(h.c, 41100), data))
	run(udpFrame(t, ap(h.c, 41100), ap(h.s, 50000), []byte{0, 4, 0, 1}))

	s := mustSnapshot(t, l)
	for _, e := range s.Exchanges {
		c := e.Counters
		switch e.Key.Client {
		case h.c:
			if c.Attempts != 1 || c.Answers != 1 || c.Followups != 1 {
				t.Errorf("tftp exchange %+v, want 1 attempt, 1 answer, 1 followup", c)
			}
		case other.c:
			if c.Attempts != 1 || c.Answers != 0 || c.Followups != 0 {
				t.Errorf("the other exchange %+v took the transfer's counts", c)
			}
		}
	}
	if got := note.get(t); got != mine+1 {
		t.Errorf("the note was not mended: slot %d, want %d", int(got)-1, mine)
	}
}

// ephemeralNote reads and writes the exchange note of the one remembered
// request in a loader's ephemeral table, through a writable mapping.
type ephemeralNote struct{ l *Loader }

func (n ephemeralNote) offset(tb testing.TB) (*ebpf.Memory, int64) {
	tb.Helper()
	mem, err := n.l.objs.Ephemeral.Memory()
	if err != nil {
		tb.Fatal(err)
	}
	b := make([]byte, mem.Size())
	if _, err := mem.ReadAt(b, 0); err != nil {
		tb.Fatal(err)
	}
	var slot bpf.PortwatchEphemeralSlot
	size := int(unsafe.Sizeof(slot))
	for i := 0; (i+1)*size <= len(b); i++ {
		if binary.NativeEndian.Uint32(b[i*size:]) > slotBusy {
			return mem, int64(i*size) + int64(unsafe.Offsetof(slot.Value)+unsafe.Offsetof(slot.Value.ExchangeSlot))
		}
	}
	tb.Fatal("no request is remembered")
	return nil, 0
}

func (n ephemeralNote) get(tb testing.TB) uint32 {
	mem, off := n.offset(tb)
	var b [4]byte
	if _, err := mem.ReadAt(b[:], off); err != nil {
		tb.Fatal(err)
	}
	return binary.NativeEndian.Uint32(b[:])
}

func (n ephemeralNote) set(tb testing.TB, v uint32) {
	mem, off := n.offset(tb)
	if _, err := mem.WriteAt(binary.NativeEndian.AppendUint32(nil, v), off); err != nil {
		tb.Fatal(err)
	}
}

// Two CPUs insert and look up at once in a table far too small, so that
// their chunks interleave, slots give way under the other's lookups and
// buckets fill: every exchange a snapshot shows must be one that was sent,
// whole, with no more attempts than were sent.
func TestTableConcurrentInserts(t *testing.T) {
	if mustPossibleCPUs(t) < 2 {
		t.Skip("needs two CPUs")
	}
	// Fewer clients than slots (hits on both CPUs at once, whose counts
	// must all be kept), and many more (slots give way under lookups).
	for _, clients := range []int{200, 2000} {
		t.Run(fmt.Sprintf("%d clients", clients), func(t *testing.T) { testTableConcurrentInserts(t, clients) })
	}
}

func testTableConcurrentInserts(t *testing.T, clients int) {
	l := loadForTest(t, Config{Sizes: MapSizes{Exchanges: MinMapEntries}})
	server := netip.MustParseAddr("10.9.0.1")
	const perCPU = 20000
	frames := make([][]byte, clients)
	for i := range frames {
		frames[i] = tcpFrame(t, ap(rigClient(i), 40000), ap(server, 22), flagSYN, uint32(i), nil)
	}
	errs := make(chan error, 2)
	for cpu := range 2 {
		go func() {
			if err := pinThread(cpu); err != nil {
				errs <- err
				return
			}
			// Each CPU walks the clients in its own order, with
			// repeats: new keys, hits and evictions mixed.
			for n := range perCPU {
				i := (n*7919 + cpu*1009) % clients
				if cpu == 1 {
					i = clients - 1 - i
				}
				if _, err := l.RunXDP(frames[i]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := mustSnapshot(t, l)
	sent := map[netip.Addr]bool{}
	for i := range clients {
		sent[rigClient(i)] = true
	}
	var attempts uint64
	for _, e := range s.Exchanges {
		if !sent[e.Key.Client] || e.Key.Server != server {
			t.Errorf("an exchange nobody sent: %v", e.Key)
		}
		if e.Counters.Attempts == 0 {
			t.Errorf("%v: no attempt", e.Key)
		}
		attempts += e.Counters.Attempts + e.Counters.Retransmits
	}
	if attempts > 2*perCPU {
		t.Errorf("the table holds %d SYNs, %d were sent", attempts, 2*perCPU)
	}
	// Until the hand comes round (each CPU may leave a chunk unfinished)
	// no slot gives way, and no count may be lost.
	if s.Parse[bpf.ParseExchangeNew]+2*uint64(chunkMax) <= uint64(l.objs.Exchanges.MaxEntries()) && attempts != 2*perCPU {
		t.Errorf("the table holds %d SYNs, %d were sent and nothing gave way", attempts, 2*perCPU)
	}
	if n := len(s.Exchanges); n == 0 || n > int(l.objs.Exchanges.MaxEntries()) {
		t.Errorf("%d exchanges in %d slots", n, l.objs.Exchanges.MaxEntries())
	}
	t.Logf("%d exchanges, %d SYNs held, %d new entries, %d failed inserts", len(s.Exchanges), attempts,
		s.Parse[bpf.ParseExchangeNew], s.Parse[bpf.ParseMapUpdateFailed])
}

// When one copy of a key gives way while another lives on, the key's
// counts do not fall: the copy's counts at the last snapshot are carried in
// the key's total, for as long as some copy of the key is left. When none is
// left the key was evicted, and what comes back starts again.
func TestReadExchangesCarriesCopiesThatGaveWay(t *testing.T) {
	slots := make([]bpf.PortwatchExchangeSlot, 32)
	put := func(i int, tag uint32, client byte, attempts, first, last uint64) {
		slots[i] = bpf.PortwatchExchangeSlot{State: tag}
		slots[i].Key.Client[15] = client
		slots[i].Key.Service = 7
		slots[i].Value = bpf.PortwatchExchangeValue{Attempts: attempts, FirstSeen: first, LastSeen: last}
	}
	clock := func(stamp uint64) time.Time { return time.Unix(int64(stamp), 0) }
	table := &slotTable[bpf.PortwatchExchangeSlot]{slots: slots}
	var r exchangeReader
	attempts := func(client byte) (uint64, int64) {
		t.Helper()
		var n uint64
		var first int64
		found := false
		for _, e := range r.read(table, clock, nil) {
			if e.Key.Client.As16()[15] == client {
				if found {
					t.Fatalf("client %d listed twice", client)
				}
				found, n, first = true, e.Counters.Attempts, e.Counters.FirstSeen.Unix()
			}
		}
		return n, first
	}
	check := func(step string, client byte, want uint64, wantFirst int64) {
		t.Helper()
		if got, first := attempts(client); got != want || first != wantFirst {
			t.Errorf("%s: client %d: %d attempts, first seen %d; want %d, %d", step, client, got, first, want, wantFirst)
		}
	}

	put(3, 6, 1, 3, 100, 110) // copy A
	put(9, 6, 1, 1, 105, 120) // copy B
	put(4, 10, 2, 5, 100, 100)
	check("two copies", 1, 4, 100)

	put(3, 14, 3, 1, 130, 130) // A's slot gives way to another key
	put(9, 6, 1, 2, 105, 140)  // B goes on
	check("after A gave way", 1, 5, 100)
	check("another key", 2, 5, 100)

	put(9, 6, 1, 4, 105, 150)
	check("with B alone", 1, 7, 100)

	put(9, 18, 4, 1, 160, 160) // B gives way too
	put(20, 6, 1, 1, 170, 170) // and the key comes back
	check("evicted and back", 1, 1, 170)

	put(20, 6, 1, 2, 170, 180)
	check("back, no carry", 1, 2, 170)
}
