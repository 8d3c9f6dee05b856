package capture

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket/layers"
)

// EtherTypes the sources set or recognise.
const (
	EtherTypeIPv4   uint16 = 0x0800
	EtherTypeIPv6   uint16 = 0x86dd
	etherTypeVLAN   uint16 = 0x8100 // 802.1Q
	etherTypeQinQ   uint16 = 0x88a8 // 802.1ad
	etherTypeQinQv1 uint16 = 0x9100 // pre-standard QinQ
)

// linkKind is how a link type is turned into a Packet.
type linkKind uint8

const (
	linkUnsupported linkKind = iota
	linkEthernet
	linkRaw  // raw IP, version told by the first nibble
	linkIPv4 // raw IPv4 only
	linkIPv6 // raw IPv6 only
	linkSLL  // Linux cooked v1, 16-byte header
	linkSLL2 // Linux cooked v2, 20-byte header
	linkNull // BSD loopback, 4-byte address family
)

// Link-layer header type numbers (tcpdump.org/linktypes.html).
const (
	linktypeNull     = 0
	linktypeEthernet = 1
	dltRaw12         = 12 // DLT_RAW on most systems
	dltRaw14         = 14 // DLT_RAW on OpenBSD
	linktypeRaw      = 101
	linktypeLoop     = 108
	linktypeSLL      = 113
	linktypeIPv4     = 228
	linktypeIPv6     = 229
	linktypeSLL2     = 276
)

// linkKindOf maps a link type to its kind.
func linkKindOf(linkType uint32) linkKind {
	switch linkType {
	case linktypeEthernet:
		return linkEthernet
	case linktypeRaw, dltRaw12, dltRaw14:
		return linkRaw
	case linktypeIPv4:
		return linkIPv4
	case linktypeIPv6:
		return linkIPv6
	case linktypeSLL:
		return linkSLL
	case linktypeSLL2:
		return linkSLL2
	case linktypeNull, linktypeLoop:
		return linkNull
	}
	return linkUnsupported
}

// linkTypeNames names the link types people meet when they capture on the
// wrong interface; gopacket's table names the rest.
var linkTypeNames = map[uint32]string{
	6:   "IEEE 802.5 Token Ring",
	8:   "SLIP",
	9:   "PPP",
	10:  "FDDI",
	50:  "PPP in HDLC framing",
	51:  "PPPoE",
	104: "Cisco HDLC",
	105: "IEEE 802.11",
	107: "Frame Relay",
	119: "IEEE 802.11 with Prism header",
	127: "IEEE 802.11 with radiotap header",
	129: "ARCNET",
	138: "Apple IP over IEEE 1394",
	143: "DOCSIS",
	163: "IEEE 802.11 with AVS header",
	192: "IEEE 802.11 with PPI header",
	195: "IEEE 802.15.4",
	201: "Bluetooth HCI H4 with pseudo-header",
	220: "Linux USB",
	253: "Linux netlink",
	258: "Apple PKTAP",
	270: "Linux vsock",
}

// linkTypeName names a link type for an error message.
func linkTypeName(linkType uint32) string {
	if name, ok := linkTypeNames[linkType]; ok {
		return name
	}
	if linkType <= 0xffff {
		if name := layers.LinkType(linkType).String(); !strings.HasPrefix(name, "UnknownLinkType") && !strings.HasPrefix(name, "LinkType(") {
			return name
		}
	}
	return "unknown"
}

// unsupportedLinkType is the message for a link type the twin cannot parse.
func unsupportedLinkType(linkType uint32) string {
	return fmt.Sprintf("link type %d (%s) is not supported: capture on the Ethernet interface, or with tcpdump -i any",
		linkType, linkTypeName(linkType))
}

// BSD address family values of the null/loopback link types. AF_INET6
// differs between the BSDs, so all of them count.
const (
	bsdAFInet          = 2
	bsdAFInet6NetBSD   = 24 // also OpenBSD
	bsdAFInet6FreeBSD  = 28 // also DragonFly
	bsdAFInet6Darwin   = 30
	sllHeaderLen       = 16
	sll2HeaderLen      = 20
	nullHeaderLen      = 4
	ethernetMACsLen    = 12 // destination and source addresses
	sllProtocolOffset  = 14
	sllAddrOffset      = 6
	sll2AddrOffset     = 12
	sll2ProtocolOffset = 0
	sllHalenOffset     = 4
	sll2HalenOffset    = 11
	ethernetAddrLen    = 6
)

