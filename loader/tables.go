package loader

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
)

// The program's four tables (see bpf/portwatch.h) are each an arena of slots,
// which CPUs fill in order, a chunk of consecutive slots at a time, and an
// index of buckets that finds a key's slot. A slot is published once its key
// is written; the hand that hands out chunks makes the slot it comes back to
// give way, unless a packet used it since it last passed. The loader sizes
// them, and reads the exchange and unexpected-port arenas through a
// read-only memory mapping: a snapshot is a memory copy, not a system call
// per batch of entries.

const (
	bucketEntries = int(bpf.PortwatchTableShapeBUCKET_ENTRIES)
	chunkMax      = int(bpf.PortwatchTableShapeCHUNK_MAX)
	slotEmpty     = uint32(bpf.PortwatchSlotStateSLOT_EMPTY)
	slotBusy      = uint32(bpf.PortwatchSlotStateSLOT_BUSY)
)

// tableShape is how a table that should hold entries keys is laid out on a
// machine of cpus CPUs.
type tableShape struct {
	// slots is the arena's size: entries, rounded up to whole chunks.
	slots uint32
	// buckets is the index's size: two entries per slot, a power of two
	// of buckets, so that a bucket fills only when many keys share it.
	buckets uint32
	// chunk is how many slots a CPU reserves at once: at most chunkMax,
	// and small enough that the chunks of all CPUs together are at most
	// a quarter of the arena, where slots sit reserved but unused.
	chunk uint32
}

// slotMask is the low bits of an index entry, which hold a slot + 1.
func (s tableShape) slotMask() uint32 { return 1<<bits.Len32(s.slots) - 1 }

// shapeTable lays out a table of entries keys for cpus CPUs.
func shapeTable(entries, cpus int) tableShape {
	chunk := min(max(entries/(4*max(cpus, 1)), 1), chunkMax)
	slots := (entries + chunk - 1) / chunk * chunk
	buckets := nextPow2(uint64(max((2*slots+bucketEntries-1)/bucketEntries, 1)))
	return tableShape{slots: uint32(slots), buckets: uint32(buckets), chunk: uint32(chunk)}
}

// tableNames are each table's arena and index maps, in the order of the
// program's enum table_id; the variables that hold their sizes are named
// after the arena.
var tableNames = [...]struct{ arena, index string }{
	bpf.PortwatchTableIdTABLE_EXCHANGES:  {bpf.PortwatchMapExchanges, bpf.PortwatchMapExchangesIndex},
	bpf.PortwatchTableIdTABLE_EPHEMERAL:  {bpf.PortwatchMapEphemeral, bpf.PortwatchMapEphemeralIndex},
	bpf.PortwatchTableIdTABLE_UNEXPECTED: {bpf.PortwatchMapUnexpected, bpf.PortwatchMapUnexpectedIndex},
	bpf.PortwatchTableIdTABLE_FLOWS:      {bpf.PortwatchMapUdpFlows, bpf.PortwatchMapUdpFlowsIndex},
}

// sizeMaps sizes the tables on the spec before load for a machine of cpus
// CPUs (the maps and the variables that hold their sizes), and seeds their
// hash: with seed, or when it is zero with a random seed, so that a sender
// cannot aim packets at one bucket.
func sizeMaps(spec *ebpf.CollectionSpec, s MapSizes, cpus int, seed uint64) error {
	entries := [...]int{
		bpf.PortwatchTableIdTABLE_EXCHANGES:  s.Exchanges,
		bpf.PortwatchTableIdTABLE_EPHEMERAL:  s.Ephemeral,
		bpf.PortwatchTableIdTABLE_UNEXPECTED: s.Unexpected,
		bpf.PortwatchTableIdTABLE_FLOWS:      s.Flows,
	}
	var chunks [len(tableNames)]uint32
	for id, names := range tableNames {
		arena, ok := spec.Maps[names.arena]
		index, iok := spec.Maps[names.index]
		slots, sok := spec.Variables[names.arena+"_slots"]
		mask, mok := spec.Variables[names.arena+"_bucket_mask"]
		slotMask, smok := spec.Variables[names.arena+"_slot_mask"]
		if !ok || !iok || !sok || !mok || !smok {
			return fmt.Errorf("the embedded BPF object has no table %q: rebuild it with `make generate`", names.arena)
		}
		shape := shapeTable(entries[id], cpus)
		arena.MaxEntries = shape.slots
		index.MaxEntries = shape.buckets
		if err := slots.Set(shape.slots); err != nil {
			return fmt.Errorf("sizing table %s: %w", names.arena, err)
		}
		if err := mask.Set(shape.buckets - 1); err != nil {
			return fmt.Errorf("sizing table %s: %w", names.arena, err)
		}
		if err := slotMask.Set(shape.slotMask()); err != nil {
			return fmt.Errorf("sizing table %s: %w", names.arena, err)
		}
		chunks[id] = shape.chunk
	}
	v, ok := spec.Variables["chunk_slots"]
	if !ok {
		return fmt.Errorf("the embedded BPF object has no chunk_slots: rebuild it with `make generate`")
	}
	if err := v.Set(chunks); err != nil {
		return fmt.Errorf("sizing the tables' chunks: %w", err)
	}
	if seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("seeding the tables' hash: %w", err)
		}
		seed = binary.NativeEndian.Uint64(b[:])
	}
	v, ok = spec.Variables["table_seed"]
	if !ok {
		return fmt.Errorf("the embedded BPF object has no table_seed: rebuild it with `make generate`")
	}
	return v.Set(seed)
}

