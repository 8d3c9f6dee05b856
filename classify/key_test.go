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
