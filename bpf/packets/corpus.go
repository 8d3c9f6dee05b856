package packets

import (
	"encoding/binary"
	"net"

	"github.com/gopacket/gopacket/layers"
)

// Case is a named sequence of frames, run in order through one fresh program.
type Case struct {
	Name   string
	Frames [][]byte
}

// Hosts of the corpus: a node, the management node, a router between them.
var (
	Node    = Addr("10.0.1.11")
	MN      = Addr("10.0.0.1")
	Router  = Addr("10.0.1.254")
	Node6   = Addr("fd00:1::11")
	MN6     = Addr("fd00::1")
	Router6 = Addr("fd00:1::fe")
	NodeMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x00, 0x11}
)

// Truncate cuts a frame to n bytes.
func Truncate(f []byte, n int) []byte { return append([]byte(nil), f[:n]...) }

// Patch returns a copy of f with byte i set to v.
func Patch(f []byte, i int, v byte) []byte {
	out := append([]byte(nil), f...)
	out[i] = v
	return out
}

// RPCGetPortCall is a portmapper v2 GETPORT call asking for program prog
// over proto (6 or 17), with transaction id xid.
func RPCGetPortCall(xid, prog, proto uint32) []byte {
	b := make([]byte, 0, 56)
	for _, v := range []uint32{xid, 0, 2, 100000, 2, 3, 0, 0, 0, 0, prog, 3, proto, 0} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// RPCGetPortReply answers a GETPORT call with port.
func RPCGetPortReply(xid uint32, port uint16) []byte {
	b := make([]byte, 0, 28)
	for _, v := range []uint32{xid, 1, 0, 0, 0, 0, uint32(port)} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// Corpus is every shape of packet the parser must handle, as named
// sequences. Ports are the xCAT catalog's defaults.
func Corpus() []Case {
	syn := TCP(Node, MN, 40000, 3001, SYN, Options{Seq: 1000})
	synack := TCP(MN, Node, 3001, 40000, SYNACK, Options{Seq: 5000})
	tftpRRQ := UDP(Node, MN, 40001, 69, Options{Payload: []byte("\x00\x01pxelinux.0\x00octet\x00")})
	tftpData := UDP(MN, Node, 50000, 40001, Options{Payload: append([]byte{0, 3, 0, 1}, make([]byte, 512)...)})
	tftpAck := UDP(Node, MN, 40001, 50000, Options{Payload: []byte{0, 4, 0, 1}})
	snmpGet := UDP(Node, MN, 40002, 161, Options{Payload: []byte("get")})
	status := TCP(Node, MN, 40003, 3002, SYN, Options{Seq: 77})
	status6 := TCP(Node6, MN6, 40003, 3002, SYN, Options{Seq: 77})
	tftp6 := UDP(Node6, MN6, 40001, 69, Options{Payload: []byte("\x00\x01x\x00octet\x00")})
	ipmiReq := UDP(MN, Addr("10.0.2.5"), 40004, 623, Options{Payload: make([]byte, 16)})

	cases := []Case{
		{"tcp-syn", [][]byte{syn}},
		{"tcp-syn-retransmit", [][]byte{syn, syn, TCP(Node, MN, 40000, 3001, SYN, Options{Seq: 2000})}},
		{"tcp-handshake", [][]byte{syn, synack, TCP(Node, MN, 40000, 3001, ACK, Options{Seq: 1001})}},
		{"tcp-reset", [][]byte{syn, TCP(MN, Node, 3001, 40000, RSTACK, Options{Ack: 1001})}},
		// The server resets an old connection (port 39000) while the
		// client's new SYN waits, then one acknowledging the wrong
		// sequence: neither answers the SYN.
		{"tcp-reset-other-connection", [][]byte{
			syn,
			TCP(MN, Node, 3001, 39000, RSTACK, Options{Ack: 1001}),
			TCP(MN, Node, 3001, 40000, RSTACK, Options{Ack: 7}),
			TCP(MN, Node, 3001, 40000, RST, Options{}),
		}},
		{"tcp-reset-syn-with-data", [][]byte{
			TCP(Node, MN, 40000, 3001, SYN, Options{Seq: 1000, Payload: make([]byte, 100)}),
			TCP(MN, Node, 3001, 40000, RSTACK, Options{Ack: 1101}),
		}},
		{"tcp-reset-of-no-exchange", [][]byte{TCP(MN, Node, 3001, 40000, RSTACK, Options{Ack: 1001})}},
		{"tcp-reset-from-client", [][]byte{TCP(Node, MN, 40000, 3001, RST, Options{})}},
		{"tcp-established-data", [][]byte{
			TCP(Node, MN, 40000, 80, PSH|ACK, Options{Payload: make([]byte, 200)}),
			TCP(MN, Node, 80, 40000, PSH|ACK, Options{Payload: make([]byte, 1400)}),
		}},
		{"tcp-ipv6-handshake", [][]byte{status6, TCP(MN6, Node6, 3002, 40003, SYNACK, Options{})}},
		{"tcp-ssh-rsync-http", [][]byte{
			TCP(Node, MN, 40010, 22, SYN, Options{Seq: 1}), TCP(MN, Node, 22, 40010, SYNACK, Options{}),
			TCP(Node, MN, 40011, 873, SYN, Options{Seq: 1}), TCP(MN, Node, 873, 40011, SYNACK, Options{}),
			TCP(Node, MN, 40012, 80, SYN, Options{Seq: 1}), TCP(MN, Node, 80, 40012, RSTACK, Options{Ack: 2}),
		}},
		{"rsh-vs-syslog", [][]byte{
			TCP(Node, MN, 1022, 514, SYN, Options{Seq: 1}),
			TCP(Node, MN, 40020, 514, SYN, Options{Seq: 1}),
		}},
		{"udp-request-reply", [][]byte{ipmiReq, UDP(Addr("10.0.2.5"), MN, 623, 40004, Options{Payload: make([]byte, 16)})}},
		{"udp-one-way-syslog", [][]byte{
			UDP(Node, MN, 40030, 514, Options{Payload: []byte("<13>node: hello")}),
			UDP(Node, MN, 40030, 514, Options{Payload: []byte("<13>node: again")}),
		}},
		{"tftp-ephemeral", [][]byte{tftpRRQ, tftpData, tftpAck}},
		{"tftp-ipv6-no-answer", [][]byte{tftp6, tftp6}},
		{"tftp-orphaned-transfer", [][]byte{tftpAck, tftpData, tftpAck}},
		{"tftp-answer-refused", [][]byte{tftpRRQ, tftpData, Unreachable(Router, 13, tftpData)}},
		{"dhcp-discover-offer", [][]byte{
			DHCP(Addr("0.0.0.0"), Addr("255.255.255.255"), 68, 67, 1, 0xfeed, NodeMAC),
			DHCP(MN, Addr("255.255.255.255"), 67, 68, 2, 0xfeed, NodeMAC),
			DHCP(MN, Addr("255.255.255.255"), 67, 68, 2, 0xbeef, NodeMAC),
		}},
		{"dhcp-relay", [][]byte{
			DHCP(Router, MN, 67, 67, 1, 0x77, NodeMAC),
			DHCP(MN, Router, 67, 67, 2, 0x77, NodeMAC),
		}},
		{"dhcp-answer-unreachable", [][]byte{
			Unreachable(Node, 3, DHCP(Router, Node, 67, 68, 2, 0x78, NodeMAC)),
		}},
		{"dhcp-truncated", [][]byte{Truncate(DHCP(Addr("0.0.0.0"), Addr("255.255.255.255"), 68, 67, 1, 1, NodeMAC), 14+20+8+20)}},
		// The shortest BOOTP prefix that pairs (op .. chaddr, 34 bytes)
		// counts; one byte less is truncated.
		{"dhcp-pair-prefix", [][]byte{
			Truncate(DHCP(Addr("0.0.0.0"), Addr("255.255.255.255"), 68, 67, 1, 2, NodeMAC), 14+20+8+34),
			Truncate(DHCP(Addr("0.0.0.0"), Addr("255.255.255.255"), 68, 67, 1, 3, NodeMAC), 14+20+8+33),
		}},
		{"icmp-port-unreachable", [][]byte{snmpGet, Unreachable(MN, 3, snmpGet)}},
		{"icmp-admin-prohibited", [][]byte{
			status, Unreachable(Router, 13, status), Unreachable(Router, 9, status), Unreachable(Router, 10, status),
		}},
		{"icmp-host-unreachable", [][]byte{status, Unreachable(Router, 1, status)}},
		{"icmp-quoting-answer", [][]byte{synack, Unreachable(Router, 13, synack)}},
		{"icmp-unmatched", [][]byte{Unreachable(Router, 3, UDP(Node, MN, 40000, 9999, Options{}))}},
		{"icmp6-port-unreachable", [][]byte{tftp6, Unreachable(MN6, 4, tftp6)}},
		{"icmp6-admin-prohibited", [][]byte{status6, Unreachable(Router6, 1, status6)}},
		{"icmp6-other", [][]byte{status6, Unreachable(Router6, 3, status6)}},
		{"icmp-echo", [][]byte{Echo(Node, MN)}},
		{"vlan", [][]byte{TCP(Node, MN, 40000, 3001, SYN, Options{VLANs: []VLAN{{ID: 100}}})}},
		{"qinq", [][]byte{TCP(Node, MN, 40000, 3001, SYN, Options{VLANs: []VLAN{{ID: 10, TPID: layers.EthernetTypeQinQ}, {ID: 100}}})}},
		{"vlan-too-deep", [][]byte{TCP(Node, MN, 40000, 3001, SYN, Options{VLANs: []VLAN{{ID: 10, TPID: layers.EthernetTypeQinQ}, {ID: 20}, {ID: 30}}})}},
		{"ipv4-options", [][]byte{
			TCP(Node, MN, 40000, 3001, SYN, Options{IPv4Options: 1}),
			TCP(Node, MN, 40001, 3001, SYN, Options{IPv4Options: 10}),
		}},
		{"ipv4-fragments", [][]byte{
			UDP(Node, MN, 40000, 69, Options{MoreFragments: true, Payload: make([]byte, 64)}),
			UDP(Node, MN, 40000, 69, Options{FragOffset: 9, Payload: make([]byte, 64)}),
		}},
		{"ipv6-fragments", [][]byte{
			UDP(Node6, MN6, 40000, 69, Options{MoreFragments: true, Payload: make([]byte, 64)}),
			UDP(Node6, MN6, 40000, 69, Options{FragOffset: 9, Payload: make([]byte, 64)}),
		}},
		{"ipv6-ext-chain", [][]byte{UDP(Node6, MN6, 40000, 69, Options{IPv6Ext: []layers.IPProtocol{
			layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination,
		}, MoreFragments: true})}},
		{"ipv6-ext-too-deep", [][]byte{UDP(Node6, MN6, 40000, 69, Options{IPv6Ext: []layers.IPProtocol{
			layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Destination, layers.IPProtocolIPv6Routing,
			layers.IPProtocolIPv6Destination, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination,
			layers.IPProtocolIPv6Destination,
		}})}},
		{"non-catalog-tcp-answer", [][]byte{
			TCP(Node, MN, 40000, 8080, SYN, Options{}), TCP(MN, Node, 8080, 40000, SYNACK, Options{}),
		}},
		{"non-catalog-udp-answer", [][]byte{
			UDP(Node, MN, 40000, 5353, Options{}), UDP(MN, Node, 5353, 40000, Options{}),
		}},
		// The kernel keeps both ways between two ends in one entry: an
		// answer either way, and a port that sends to itself.
		{"non-catalog-udp-both-ways", [][]byte{
			UDP(MN, Node, 5353, 40000, Options{}), UDP(Node, MN, 40000, 5353, Options{}),
			UDP(Node, MN, 40000, 5353, Options{}), UDP(MN, Node, 5353, 40000, Options{}),
		}},
		{"non-catalog-udp-to-itself", [][]byte{
			UDP(Node, Node, 7001, 7001, Options{}), UDP(Node, Node, 7001, 7001, Options{}),
			UDP(Node, Node, 7001, 7002, Options{}), UDP(Node, Node, 7002, 7001, Options{}),
		}},
		{"non-catalog-closed", [][]byte{
			TCP(Node, MN, 40000, 9999, SYN, Options{}), TCP(MN, Node, 9999, 40000, RSTACK, Options{}),
		}},
		{"rpcbind-getport", [][]byte{
			UDP(Node, MN, 700, 111, Options{Payload: RPCGetPortCall(0x42, 100005, 17)}),
			UDP(MN, Node, 111, 700, Options{Payload: RPCGetPortReply(0x42, 20048)}),
		}},
		{"not-ip", [][]byte{ARP(), GRE(Node, MN)}},
	}

	// Headers cut short at every layer, and bogus header lengths.
	ihlTooSmall := Patch(syn, 14, 0x44)
	tcpDoff := Patch(syn, 14+20+12, 0x40)
	udpLen := append([]byte(nil), snmpGet...)
	binary.BigEndian.PutUint16(udpLen[14+20+4:], 4)
	notV4 := Patch(syn, 14, 0x65)
	cases = append(cases,
		Case{"runt", [][]byte{Truncate(syn, 10), {}}},
		Case{"truncated-vlan", [][]byte{Truncate(TCP(Node, MN, 40000, 3001, SYN, Options{VLANs: []VLAN{{ID: 100}}}), 16)}},
		Case{"truncated-ipv4", [][]byte{Truncate(syn, 14+19), Truncate(TCP(Node, MN, 40000, 3001, SYN, Options{IPv4Options: 2}), 14+24)}},
		Case{"truncated-ipv6", [][]byte{Truncate(status6, 14+39)}},
		Case{"truncated-ipv6-ext", [][]byte{Truncate(UDP(Node6, MN6, 40000, 69, Options{IPv6Ext: []layers.IPProtocol{layers.IPProtocolIPv6HopByHop}}), 14+40+1)}},
		Case{"truncated-tcp", [][]byte{Truncate(syn, 14+20+19)}},
		Case{"truncated-udp", [][]byte{Truncate(snmpGet, 14+20+7)}},
		Case{"truncated-icmp", [][]byte{Truncate(Unreachable(MN, 3, snmpGet), 14+20+7)}},
		Case{"truncated-icmp-inner", [][]byte{
			Truncate(Unreachable(MN, 3, snmpGet), 14+20+8+19),
			Truncate(Unreachable(MN, 3, snmpGet), 14+20+8+20+3),
		}},
		Case{"bad-ihl", [][]byte{ihlTooSmall, notV4}},
		Case{"bad-tcp-data-offset", [][]byte{tcpDoff}},
		Case{"bad-udp-length", [][]byte{udpLen}},
	)
	return cases
}