// slotTable is a read-only view of a table's slots, mapped from the kernel.
type slotTable[S any] struct {
	mem   []byte
	slots []S
}

// mapTable maps the slots of table m read-only. Not Map.Memory: that maps
// the table writable and only copies out of it, where a snapshot reads the
// slots in place. The kernel lays an array's values out at a stride of their
// size rounded up to 8 bytes, which the generated slot types already are.
func mapTable[S any](m *ebpf.Map) (*slotTable[S], error) {
	var zero S
	stride := unsafe.Sizeof(zero)
	if m.ValueSize() != uint32(stride) || stride%8 != 0 {
		return nil, fmt.Errorf("table %s: slots of %d bytes, the program's are %d: rebuild with `make generate`",
			m, stride, m.ValueSize())
	}
	n := int(m.MaxEntries())
	page := os.Getpagesize()
	size := (n*int(stride) + page - 1) / page * page
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping table %s: %w", m, err)
	}
	return &slotTable[S]{mem: mem, slots: unsafe.Slice((*S)(unsafe.Pointer(&mem[0])), n)}, nil
}

func (t *slotTable[S]) close() error {
	if t == nil || t.mem == nil {
		return nil
	}
	t.slots = nil
	err := unix.Munmap(t.mem)
	t.mem = nil
	return err
}

// slotHead is how every slot starts (the generated types' State and
// Where): readSlots reads the state through it, whatever the slot's type.
type slotHead struct {
	state uint32 // SLOT_EMPTY, SLOT_BUSY or the key's tag
	where uint32 // the slot's index entry, and SLOT_REFERENCED
}

func head[S any](s *S) *slotHead { return (*slotHead)(unsafe.Pointer(s)) }

// readSlots calls visit with a copy of every published slot, in slot order.
// A key may be in several slots: two CPUs inserted it at once, or its index
// entry gave way to another key's and a later packet of it took a new slot.
// Each copy holds the counts of its own packets; the callers add them up.
//
// The kernel goes on writing while this reads: a slot whose state changes
// during the copy is being given to another key, and is read again; one
// that keeps changing is left out of this snapshot.
func readSlots[S any](slots []S, visit func(i int, s *S)) {
	var s S // one copy for all: visit's argument would make a slot's escape
	for i := range slots {
		st := atomic.LoadUint32(&head(&slots[i]).state)
		if st == slotEmpty || st == slotBusy {
			continue
		}
		stable := false
		for range 3 {
			loadSlot(&s, &slots[i])
			now := atomic.LoadUint32(&head(&slots[i]).state)
			if now == st && head(&s).state == st {
				stable = true
				break
			}
			st = now
			if st == slotEmpty || st == slotBusy {
				break
			}
		}
		if stable {
			visit(i, &s)
		}
	}
}

// loadSlot copies a slot a word at a time with atomic loads: they are
// ordered before the load of the state that follows, so that on a machine
// that reorders loads (arm64) the copy cannot take words of the next key
// while the state still reads as this one's. A slot is a whole number of
// 8-byte words (mapTable checks).
func loadSlot[S any](dst, src *S) {
	n := unsafe.Sizeof(*src) / 8
	d := unsafe.Slice((*uint64)(unsafe.Pointer(dst)), n)
	from := unsafe.Slice((*uint64)(unsafe.Pointer(src)), n)
	for i := range from {
		d[i] = atomic.LoadUint64(&from[i])
	}
}

