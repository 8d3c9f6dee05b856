// Package packets crafts the frames that portwatch's tests and benchmarks run
// through the kernel program and its Go twin: management-network traffic
// (xcatd, TFTP, DHCP, ssh, SNMP, IPMI, ICMP errors) in every shape the parser
// must handle, well-formed or broken. Well-formed frames come from gopacket's
// serializers, so the parser is checked against an independent writer.
package packets

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TCP flag sets.
const (
	SYN    = 0x02
	RST    = 0x04
	PSH    = 0x08
	ACK    = 0x10
	SYNACK = SYN | ACK
	RSTACK = RST | ACK
)

// Options shape a frame beyond its addresses and ports.
type Options struct {
	// VLANs are the tags, outermost first; a TPID of 0 means 802.1Q.
	VLANs []VLAN
	// IPv4Options is the number of 4-byte option words (IHL = 5 + n).
	IPv4Options int
	// FragOffset (in 8-byte units) and MoreFragments make an IPv4 or IPv6
	// fragment; IPv6 gets a fragment header.
	FragOffset    uint16
	MoreFragments bool
	// IPv6Ext lists extension headers to put before the L4 header:
	// layers.IPProtocolIPv6HopByHop, ...Routing, ...Destination, ...Fragment.
	IPv6Ext []layers.IPProtocol
	Payload []byte
	Seq     uint32
	// Ack is the acknowledgment number of a segment with ACK set; 0
	// means 1.
	Ack uint32
}

// VLAN is one 802.1Q or 802.1ad tag.
type VLAN struct {
	ID   uint16
	TPID layers.EthernetType
}

var (
	clientMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b}
	serverMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
)

// Addr parses an address, panicking on a typo in a test.
func Addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TCP builds an Ethernet frame carrying a TCP segment.
func TCP(src, dst netip.Addr, sport, dport uint16, flags uint8, o Options) []byte {
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
		Seq: o.Seq, Window: 64240,
		SYN: flags&SYN != 0, ACK: flags&ACK != 0, RST: flags&RST != 0, PSH: flags&PSH != 0,
	}
	if tcp.ACK {
		tcp.Ack = max(o.Ack, 1)
	}
	return frame(src, dst, layers.IPProtocolTCP, tcp, o)
}

// UDP builds an Ethernet frame carrying a UDP datagram.
func UDP(src, dst netip.Addr, sport, dport uint16, o Options) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	return frame(src, dst, layers.IPProtocolUDP, udp, o)
}

// DHCP builds a BOOTP message (op 1 request, 2 reply) for a client hardware
// address and transaction id, between the given addresses and ports.
func DHCP(src, dst netip.Addr, sport, dport uint16, op uint8, xid uint32, chaddr net.HardwareAddr) []byte {
	d := &layers.DHCPv4{
		Operation: layers.DHCPOp(op), HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		Xid: xid, ClientHWAddr: chaddr,
		Options: []layers.DHCPOption{layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(layers.DHCPMsgTypeDiscover)})},
	}
	if op == 2 {
		d.Options[0] = layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(layers.DHCPMsgTypeOffer)})
	}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		panic(err)
	}
	return UDP(src, dst, sport, dport, Options{Payload: buf.Bytes()})
}

// Unreachable builds an ICMP (or ICMPv6) destination unreachable with the
// given code, sent from `from` to the original sender, quoting the IP packet
// of quotedFrame (an Ethernet frame as built here).
func Unreachable(from netip.Addr, code uint8, quotedFrame []byte) []byte {
	quoted := quotedFrame[14:]
	var to netip.Addr
	if quoted[0]>>4 == 4 {
		to = netip.AddrFrom4([4]byte(quoted[12:16]))
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, code)}
		return frame(from, to, layers.IPProtocolICMPv4, icmp, Options{Payload: quoted})
	}
	to = netip.AddrFrom16([16]byte(quoted[8:24]))
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, code)}
	// The 4 unused bytes after the ICMPv6 header, then the quoted packet.
	return frame(from, to, layers.IPProtocolICMPv6, icmp, Options{Payload: append(make([]byte, 4), quoted...)})
}

