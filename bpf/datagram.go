package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Datagram is a UDP datagram read out of a frame.
type Datagram struct {
	Src, Dst     netip.Addr
	Sport, Dport uint16
	Payload      []byte
}

// UDPDatagram reads the UDP datagram of an Ethernet frame, as the kernel
// program hands portmapper packets to userspace (learn_events): up to two
// VLAN tags, IPv4 without later fragments, IPv6 without extension headers.
// ok is false for anything else.
func UDPDatagram(frame []byte) (d Datagram, ok bool) {
	if len(frame) < 14 {
		return d, false
	}
	proto := binary.BigEndian.Uint16(frame[12:14])
	p := frame[14:]
	for range VLANMaxDepth {
		if proto != etherTypeVLAN && proto != etherTypeQinQ {
			break
		}
		if len(p) < 4 {
			return d, false
		}
		proto = binary.BigEndian.Uint16(p[2:4])
		p = p[4:]
	}
	var l4 []byte
	switch proto {
	case etherTypeIPv4:
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != ipProtoUDP {
			return d, false
		}
		hlen := int(p[0]&0x0f) * 4
		if hlen < 20 || len(p) < hlen || binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
			return d, false
		}
		d.Src = netip.AddrFrom4([4]byte(p[12:16]))
		d.Dst = netip.AddrFrom4([4]byte(p[16:20]))
		l4 = p[hlen:]
	case etherTypeIPv6:
		if len(p) < 40 || p[6] != ipProtoUDP {
			return d, false
		}
		d.Src = netip.AddrFrom16([16]byte(p[8:24]))
		d.Dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return d, false
	}
	if len(l4) < 8 {
		return d, false
	}
	d.Sport = binary.BigEndian.Uint16(l4[0:2])
	d.Dport = binary.BigEndian.Uint16(l4[2:4])
	d.Payload = udpPayload(l4)
	return d, true
}
