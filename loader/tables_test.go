package loader

import (
	"cmp"
	"unsafe"

	"encoding/binary"
	"github.com/cilium/ebpf"
	"net/netip"
	"slices"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// keyHomeSlot is the home slot of an exchange key in a table of mask+1
// slots, computed as key_hash in portwatch.c does: the test uses it to pick
// keys that share a probe window.
func keyHomeSlot(k bpf.PortwatchExchangeKey, seed uint64, mask uint32) uint32 {
	b, err := binary.Append(nil, binary.NativeEndian, k)
	if err != nil {
		panic(err)
	}
	h := seed
	for i := 0; i < len(b); i += 8 {
		h = (h ^ binary.NativeEndian.Uint64(b[i:])) * 0x9e3779b97f4a7c15
		h ^= h >> 29
	}
	return uint32(h) & mask
}

func exchangeKeyOf(client, server netip.Addr, service catalog.ServiceID) bpf.PortwatchExchangeKey {
	return bpf.PortwatchExchangeKey{Client: client.As16(), Server: server.As16(), Service: uint16(service)}
}

// When every slot of a key's window is taken, the entry seen least
// recently gives way, and nothing else moves.
func TestTableEvictsLeastRecentlySeen(t *testing.T) {
	const seed = 0x5eed
	l := loadForTest(t, Config{Sizes: MapSizes{Exchanges: MinMapEntries}, tableSeed: seed})
	mask := uint32(l.objs.Exchanges.MaxEntries() - 1)
	server := netip.MustParseAddr("10.9.0.1")
	ssh := l.cfg.Catalog.Lookup(catalog.TCP, 22, 40000)
	if ssh == nil {
		t.Fatal("no catalog row for tcp/22")
	}

	// tableProbes+1 clients whose exchanges all have home slot 0: the
	// first tableProbes fill the window, the last must evict.
	var clients []netip.Addr
	for i := 0; len(clients) <= tableProbes; i++ {
		c := netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)})
		if keyHomeSlot(exchangeKeyOf(c, server, ssh.ID), seed, mask) == 0 {
			clients = append(clients, c)
		}
	}
	syn := func(c netip.Addr) {
		t.Helper()
		if _, err := l.RunXDP(tcpFrame(t, ap(c, 40000), ap(server, 22), flagSYN, 1, nil)); err != nil {
			t.Fatal(err)
		}
	}
	clientsIn := func(s bpf.Snapshot) []netip.Addr {
		var got []netip.Addr
		for _, e := range s.Exchanges {
			got = append(got, e.Key.Client)
		}
		slices.SortFunc(got, netip.Addr.Compare)
		return got
	}
	sorted := func(a []netip.Addr) []netip.Addr {
		a = slices.Clone(a)
		slices.SortFunc(a, netip.Addr.Compare)
		return a
	}

	full, last := clients[:tableProbes], clients[tableProbes]
	for _, c := range full {
		syn(c)
	}
	if got := clientsIn(mustSnapshot(t, l)); !slices.Equal(got, sorted(full)) {
		t.Fatalf("after filling the window the table holds %v, want %v", got, sorted(full))
	}
	// One client is left behind: the others send again a few ticks later
	// (a new port and sequence, so a new attempt).
	stale := full[5]
	time.Sleep(30 * time.Millisecond)
	for _, c := range full {
		if c != stale {
			if _, err := l.RunXDP(tcpFrame(t, ap(c, 40001), ap(server, 22), flagSYN, 2, nil)); err != nil {
				t.Fatal(err)
			}
		}
	}
	syn(last)

	s := mustSnapshot(t, l)
	want := sorted(append(slices.DeleteFunc(slices.Clone(full), func(c netip.Addr) bool { return c == stale }), last))
	if got := clientsIn(s); !slices.Equal(got, want) {
		t.Errorf("after the window overflowed the table holds %v, want %v (without %v)", got, want, stale)
	}
	for _, e := range s.Exchanges {
		wantAttempts := uint64(2)
		if e.Key.Client == last {
			wantAttempts = 1
		}
		if e.Counters.Attempts != wantAttempts {
			t.Errorf("%v: %d attempts, want %d: an entry was overwritten in place", e.Key.Client, e.Counters.Attempts, wantAttempts)
		}
	}
	// Every key's home is slot 0, so each slot's probe distance is its
	// index (the evicting key took its victim's slot).
	for i, slot := range l.exchangeTable.slots {
		if slot.State > slotBusy && slot.Probe != uint32(i) {
			t.Errorf("slot %d notes probe distance %d", i, slot.Probe)
		}
	}
	if n := s.Parse[bpf.ParseExchangeNew]; n != uint64(tableProbes+1) {
		t.Errorf("exchange_new %d, want %d", n, tableProbes+1)
	}
	if n := s.Parse[bpf.ParseMapUpdateFailed]; n != 0 {
		t.Errorf("map_update_failed %d, want 0", n)
	}
}

