package bpf

import "testing"

func testAddr(i int) addr { return addr{hi: uint64(i) * 0x9e3779b97f4a7c15, lo: uint64(i)} }

type aged struct{ seen, id uint64 }

func newAgedMap(max int) boundedMap[aged] {
	return newBoundedMap(max, func(v *aged) uint64 { return v.seen })
}

// Every entry is found again across the index's growth, and a missing key
// is not found.
func TestBoundedMapGrows(t *testing.T) {
	const n = 5000
	b := newAgedMap(n)
	for i := range n {
		if pos := b.insert(testAddr(i), addr{}, uint64(i), aged{id: uint64(i)}); pos != i {
			t.Fatalf("insert %d at %d", i, pos)
		}
	}
	for i := range n {
		v := b.get(testAddr(i), addr{}, uint64(i))
		if v == nil || v.id != uint64(i) {
			t.Fatalf("key %d: got %+v", i, v)
		}
		if b.get(testAddr(i), addr{}, uint64(i+1)) != nil {
			t.Fatalf("key %d with another tail found", i)
		}
	}
	if b.len() != n {
		t.Errorf("len %d, want %d", b.len(), n)
	}
}

// Eviction takes exactly an eighth: all the older entries, then as many of
// the cut-off age as it takes.
func TestBoundedMapEvictsTies(t *testing.T) {
	b := newAgedMap(16)
	for i := range 16 {
		seen := uint64(10)
		if i == 5 {
			seen = 1 // the only older one
		}
		b.insert(testAddr(i), addr{}, 0, aged{seen: seen, id: uint64(i)})
	}
	b.insert(testAddr(16), addr{}, 0, aged{seen: 20, id: 16})
	if b.len() != 15 {
		t.Fatalf("len %d after eviction, want 15", b.len())
	}
	if b.get(testAddr(5), addr{}, 0) != nil {
		t.Error("the oldest entry survived")
	}
	gone := 0
	for i := range 17 {
		if v := b.get(testAddr(i), addr{}, 0); v == nil {
			gone++
		} else if v.id != uint64(i) {
			t.Errorf("key %d holds %d", i, v.id)
		}
	}
	if gone != 2 {
		t.Errorf("%d entries gone, want 2", gone)
	}
}

// A position is a hint: after eviction moved the entries, findFrom still
// finds the key, or nothing.
func TestBoundedMapStaleHint(t *testing.T) {
	b := newAgedMap(8)
	for i := range 8 {
		b.insert(testAddr(i), addr{}, 0, aged{seen: uint64(i)})
	}
	hint := uint32(b.find(testAddr(7), addr{}, 0))
	b.insert(testAddr(8), addr{}, 0, aged{seen: 8}) // evicts key 0: key 7 moves
	i := b.findFrom(testAddr(7), addr{}, 0, hint)
	if i < 0 || b.at(i).seen != 7 {
		t.Errorf("key 7 not found from a stale position")
	}
	if i := b.findFrom(testAddr(0), addr{}, 0, 0); i >= 0 {
		t.Errorf("evicted key 0 found at %d", i)
	}
}

func TestBoundedMapZero(t *testing.T) {
	b := newAgedMap(0)
	if pos := b.insert(testAddr(1), addr{}, 0, aged{}); pos != -1 {
		t.Errorf("a table of no entries took one at %d", pos)
	}
}

func TestAddrBytes(t *testing.T) {
	b := [16]uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if got := addrFrom16(b[:]).bytes(); got != b {
		t.Errorf("addrFrom16: %v", got)
	}
	want := [16]uint8{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 1}
	if got := addrFrom4([]byte{192, 0, 2, 1}).bytes(); got != want {
		t.Errorf("addrFrom4: %v, want %v", got, want)
	}
}
