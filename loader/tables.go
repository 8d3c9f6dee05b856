package loader

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
)

// The program's four tables are open-addressing hash tables in arrays of
// slots (see bpf/portwatch.h): a key lives in one of the tableProbes slots
// from its home slot, a slot is published once its key is written, and
// nothing is ever deleted. The loader sizes them, and reads the exchange and
// unexpected-port tables through a read-only memory mapping: a snapshot
// is a memory copy, not a system call per batch of entries.

const (
	tableProbes = int(bpf.PortwatchTableShapeTABLE_PROBES)
	slotEmpty   = uint32(bpf.PortwatchSlotStateSLOT_EMPTY)
	slotBusy    = uint32(bpf.PortwatchSlotStateSLOT_BUSY)
)

// tableSlots is the slot count of a table that should hold entries keys:
// twice as many, a power of two, so that at its bound the table is at most
// half full and a full probe window (which makes the oldest key of the
// window give way) stays rare.
func tableSlots(entries int) uint32 {
	return uint32(nextPow2(uint64(max(2*entries, 2*tableProbes))))
}

// sizeMaps sizes the tables on the spec before load (the map and the
// variable that holds its slot count - 1), and seeds their hash: with seed,
// or when it is zero with a random seed, so that a sender cannot aim
// packets at one probe window.
func sizeMaps(spec *ebpf.CollectionSpec, s MapSizes, seed uint64) error {
	for _, t := range []struct {
		name, mask string
		entries    int
	}{
		{bpf.PortwatchMapExchanges, "exchanges_mask", s.Exchanges},
		{bpf.PortwatchMapEphemeral, "ephemeral_mask", s.Ephemeral},
		{bpf.PortwatchMapUnexpected, "unexpected_mask", s.Unexpected},
		{bpf.PortwatchMapUdpFlows, "udp_flows_mask", s.Flows},
	} {
		m, ok := spec.Maps[t.name]
		v, vok := spec.Variables[t.mask]
		if !ok || !vok {
			return fmt.Errorf("the embedded BPF object has no table %q: rebuild it with `make generate`", t.name)
		}
		slots := tableSlots(t.entries)
		m.MaxEntries = slots
		if err := v.Set(slots - 1); err != nil {
			return fmt.Errorf("sizing table %s: %w", t.name, err)
		}
	}
	if seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("seeding the tables' hash: %w", err)
		}
		seed = binary.NativeEndian.Uint64(b[:])
	}
	v, ok := spec.Variables["table_seed"]
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

// slotHead is how every slot starts (the generated types' State and Probe):
// readSlots reads these two through it, whatever the slot's type.
type slotHead struct {
	state uint32 // SLOT_EMPTY, SLOT_BUSY or the key's tag
	probe uint32 // slots past the key's home slot
}

func head[S any](s *S) *slotHead { return (*slotHead)(unsafe.Pointer(s)) }

// readSlots calls visit with a copy of every published slot, in slot order,
// and then calls dup for every slot whose key an earlier slot of its
// window also holds (two CPUs inserted the key at once), with the index of
// that earlier slot, which was visited: its counts belong to that entry.
// key gives a slot's key.
//
// The kernel goes on writing while this reads: a slot whose state changes
// during the copy is being given to another key, and is read again; one
// that keeps changing is left out of this snapshot.
func readSlots[S, K comparable](slots []S, key func(*S) K, visit func(i int, s *S), dup func(i, of int, s *S)) {
	mask := len(slots) - 1
	type later struct {
		i, of int
		s     S
	}
	var dups []later
	var s S // one copy for all: visit's argument would make a slot's escape
	for i := range slots {
		st := atomic.LoadUint32(&head(&slots[i]).state)
		if st == slotEmpty || st == slotBusy {
			continue
		}
		stable := false
		for range 3 {
			s = slots[i]
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
		if !stable {
			continue
		}
		// Another copy of the key lies between its home slot and this
		// one, which the kernel noted as the probe distance. The search
		// wraps around the table's end, so of two copies exactly one
		// finds the other; the earliest found is the one every copy
		// merges into.
		of := -1
		k := key(&s)
		for back := 1; back <= int(min(head(&s).probe, uint32(tableProbes-1))); back++ {
			j := (i - back) & mask
			if atomic.LoadUint32(&head(&slots[j]).state) == st && key(&slots[j]) == k {
				of = j
			}
		}
		if of >= 0 {
			dups = append(dups, later{i, of, s})
			continue
		}
		visit(i, &s)
	}
	for _, d := range dups {
		dup(d.i, d.of, &d.s)
	}
}

func exchangeKey(s *bpf.PortwatchExchangeSlot) bpf.PortwatchExchangeKey       { return s.Key }
func unexpectedKey(s *bpf.PortwatchUnexpectedSlot) bpf.PortwatchUnexpectedKey { return s.Key }

// readExchanges appends the exchange table's entries to out. slotOf is
// scratch, reused between snapshots: the slot of each entry of out.
func readExchanges(t *slotTable[bpf.PortwatchExchangeSlot], clock bpf.Clock, out []bpf.ExchangeEntry,
	slotOf []int) ([]bpf.ExchangeEntry, []int) {
	slotOf = slotOf[:0]
	base := len(out)
	readSlots(t.slots, exchangeKey,
		func(i int, s *bpf.PortwatchExchangeSlot) {
			key, c := bpf.Exchange(s.Key, s.Value, clock)
			out = append(out, bpf.ExchangeEntry{Key: key, Counters: c})
			slotOf = append(slotOf, i)
		},
		func(i, of int, s *bpf.PortwatchExchangeSlot) {
			key, c := bpf.Exchange(s.Key, s.Value, clock)
			// The first copy's slot may have gone to another key
			// between its read and this one's.
			at := sort.SearchInts(slotOf, of)
			if at == len(slotOf) || slotOf[at] != of || out[base+at].Key != key {
				out = append(out, bpf.ExchangeEntry{Key: key, Counters: c})
				return
			}
			mergeExchange(&out[base+at].Counters, c)
		})
	return out, slotOf
}

// readUnexpected fills out from the unexpected-port table.
func readUnexpected(t *slotTable[bpf.PortwatchUnexpectedSlot], clock bpf.Clock, out map[bpf.UnexpectedKey]bpf.UnexpectedCounters) {
	add := func(s *bpf.PortwatchUnexpectedSlot) {
		key, c := bpf.Unexpected(s.Key, s.Value, clock)
		if prev, ok := out[key]; ok {
			c = mergeUnexpected(prev, c)
		}
		out[key] = c
	}
	readSlots(t.slots, unexpectedKey,
		func(_ int, s *bpf.PortwatchUnexpectedSlot) { add(s) },
		func(_, _ int, s *bpf.PortwatchUnexpectedSlot) { add(s) })
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
