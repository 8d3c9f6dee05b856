package bpf

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// addr is a map address (16 bytes, IPv4 mapped) as two words, so that the
// twin builds, hashes and compares keys a word at a time. The words read the
// bytes little-endian whatever the host: only bytes() turns them back.
type addr struct{ hi, lo uint64 }

func addrFrom16(b []byte) addr {
	_ = b[15]
	return addr{binary.LittleEndian.Uint64(b[0:8]), binary.LittleEndian.Uint64(b[8:16])}
}

// addrFrom4 is the IPv4-mapped address ::ffff:a.b.c.d.
func addrFrom4(b []byte) addr {
	return addr{0, 0xffff<<16 | uint64(binary.LittleEndian.Uint32(b[0:4]))<<32}
}

func (a addr) bytes() (b [16]uint8) {
	binary.LittleEndian.PutUint64(b[0:8], a.hi)
	binary.LittleEndian.PutUint64(b[8:16], a.lo)
	return b
}

// tableKey is the key of every bounded table: two addresses and a tail of
// ports, service, kind or protocol (each table says which). The tables take
// a key as its three parts, never as a tableKey: a 40-byte struct is too big
// for the compiler to keep in registers, and one built on the stack and read
// back costs more than the hash.
type tableKey struct {
	a, b addr
	tail uint64
}

func (k *tableKey) equal(a, b addr, tail uint64) bool {
	return (k.a.hi^a.hi)|(k.a.lo^a.lo)|(k.b.hi^b.hi)|(k.b.lo^b.lo)|(k.tail^tail) == 0
}

// boundedMap is a hash table with the kernel table's bound: when full, the
// least recently seen eighth of the entries is evicted. The kernel's tables
// evict one entry at a time, the next that no packet used since the hand
// of its arena last passed (see portwatch.h), so the two agree exactly
// only below the bound; both keep what was seen last.
//
// Entries live in one slice, in insertion order; an open-addressing index
// (linear probing, at most half full) points into it. A slot holds the
// entry's position + 1 and the low 32 bits of its hash (the top bits pick
// the home slot), so that a probe reads an entry only when they match.
// There is no per-entry allocation and nothing to delete one at a time:
// eviction compacts the entries and rebuilds the index, an eighth of the
// bound at once.
//
// A pointer from get or at is good until the next insert; a position (find,
// insert) until the next eviction, and findFrom checks it against the key.
type boundedMap[V any] struct {
	slots   []uint64
	shift   uint // 64 - log2(len(slots)): the hash's top bits pick the home slot
	entries []tableEntry[V]
	max     int
	// lastSeen is an entry's age for eviction; nil: the table keeps no
	// age, and the first inserted go.
	lastSeen func(*V) uint64
	// seed keys the hash: a capture cannot be crafted to collide.
	seed [5]uint64
	ages []uint64 // eviction's scratch
}

type tableEntry[V any] struct {
	key tableKey
	val V
}

const minSlots = 16

func newBoundedMap[V any](max int, lastSeen func(*V) uint64) boundedMap[V] {
	b := boundedMap[V]{max: max, lastSeen: lastSeen}
	for i := range b.seed {
		b.seed[i] = rand.Uint64() | 1
	}
	b.resize(minSlots)
	return b
}

func (b *boundedMap[V]) len() int { return len(b.entries) }