// Every slot type starts with the state and the probe distance, which
// readSlots reads the same way whatever the type.
func TestSlotHeads(t *testing.T) {
	check := func(name string, state, probe uintptr) {
		if state != 0 || probe != 4 {
			t.Errorf("%s: state at %d, probe at %d; readSlots wants 0 and 4", name, state, probe)
		}
	}
	var x bpf.PortwatchExchangeSlot
	check("exchange", unsafe.Offsetof(x.State), unsafe.Offsetof(x.Probe))
	var u bpf.PortwatchUnexpectedSlot
	check("unexpected", unsafe.Offsetof(u.State), unsafe.Offsetof(u.Probe))
	var e bpf.PortwatchEphemeralSlot
	check("ephemeral", unsafe.Offsetof(e.State), unsafe.Offsetof(e.Probe))
	var f bpf.PortwatchFlowSlot
	check("flow", unsafe.Offsetof(f.State), unsafe.Offsetof(f.Probe))
}

// A key that two CPUs inserted at once sits in two slots of its window;
// a snapshot shows one exchange with both slots' counts, also when the
// window wraps around the end of the table. Claimed slots whose key is
// still being written are left out.
func TestReadSlotsMergesCopies(t *testing.T) {
	slots := make([]bpf.PortwatchExchangeSlot, 64)
	put := func(i int, tag uint32, client byte, probe uint32, attempts, first, last uint64) {
		slots[i] = bpf.PortwatchExchangeSlot{State: tag, Probe: probe}
		slots[i].Key.Client[15] = client
		slots[i].Key.Service = 7
		slots[i].Value = bpf.PortwatchExchangeValue{Attempts: attempts, FirstSeen: first, LastSeen: last}
	}
	put(10, 6, 1, 0, 1, 100, 150) // client 1, first copy, in its home slot
	put(11, 10, 2, 0, 4, 100, 100)
	put(12, 6, 1, 2, 2, 90, 120)  // client 1 again, two past its home: merged into slot 10
	put(13, 6, 3, 3, 5, 100, 100) // same tag, another key: its own exchange
	put(63, 14, 4, 0, 1, 200, 210)
	put(0, 18, 5, 0, 1, 100, 100)
	put(1, 14, 4, 2, 3, 205, 300)  // client 4 again, past the table's end
	slots[30].State = slotBusy     // a key being written: not read
	put(42, 6, 1, 1, 9, 100, 100)  // client 1 a third time, but its home is 41:
	put(41, 22, 6, 0, 1, 100, 100) // not a copy of slot 10's (cannot happen), kept apart
	clock := func(stamp uint64) time.Time { return time.Unix(int64(stamp), 0) }
	got, slotOf := readExchanges(&slotTable[bpf.PortwatchExchangeSlot]{slots: slots}, clock, nil, nil)
	type row struct {
		client          byte
		attempts        uint64
		first, lastSeen int64
	}
	var rows []row
	for _, e := range got {
		rows = append(rows, row{e.Key.Client.As16()[15], e.Counters.Attempts,
			e.Counters.FirstSeen.Unix(), e.Counters.LastSeen.Unix()})
	}
	want := []row{
		{5, 1, 100, 100},
		{4, 4, 200, 300}, // slot 1 merged into slot 63
		{1, 3, 90, 150},
		{2, 4, 100, 100},
		{3, 5, 100, 100},
		{1, 9, 100, 100},
		{6, 1, 100, 100},
	}
	byClient := func(a, b row) int {
		return cmp.Or(cmp.Compare(a.client, b.client), cmp.Compare(a.attempts, b.attempts))
	}
	slices.SortFunc(rows, byClient)
	slices.SortFunc(want, byClient)
	if !slices.Equal(rows, want) {
		t.Errorf("read %+v\nwant %+v", rows, want)
	}
	if !slices.IsSorted(slotOf) {
		t.Errorf("slot indices %v out of order", slotOf)
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