// decodeLink turns a captured frame of the given kind into the Packet's
// Data, Network and EtherType. It may rewrite the frame in place (Linux
// cooked headers become Ethernet-shaped when they carry a VLAN tag); data
// is always the reader's own buffer. A frame shorter than its link header
// is delivered as an empty Ethernet frame, so the consumer counts it as
// truncated instead of misreading it.
func decodeLink(p *Packet, kind linkKind, data []byte) {
	switch kind {
	case linkEthernet:
		p.Data, p.Network, p.EtherType = data, false, 0
	case linkRaw:
		p.Data, p.Network, p.EtherType = data, true, 0
		if len(data) > 0 {
			switch data[0] >> 4 {
			case 4:
				p.EtherType = EtherTypeIPv4
			case 6:
				p.EtherType = EtherTypeIPv6
			}
		}
	case linkIPv4:
		p.Data, p.Network, p.EtherType = data, true, EtherTypeIPv4
	case linkIPv6:
		p.Data, p.Network, p.EtherType = data, true, EtherTypeIPv6
	case linkSLL:
		if len(data) < sllHeaderLen {
			p.Data, p.Network, p.EtherType = data[:0], false, 0
			return
		}
		proto := binary.BigEndian.Uint16(data[sllProtocolOffset:])
		if isVLANType(proto) {
			// The payload starts with the tag's TCI and the inner EtherType,
			// as an Ethernet frame does after its TPID: put fake addresses
			// before the protocol field and hand out an Ethernet frame.
			// The destination is unknown; the source is the header's
			// address when it is a MAC.
			frame := data[sllProtocolOffset-ethernetMACsLen:]
			fakeMACs(frame, data[sllAddrOffset:], data[sllHalenOffset+1] == ethernetAddrLen && data[sllHalenOffset] == 0)
			p.Data, p.Network, p.EtherType = frame, false, 0
			return
		}
		p.Data, p.Network, p.EtherType = data[sllHeaderLen:], true, proto
	case linkSLL2:
		if len(data) < sll2HeaderLen {
			p.Data, p.Network, p.EtherType = data[:0], false, 0
			return
		}
		proto := binary.BigEndian.Uint16(data[sll2ProtocolOffset:])
		if isVLANType(proto) {
			frame := data[sll2HeaderLen-ethernetMACsLen-2:]
			fakeMACs(frame, data[sll2AddrOffset:], data[sll2HalenOffset] == ethernetAddrLen)
			binary.BigEndian.PutUint16(frame[ethernetMACsLen:], proto)
			p.Data, p.Network, p.EtherType = frame, false, 0
			return
		}
		p.Data, p.Network, p.EtherType = data[sll2HeaderLen:], true, proto
	case linkNull:
		if len(data) < nullHeaderLen {
			p.Data, p.Network, p.EtherType = data[:0], false, 0
			return
		}
		// The family is in the capturing host's byte order (DLT_NULL) or
		// in network order (LOOP, and some writers of NULL): a value above
		// 0xffff read one way is the small number read the other way.
		family := binary.LittleEndian.Uint32(data)
		if family > 0xffff {
			family = binary.BigEndian.Uint32(data)
		}
		p.Data, p.Network, p.EtherType = data[nullHeaderLen:], true, 0
		switch family {
		case bsdAFInet:
			p.EtherType = EtherTypeIPv4
		case bsdAFInet6NetBSD, bsdAFInet6FreeBSD, bsdAFInet6Darwin:
			p.EtherType = EtherTypeIPv6
		}
	}
}

func isVLANType(t uint16) bool {
	return t == etherTypeVLAN || t == etherTypeQinQ || t == etherTypeQinQv1
}

// fakeMACs writes a zero destination and the given source address into the
// first 12 bytes of frame. addr may overlap frame (copy moves correctly).
func fakeMACs(frame, addr []byte, isMAC bool) {
	var src [ethernetAddrLen]byte
	if isMAC {
		copy(src[:], addr)
	}
	copy(frame[ethernetAddrLen:ethernetMACsLen], src[:])
	clear(frame[:ethernetAddrLen])
}
