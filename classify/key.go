package classify

import (
	"net/netip"

	"portwatch/bpf"
	"portwatch/catalog"
)

// stateKey is a bpf.ExchangeKey packed into plain bytes for the classifier's
// own map. With no handles and no padding, Go hashes and compares it as one
// block of memory; an ExchangeKey, whose netip.Addr fields carry a handle,
// is hashed and compared field by field, which made a window over 100,000
// exchanges markedly slower (see BenchmarkUpdate).
type stateKey struct {
	client, server [16]byte
	mac            [6]byte
	service        catalog.ServiceID
	form           uint16 // keyDHCP, keyClient4, keyServer, keyServer4
}

const (
	keyDHCP    = 1 << iota // keyed by hardware address: no client address
	keyClient4             // the client address is IPv4 (not IPv4-mapped IPv6)
	keyServer              // there is a server address
	keyServer4             // the server address is IPv4
)

func packKey(k bpf.ExchangeKey) stateKey {
	p := stateKey{mac: k.ClientMAC, service: k.Service}
	if k.IsDHCP() {
		p.form |= keyDHCP
	} else {
		p.client = k.Client.As16()
		if k.Client.Is4() {
			p.form |= keyClient4
		}
	}
	if k.Server.IsValid() {
		p.form |= keyServer
		p.server = k.Server.As16()
		if k.Server.Is4() {
			p.form |= keyServer4
		}
	}
	return p
}

// unpack returns the ExchangeKey that packKey packed (without IPv6 zones,
// which exchanges never carry).
func (p stateKey) unpack() bpf.ExchangeKey {
	k := bpf.ExchangeKey{Service: p.service, ClientMAC: p.mac}
	if p.form&keyDHCP == 0 {
		k.Client = netip.AddrFrom16(p.client)
		if p.form&keyClient4 != 0 {
			k.Client = k.Client.Unmap()
		}
	}
	if p.form&keyServer != 0 {
		k.Server = netip.AddrFrom16(p.server)
		if p.form&keyServer4 != 0 {
			k.Server = k.Server.Unmap()
		}
	}
	return k
}