// exchangeReader reads the exchange table into one entry per key, adding
// up the key's copies. It keeps, between snapshots, what it takes for a
// key's counts not to fall when one of its copies gives way while another
// lives on (the classifier would take the fall for an eviction and count
// the living copy's counts again): the copies of the keys that had several,
// and the counts of those that gave way since, carried in the key's total
// until the key itself is gone.
type exchangeReader struct {
	copies copyIndex
	// firstSlot is, per entry of the snapshot being read, its first copy's
	// slot; several holds the entries that have more copies.
	firstSlot []int
	several   map[int]*severalCopies
	// watched are the keys that had several copies, or counts carried, at
	// the last snapshot.
	watched map[bpf.PortwatchExchangeKey]*watchedKey
}

// keptCopy is one copy of a key as a snapshot read it.
type keptCopy struct {
	slot   int
	counts bpf.ExchangeCounters
}

// severalCopies are the copies of one key that a snapshot read.
type severalCopies struct {
	raw    bpf.PortwatchExchangeKey
	tag    uint32
	copies []keptCopy
}

type watchedKey struct {
	tag    uint32
	copies []keptCopy
	carry  *bpf.ExchangeCounters // counts of copies that gave way; nil: none
}

// read appends the table's entries to out.
func (r *exchangeReader) read(t *slotTable[bpf.PortwatchExchangeSlot], clock bpf.Clock,
	out []bpf.ExchangeEntry) []bpf.ExchangeEntry {
	r.copies.reset(cap(out) - len(out))
	r.firstSlot = r.firstSlot[:0]
	if r.several == nil {
		r.several = map[int]*severalCopies{}
	}
	clear(r.several)
	base := len(out)
	readSlots(t.slots, func(i int, s *bpf.PortwatchExchangeSlot) {
		key, c := bpf.Exchange(s.Key, s.Value, clock)
		e, seen := r.copies.findOrAdd(s.State, len(out)-base, func(j int) bool { return out[base+j].Key == key })
		if !seen {
			out = append(out, bpf.ExchangeEntry{Key: key, Counters: c})
			r.firstSlot = append(r.firstSlot, i)
			return
		}
		sc, ok := r.several[e]
		if !ok {
			sc = &severalCopies{raw: s.Key, tag: s.State,
				copies: []keptCopy{{slot: r.firstSlot[e], counts: out[base+e].Counters}}}
			r.several[e] = sc
		}
		sc.copies = append(sc.copies, keptCopy{slot: i, counts: c})
		mergeExchange(&out[base+e].Counters, c)
	})
	r.carry(t, clock, out[base:])
	return out
}

// carry adds to the keys watched since the last snapshot the counts of
// their copies that gave way since, and chooses the keys to watch until the
// next. A key none of whose copies is left was evicted: what the table
// holds of it now starts again, without a carry.
func (r *exchangeReader) carry(t *slotTable[bpf.PortwatchExchangeSlot], clock bpf.Clock, entries []bpf.ExchangeEntry) {
	if len(r.watched) == 0 && len(r.several) == 0 {
		return // the usual case: no key in two slots
	}
	next := make(map[bpf.PortwatchExchangeKey]*watchedKey, len(r.watched)+len(r.several))
	for raw, w := range r.watched {
		kept := false
		carry := w.carry
		for _, c := range w.copies {
			if slotHolds(t, c.slot, w.tag, &raw) {
				kept = true
				continue
			}
			carry = addCounters(carry, c.counts)
		}
		if !kept {
			continue
		}
		key, _ := bpf.Exchange(raw, bpf.PortwatchExchangeValue{}, clock)
		e, ok := r.copies.find(w.tag, func(j int) bool { return entries[j].Key == key })
		if !ok {
			continue // gone since the read: evicted
		}
		copies := r.copiesOf(e, entries)
		if carry != nil {
			mergeExchange(&entries[e].Counters, *carry)
		}
		next[raw] = &watchedKey{tag: w.tag, copies: copies, carry: carry}
	}
	for _, sc := range r.several {
		if _, ok := next[sc.raw]; !ok {
			next[sc.raw] = &watchedKey{tag: sc.tag, copies: sc.copies}
		}
	}
	r.watched = next
}

// copiesOf is entry e's copies as this snapshot read them, before any carry.
func (r *exchangeReader) copiesOf(e int, entries []bpf.ExchangeEntry) []keptCopy {
	if sc, ok := r.several[e]; ok {
		return sc.copies
	}
	return []keptCopy{{slot: r.firstSlot[e], counts: entries[e].Counters}}
}

// slotHolds reports whether slot i still holds the published key raw.
func slotHolds(t *slotTable[bpf.PortwatchExchangeSlot], i int, tag uint32, raw *bpf.PortwatchExchangeKey) bool {
	s := &t.slots[i]
	return atomic.LoadUint32(&head(s).state) == tag && s.Key == *raw
}