// Echo builds an ICMP echo request: ICMP that is not an unreachable.
func Echo(src, dst netip.Addr) []byte {
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)}
	return frame(src, dst, layers.IPProtocolICMPv4, icmp, Options{Payload: []byte("ping")})
}

// ARP builds a frame that is not IP.
func ARP() []byte {
	buf := gopacket.NewSerializeBuffer()
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: clientMAC, SourceProtAddress: []byte{10, 0, 1, 11},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 1}}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// GRE builds an IPv4 packet of a protocol the parser does not follow.
func GRE(src, dst netip.Addr) []byte {
	return frame(src, dst, layers.IPProtocolGRE, nil, Options{Payload: make([]byte, 8)})
}

func frame(src, dst netip.Addr, proto layers.IPProtocol, l4 gopacket.SerializableLayer, o Options) []byte {
	var stack []gopacket.SerializableLayer
	inner := layers.EthernetTypeIPv4
	if src.Is6() && !src.Is4In6() {
		inner = layers.EthernetTypeIPv6
	}
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: serverMAC, EthernetType: inner}
	stack = append(stack, eth)
	if len(o.VLANs) > 0 {
		eth.EthernetType = tpid(o.VLANs[0])
		for i, v := range o.VLANs {
			next := inner
			if i+1 < len(o.VLANs) {
				next = tpid(o.VLANs[i+1])
			}
			stack = append(stack, &layers.Dot1Q{VLANIdentifier: v.ID, Type: next})
		}
	}

	var netLayer gopacket.NetworkLayer
	if inner == layers.EthernetTypeIPv4 {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
			FragOffset: o.FragOffset}
		if o.MoreFragments {
			ip.Flags = layers.IPv4MoreFragments
		}
		for i := 0; i < o.IPv4Options; i++ {
			// NOP options: four bytes each, padding included.
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1},
				layers.IPv4Option{OptionType: 1, OptionLength: 1}, layers.IPv4Option{OptionType: 1, OptionLength: 1},
				layers.IPv4Option{OptionType: 1, OptionLength: 1})
		}
		netLayer = ip
		stack = append(stack, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		netLayer = ip
		ext := o.IPv6Ext
		if o.FragOffset != 0 || o.MoreFragments {
			ext = append(append([]layers.IPProtocol{}, ext...), layers.IPProtocolIPv6Fragment)
		}
		if len(ext) == 0 {
			ip.NextHeader = proto
			stack = append(stack, ip)
		} else {
			ip.NextHeader = ext[0]
			stack = append(stack, ip)
			for i, h := range ext {
				next := proto
				if i+1 < len(ext) {
					next = ext[i+1]
				}
				stack = append(stack, extHeader(h, next, o))
			}
		}
	}
	if l4 != nil {
		if c, ok := l4.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			if err := c.SetNetworkLayerForChecksum(netLayer); err != nil {
				panic(err)
			}
		}
		stack = append(stack, l4)
	}
	stack = append(stack, gopacket.Payload(o.Payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, stack...); err != nil {
		panic(fmt.Sprintf("serializing a test frame: %v", err))
	}
	return append([]byte(nil), buf.Bytes()...)
}

func tpid(v VLAN) layers.EthernetType {
	if v.TPID == 0 {
		return layers.EthernetTypeDot1Q
	}
	return v.TPID
}

// extHeader is a raw IPv6 extension header: gopacket's serializers for these
// need options we do not care about, and the bytes are simple.
func extHeader(h, next layers.IPProtocol, o Options) gopacket.Payload {
	if h == layers.IPProtocolIPv6Fragment {
		b := make([]byte, 8)
		b[0] = byte(next)
		off := o.FragOffset << 3
		if o.MoreFragments {
			off |= 1
		}
		binary.BigEndian.PutUint16(b[2:4], off)
		binary.BigEndian.PutUint32(b[4:8], 0x1234)
		return b
	}
	// Hop-by-hop, routing, destination options: 8 bytes with PadN.
	b := make([]byte, 8)
	b[0] = byte(next)
	b[1] = 0
	if h == layers.IPProtocolIPv6Routing {
		b[2] = 0 // routing type 0 with no segments left
		b[3] = 0
	} else {
		b[2] = 1 // PadN, 4 bytes of padding
		b[3] = 4
	}
	return b
}
