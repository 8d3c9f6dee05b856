package classify

import (
	"net/netip"
	"testing"

	"portwatch/bpf"
)

func TestStateKeyRoundTrip(t *testing.T) {
	v4 := netip.MustParseAddr("10.0.1.11")
	mapped := netip.MustParseAddr("::ffff:10.0.1.11")
	keys := []bpf.ExchangeKey{
		{Service: 3, Client: v4, Server: netip.MustParseAddr("10.0.0.1")},
		{Service: 3, Client: mapped, Server: netip.MustParseAddr("::ffff:10.0.0.1")},
		{Service: 3, Client: netip.MustParseAddr("fd00:1::11"), Server: netip.MustParseAddr("fd00::1")},
		{Service: 7, Client: netip.IPv6Unspecified(), Server: netip.IPv6Unspecified()},
		{Service: 13, ClientMAC: [6]byte{0xaa, 0xbb, 0xcc, 0, 0, 1}},
		{Service: 13},
	}
	packed := map[stateKey]bpf.ExchangeKey{}
	for _, k := range keys {
		p := packKey(k)
		if got := p.unpack(); got != k {
			t.Errorf("unpack(packKey(%+v)) = %+v", k, got)
		}
		if prev, dup := packed[p]; dup {
			t.Errorf("%+v and %+v pack to the same key", prev, k)
		}
		packed[p] = k
	}
}

// TestExchangeTableCollisions chains exchanges whose fingerprints collide,
// which real keys do about once in 10^9 runs.
func TestExchangeTableCollisions(t *testing.T) {
	tab := newExchangeTable()
	var keys []stateKey
	for i := range 3 {
		k := packKey(bpf.ExchangeKey{Service: 3, Client: netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), Server: netip.MustParseAddr("10.0.0.1")})
		keys = append(keys, k)
		tab.addAt(42, &exchange{key: k, pending: uint64(i)})
	}
	lone := packKey(bpf.ExchangeKey{Service: 4, Client: netip.MustParseAddr("10.0.1.9"), Server: netip.MustParseAddr("10.0.0.1")})
	tab.add(&exchange{key: lone, pending: 9})
	for i, k := range keys {
		if x := tab.getAt(42, &k); x == nil || x.pending != uint64(i) {
			t.Errorf("key %d: got %+v", i, x)
		}
	}
	if tab.get(&lone) == nil || tab.len() != 4 {
		t.Fatalf("lone key missing or len %d", tab.len())
	}
	tab.deleteIf(func(x *exchange) bool { return x.key == keys[1] || x.key == lone })
	if tab.len() != 2 || tab.getAt(42, &keys[1]) != nil || tab.get(&lone) != nil {
		t.Errorf("after delete: len %d", tab.len())
	}
	for _, i := range []int{0, 2} {
		if x := tab.getAt(42, &keys[i]); x == nil || x.pending != uint64(i) {
			t.Errorf("key %d lost by deleting its neighbour", i)
		}
	}
	n := 0
	for range tab.all() {
		n++
	}
	if n != 2 {
		t.Errorf("all yields %d exchanges, want 2", n)
	}
	if _, ok := tab.heads[tab.fingerprint(&lone)]; ok {
		t.Error("an emptied chain keeps its map entry")
	}
}