// addCounters adds d to the counts in c (nil: none yet).
func addCounters(c *bpf.ExchangeCounters, d bpf.ExchangeCounters) *bpf.ExchangeCounters {
	if c == nil {
		return &d
	}
	sum := *c
	mergeExchange(&sum, d)
	return &sum
}

// copyIndex finds the entry that an earlier copy of a key made. It hashes
// nothing itself: two copies of a key carry the same tag, the hash bits
// the kernel published as the slot's state, so it looks copies up by tag
// (open addressing, at most half full) and compares keys only when tags
// match.
type copyIndex struct {
	slots []copySlot
	mask  uint32
	n     int
}

type copySlot struct {
	tag uint32
	at  int32 // the entry + 1; 0: free
}

// reset empties the index, sized for about n entries.
func (c *copyIndex) reset(n int) {
	c.n = 0
	c.resize(int(nextPow2(uint64(max(2*n, 1024)))))
}

func (c *copyIndex) resize(size int) {
	old := c.slots
	if cap(c.slots) >= size && c.n == 0 {
		c.slots = c.slots[:size]
		clear(c.slots)
	} else {
		c.slots = make([]copySlot, size)
	}
	c.mask = uint32(size - 1)
	if c.n == 0 {
		return
	}
	for _, s := range old {
		if s.at != 0 {
			i := c.home(s.tag)
			for c.slots[i].at != 0 {
				i = (i + 1) & c.mask
			}
			c.slots[i] = s
		}
	}
}

// home is a tag's first slot. A tag's low two bits carry no hash (the
// kernel sets bit 1).
func (c *copyIndex) home(tag uint32) uint32 { return tag >> 2 & c.mask }

// probe returns the slot holding the entry of a key with this tag for
// which same reports true, or else the free slot where the search ended.
func (c *copyIndex) probe(tag uint32, same func(int) bool) *copySlot {
	for i := c.home(tag); ; i = (i + 1) & c.mask {
		s := &c.slots[i]
		if s.at == 0 || s.tag == tag && same(int(s.at-1)) {
			return s
		}
	}
}

// find returns the entry of a key with this tag for which same reports
// true.
func (c *copyIndex) find(tag uint32, same func(int) bool) (at int, ok bool) {
	s := c.probe(tag, same)
	return int(s.at - 1), s.at != 0
}

// findOrAdd returns the entry of an earlier copy of a key with this tag,
// for which same reports true, or else notes entry as the key's and
// returns it with seen false.
func (c *copyIndex) findOrAdd(tag uint32, entry int, same func(int) bool) (at int, seen bool) {
	s := c.probe(tag, same)
	if s.at != 0 {
		return int(s.at - 1), true
	}
	*s = copySlot{tag: tag, at: int32(entry + 1)}
	if c.n++; 2*c.n > len(c.slots) {
		c.resize(2 * len(c.slots))
	}
	return entry, false
}

// readUnexpected fills out from the unexpected-port table.
func readUnexpected(t *slotTable[bpf.PortwatchUnexpectedSlot], clock bpf.Clock, out map[bpf.UnexpectedKey]bpf.UnexpectedCounters) {
	readSlots(t.slots, func(_ int, s *bpf.PortwatchUnexpectedSlot) {
		key, c := bpf.Unexpected(s.Key, s.Value, clock)
		if prev, ok := out[key]; ok {
			c = mergeUnexpected(prev, c)
		}
		out[key] = c
	})
}

// mergeExchange adds the counts of a second copy of an exchange to c.
func mergeExchange(c *bpf.ExchangeCounters, d bpf.ExchangeCounters) {
	if d.FirstSeen.Before(c.FirstSeen) {
		c.FirstSeen = d.FirstSeen
	}
	if d.LastSeen.After(c.LastSeen) {
		c.LastSeen = d.LastSeen
	}
	c.Attempts += d.Attempts
	c.Retransmits += d.Retransmits
	c.Answers += d.Answers
	c.Resets += d.Resets
	c.ICMPClosed += d.ICMPClosed
	c.ICMPFiltered += d.ICMPFiltered
	c.ICMPOther += d.ICMPOther
	c.ReturnBlocked += d.ReturnBlocked
	c.Followups += d.Followups
}

// mergeUnexpected combines two copies of an unexpected port's counts; the
// client is the one answered last.
func mergeUnexpected(a, b bpf.UnexpectedCounters) bpf.UnexpectedCounters {
	out := a
	if b.FirstSeen.Before(out.FirstSeen) {
		out.FirstSeen = b.FirstSeen
	}
	if b.LastSeen.After(a.LastSeen) {
		out.LastSeen = b.LastSeen
		out.Client = b.Client
	}
	out.Answers += b.Answers
	return out
}
