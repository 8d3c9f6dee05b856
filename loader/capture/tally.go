package capture

import (
	"cmp"
	"encoding/binary"
	"slices"
)

// PortCount is how many packets carried a port, as source or destination.
type PortCount struct {
	Proto   string `json:"proto"` // "tcp" or "udp"
	Port    uint16 `json:"port"`
	Packets uint64 `json:"packets"`
}

// Tally counts, for every (protocol, port) seen, the packets that carry the
// port as source or destination: a packet from 68 to 67 counts once for each,
// one from 514 to 514 once. It follows libpcap's filter semantics, so that
// the count of a port equals what `tcpdump -nn -r FILE 'udp port P'` prints,
// plus its `vlan and ...` and `vlan and vlan and ...` forms for tagged
// frames: an IPv4 fragment other than the first carries no port, and for
// IPv6 only the fixed header's next header is looked at (libpcap does not
// walk extension headers for `tcp` and `udp`).
//
// It is independent of the twin on purpose: a second reading of the same
// bytes, checked against tcpdump.
type Tally struct {
	counts [2][65536]uint64 // [0] tcp, [1] udp
}

// Add counts one packet.
func (t *Tally) Add(p *Packet) {
	data := p.Data
	etherType := p.EtherType
	if !p.Network {
		if len(data) < 14 {
			return
		}
		etherType = binary.BigEndian.Uint16(data[12:14])
		data = data[14:]
		for range 2 {
			if etherType != 0x8100 && etherType != 0x88a8 && etherType != 0x9100 {
				break
			}
			if len(data) < 4 {
				return
			}
			etherType = binary.BigEndian.Uint16(data[2:4])
			data = data[4:]
		}
	}
	var proto uint8
	var l4 []byte
	switch etherType {
	case EtherTypeIPv4:
		// libpcap checks neither the version nor a sane IHL: it reads the
		// protocol, the fragment offset and the ports at 4*IHL.
		if len(data) < 10 {
			return
		}
		ihl := int(data[0]&0x0f) * 4
		if binary.BigEndian.Uint16(data[6:8])&0x1fff != 0 || len(data) < ihl {
			return
		}
		proto, l4 = data[9], data[ihl:]
	case EtherTypeIPv6:
		if len(data) < 40 {
			return
		}
		proto, l4 = data[6], data[40:]
	default:
		return
	}
	var slot int
	switch proto {
	case 6:
		slot = 0
	case 17:
		slot = 1
	default:
		return
	}
	if len(l4) < 4 {
		return
	}
	sport := binary.BigEndian.Uint16(l4[0:2])
	dport := binary.BigEndian.Uint16(l4[2:4])
	t.counts[slot][sport]++
	if dport != sport {
		t.counts[slot][dport]++
	}
}

// Counts returns every port with packets, ordered by protocol and port.
func (t *Tally) Counts() []PortCount {
	var out []PortCount
	for slot, name := range []string{"tcp", "udp"} {
		for port, n := range t.counts[slot] {
			if n > 0 {
				out = append(out, PortCount{Proto: name, Port: uint16(port), Packets: n})
			}
		}
	}
	slices.SortFunc(out, func(a, b PortCount) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	return out
}
