package loader

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frames for BPF_PROG_TEST_RUN, built with gopacket and then, for the
// malformed ones, cut or patched byte by byte. The programs check no
// checksums, but the frames carry correct ones so that tcpdump reads them.

var (
	macClient = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	macServer = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
	macBcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

const ethHeaderLen = 14

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("building a frame: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func is6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// ipLayers returns the Ethernet and IP layers from src to dst; the caller's
// transport layer must call SetNetworkLayerForChecksum with the second.
func ipLayers(src, dst netip.Addr, proto layers.IPProtocol) (*layers.Ethernet, gopacket.NetworkLayer) {
	eth := &layers.Ethernet{SrcMAC: macClient, DstMAC: macServer}
	if is6(src) {
		eth.EthernetType = layers.EthernetTypeIPv6
		return eth, &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	eth.EthernetType = layers.EthernetTypeIPv4
	return eth, &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// tcpFlags name the flags of a segment.
type tcpFlags struct{ syn, ack, rst, psh, fin bool }

var (
	flagSYN    = tcpFlags{syn: true}
	flagSYNACK = tcpFlags{syn: true, ack: true}
	flagRST    = tcpFlags{rst: true}
	flagACK    = tcpFlags{ack: true}
	flagPSHACK = tcpFlags{psh: true, ack: true}
)

func tcpFrame(tb testing.TB, src, dst netip.AddrPort, f tcpFlags, seq uint32, payload []byte) []byte {
	tb.Helper()
	eth, ip := ipLayers(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq,
		SYN: f.syn, ACK: f.ack, RST: f.rst, PSH: f.psh, FIN: f.fin, Window: 64240}
	if f.ack {
		tcp.Ack = 1
	}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, eth, ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(payload))
}

// rstAnswer is the RST, ACK with which server refuses the SYN of sequence
// number synSeq that client sent.
func rstAnswer(tb testing.TB, server, client netip.AddrPort, synSeq uint32) []byte {
	tb.Helper()
	eth, ip := ipLayers(server.Addr(), client.Addr(), layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(server.Port()), DstPort: layers.TCPPort(client.Port()),
		RST: true, ACK: true, Ack: synSeq + 1}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, eth, ip.(gopacket.SerializableLayer), tcp)
}

func udpFrame(tb testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	tb.Helper()
	eth, ip := ipLayers(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, eth, ip.(gopacket.SerializableLayer), udp, gopacket.Payload(payload))
}

// ipPacket is a frame without its Ethernet header: what an ICMP error quotes.
func ipPacket(frame []byte) []byte { return frame[ethHeaderLen:] }

// icmpUnreachFrame is a destination unreachable (ICMP type 3, ICMPv6 type
// 1) from from to to, quoting the IP packet quoted.
func icmpUnreachFrame(tb testing.TB, from, to netip.Addr, code uint8, quoted []byte) []byte {
	tb.Helper()
	if is6(from) {
		return icmp6Frame(tb, from, to, layers.ICMPv6TypeDestinationUnreachable, code, quoted)
	}
	return icmp4Frame(tb, from, to, layers.ICMPv4TypeDestinationUnreachable, code, quoted)
}

func icmp4Frame(tb testing.TB, from, to netip.Addr, typ, code uint8, body []byte) []byte {
	tb.Helper()
	eth, ip := ipLayers(from, to, layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return serialize(tb, eth, ip.(gopacket.SerializableLayer), icmp, gopacket.Payload(body))
}

func icmp6Frame(tb testing.TB, from, to netip.Addr, typ, code uint8, body []byte) []byte {
	tb.Helper()
	eth, ip := ipLayers(from, to, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	_ = icmp.SetNetworkLayerForChecksum(ip)
	// The 4 unused bytes of an error message precede the quoted packet.
	return serialize(tb, eth, ip.(gopacket.SerializableLayer), icmp, gopacket.Payload(append(make([]byte, 4), body...)))
}

// dhcpFrame is a BOOTP message with the given op (1 request, 2 reply).
func dhcpFrame(tb testing.TB, src, dst netip.AddrPort, op layers.DHCPOp, xid uint32, chaddr net.HardwareAddr) []byte {
	tb.Helper()
	eth, ip := ipLayers(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	if dst.Addr() == netip.IPv4Unspecified() || dst.Addr() == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		eth.DstMAC = macBcast
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip)
	msgType := layers.DHCPMsgTypeDiscover
	if op == layers.DHCPOpReply {
		msgType = layers.DHCPMsgTypeOffer
	}
	dhcp := &layers.DHCPv4{Operation: op, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6, Xid: xid,
		ClientHWAddr: chaddr, Options: layers.DHCPOptions{
			layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(msgType)}),
			layers.NewDHCPOption(layers.DHCPOptEnd, nil),
		}}
	return serialize(tb, eth, ip.(gopacket.SerializableLayer), udp, dhcp)
}

// withVLANs inserts tags (outermost first) after the MAC addresses: one
// tag is 802.1Q, the outer of two or more is 802.1ad.
func withVLANs(frame []byte, ids ...uint16) []byte {
	inner := frame[12:14]
	out := append([]byte(nil), frame[:12]...)
	for i, id := range ids {
		tpid := uint16(layers.EthernetTypeDot1Q)
		if i == 0 && len(ids) > 1 {
			tpid = uint16(layers.EthernetTypeQinQ)
		}
		out = binary.BigEndian.AppendUint16(out, tpid)
		out = binary.BigEndian.AppendUint16(out, id)
	}
	// Each tag's encapsulated type is the next tag's TPID; the last one's is
	// the frame's own type, already in place after the loop above.
	out = append(out, inner...)
	return append(out, frame[14:]...)
}

// withIPv4Options grows the IPv4 header of frame to ihl words with NOP
// options, fixing the total length (the checksum is left stale).
func withIPv4Options(frame []byte, ihl int) []byte {
	ip := frame[ethHeaderLen:]
	hlen := int(ip[0]&0x0f) * 4
	extra := ihl*4 - hlen
	out := append([]byte(nil), frame[:ethHeaderLen+hlen]...)
	for range extra {
		out = append(out, 1) // IPOPT_NOP
	}
	out = append(out, ip[hlen:]...)
	out[ethHeaderLen] = out[ethHeaderLen]&0xf0 | byte(ihl)
	binary.BigEndian.PutUint16(out[ethHeaderLen+2:], uint16(len(out)-ethHeaderLen))
	return out
}

// l4Offset is where the transport header of an IP frame starts.
func l4Offset(frame []byte) int {
	if frame[ethHeaderLen]>>4 == 6 {
		return ethHeaderLen + 40
	}
	return ethHeaderLen + int(frame[ethHeaderLen]&0x0f)*4
}

// patch returns a copy of frame with b written at off.
func patch(frame []byte, off int, b ...byte) []byte {
	out := append([]byte(nil), frame...)
	copy(out[off:], b)
	return out
}

// ipv4Frag marks an IPv4 frame as a fragment at offset (8-byte units).
func ipv4Frag(frame []byte, more bool, offset uint16) []byte {
	v := offset & 0x1fff
	if more {
		v |= 0x2000
	}
	out := append([]byte(nil), frame...)
	binary.BigEndian.PutUint16(out[ethHeaderLen+6:], v)
	return out
}

// IPv6 extension headers, as raw bytes to insert after the fixed header.
const (
	ext6HopByHop = 0
	ext6Routing  = 43
	ext6Fragment = 44
	ext6DestOpts = 60
)

// ext6 is one extension header: its type, and for a fragment header the
// offset (8-byte units) and the more-fragments flag.
type ext6 struct {
	kind   uint8
	offset uint16
	more   bool
}

// withIPv6Ext inserts a chain of extension headers after the IPv6 header,
// each 8 bytes, linking their next-header fields.
func withIPv6Ext(frame []byte, chain ...ext6) []byte {
	const fixed = 40
	hdr := append([]byte(nil), frame[ethHeaderLen:ethHeaderLen+fixed]...)
	rest := frame[ethHeaderLen+fixed:]
	next := hdr[6]
	var exts []byte
	for i := len(chain) - 1; i >= 0; i-- {
		e := make([]byte, 8)
		e[0] = next
		switch chain[i].kind {
		case ext6Fragment:
			v := chain[i].offset << 3
			if chain[i].more {
				v |= 1
			}
			binary.BigEndian.PutUint16(e[2:], v)
			binary.BigEndian.PutUint32(e[4:], 0x5057) // identification
		case ext6Routing:
			e[2] = 0 // routing type 0 with no addresses left: segments left 0
		default:
			// Options: one PadN covering the 6 bytes after the header.
			e[2], e[3] = 1, 4
		}
		exts = append(e, exts...)
		next = chain[i].kind
	}
	hdr[6] = next
	binary.BigEndian.PutUint16(hdr[4:], uint16(len(exts)+len(rest)))
	out := append([]byte(nil), frame[:ethHeaderLen]...)
	out = append(out, hdr...)
	out = append(out, exts...)
	return append(out, rest...)
}