// mix is one folded 64x64 -> 128-bit multiply.
func mix(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

func hashKey(a, b addr, tail uint64, s *[5]uint64) uint64 {
	h := mix(a.hi^s[0], a.lo^s[1]) ^ mix(b.hi^s[2], b.lo^s[3])
	return mix(h^tail, s[4])
}

// find is the position of key (a, b, tail), or -1.
func (b *boundedMap[V]) find(ka, kb addr, tail uint64) int {
	h := hashKey(ka, kb, tail, &b.seed)
	tag := h << 32
	mask := uint64(len(b.slots) - 1)
	for i := h >> b.shift; ; i = (i + 1) & mask {
		s := b.slots[i]
		if s == 0 {
			return -1
		}
		if s&0xffffffff00000000 == tag {
			if pos := int(uint32(s) - 1); b.entries[pos].key.equal(ka, kb, tail) {
				return pos
			}
		}
	}
}

// findFrom is find for a key last seen at position hint: while the entry
// has not moved, one comparison instead of a hash and a probe.
func (b *boundedMap[V]) findFrom(ka, kb addr, tail uint64, hint uint32) int {
	if hint < uint32(len(b.entries)) && b.entries[hint].key.equal(ka, kb, tail) {
		return int(hint)
	}
	return b.find(ka, kb, tail)
}

func (b *boundedMap[V]) get(ka, kb addr, tail uint64) *V {
	if i := b.find(ka, kb, tail); i >= 0 {
		return &b.entries[i].val
	}
	return nil
}

// at is the value at a position from find, findFrom or insert.
func (b *boundedMap[V]) at(i int) *V { return &b.entries[i].val }

// insert adds an entry whose key is not in the table and returns its
// position; -1 if the table holds nothing at all (a bound of zero).
func (b *boundedMap[V]) insert(ka, kb addr, tail uint64, v V) int {
	if b.max <= 0 {
		return -1
	}
	if len(b.entries) >= b.max {
		b.evict()
	}
	if 2*(len(b.entries)+1) > len(b.slots) {
		b.resize(2 * len(b.slots))
	}
	b.entries = append(b.entries, tableEntry[V]{tableKey{ka, kb, tail}, v})
	b.place(&b.entries[len(b.entries)-1].key, uint64(len(b.entries)))
	return len(b.entries) - 1
}

// place puts position+1 pos of key k in the index.
func (b *boundedMap[V]) place(k *tableKey, pos uint64) {
	h := hashKey(k.a, k.b, k.tail, &b.seed)
	mask := uint64(len(b.slots) - 1)
	i := h >> b.shift
	for b.slots[i] != 0 {
		i = (i + 1) & mask
	}
	b.slots[i] = h<<32 | pos
}

// resize makes an empty index of n slots (a power of two) and indexes the
// entries again.
func (b *boundedMap[V]) resize(n int) {
	if cap(b.slots) >= n {
		b.slots = b.slots[:n]
		clear(b.slots)
	} else {
		b.slots = make([]uint64, n)
	}
	b.shift = uint(64 - bits.TrailingZeros(uint(n)))
	for i := range b.entries {
		b.place(&b.entries[i].key, uint64(i+1))
	}
}

func (b *boundedMap[V]) evict() {
	n := b.max / 8
	if n < 1 {
		n = 1
	}
	n = min(n, len(b.entries))
	if b.lastSeen == nil {
		b.entries = b.entries[:copy(b.entries, b.entries[n:])]
		b.resize(len(b.slots))
		return
	}
	// The n seen least recently go: every entry older than the n-th
	// oldest age, and as many of that age as it takes (of equal ages the
	// earlier inserted, where the Go map this replaced took any).
	b.ages = b.ages[:0]
	for i := range b.entries {
		b.ages = append(b.ages, b.lastSeen(&b.entries[i].val))
	}
	slices.Sort(b.ages)
	cut := b.ages[n-1]
	ties := n
	for _, a := range b.ages[:n] {
		if a < cut {
			ties--
		}
	}
	kept := b.entries[:0]
	for i := range b.entries {
		a := b.lastSeen(&b.entries[i].val)
		if a < cut || a == cut && ties > 0 {
			if a == cut {
				ties--
			}
			continue
		}
		kept = append(kept, b.entries[i])
	}
	b.entries = kept
	b.resize(len(b.slots))
}

// each calls f on every entry, in insertion order.
func (b *boundedMap[V]) each(f func(*tableKey, *V)) {
	for i := range b.entries {
		f(&b.entries[i].key, &b.entries[i].val)
	}
}
