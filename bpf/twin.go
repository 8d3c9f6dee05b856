package bpf

import (
	"encoding/binary"
	"net/netip"
	"time"

	"portwatch/catalog"
)

// Twin is the Go twin of portwatch.c: the same parser and the same counting
// over the same generated key and value types, for captures (pcap files,
// tcpdump on AIX, AF_PACKET). Each function below mirrors the C function of
// the same name; keep them in step (the differential test checks it).
//
// A Twin is not safe for concurrent use.
type Twin struct {
	ports    [PortSlots]PortwatchPortEntry
	services [catalog.MaxServiceID + 1]PortwatchServiceCounters
	parse    PortwatchParseCounters
	// The tables key as the kernel's maps do (see exchangeTail):
	// exchanges and ephemeral by client and server, unexpected by server,
	// flows by source and destination (the kernel keeps the two ways of a
	// pair of ends in one entry; what is counted is the same).
	exchanges  boundedMap[PortwatchExchangeValue]
	ephemeral  boundedMap[ephemeralValue]
	unexpected boundedMap[PortwatchUnexpectedValue]
	flows      boundedMap[PortwatchFlowValue]
	// ephemeralPorts has a bit for every client port that a remembered
	// TFTP-style request came from (never cleared: a stale bit only costs
	// a map lookup). Most UDP on no catalog port has none, and skips the
	// two lookups of the ephemeral table. The kernel keeps the same index
	// (ephemeral_ports, a byte per port so that setting one needs no
	// atomic); the counts are the same.
	ephemeralPorts [65536 / 64]uint64

	// learn receives the UDP payload of rpcbind packets (what the kernel
	// sends through learn_events).
	learn func(src, dst netip.Addr, sport, dport uint16, payload []byte)

	// The packet being parsed. src and dst are filled by loadAddrs, only
	// for packets that change state.
	now      uint64
	len      uint64
	l3       []byte // the IPv4 or IPv6 header
	v6       bool
	src, dst addr
	lastTime time.Time
}

// TwinConfig bounds the twin's tables like the kernel's maps.
type TwinConfig struct {
	MaxExchanges  int
	MaxEphemeral  int
	MaxUnexpected int
	MaxFlows      int
}

// DefaultTwinConfig has the C program's default map sizes.
var DefaultTwinConfig = TwinConfig{MaxExchanges: 65536, MaxEphemeral: 16384, MaxUnexpected: 4096, MaxFlows: 16384}

// NewTwin returns a twin that counts against cat.
func NewTwin(cat *catalog.Catalog, cfg TwinConfig) *Twin {
	if cfg.MaxExchanges <= 0 {
		cfg.MaxExchanges = DefaultTwinConfig.MaxExchanges
	}
	if cfg.MaxEphemeral <= 0 {
		cfg.MaxEphemeral = DefaultTwinConfig.MaxEphemeral
	}
	if cfg.MaxUnexpected <= 0 {
		cfg.MaxUnexpected = DefaultTwinConfig.MaxUnexpected
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultTwinConfig.MaxFlows
	}
	t := &Twin{
		exchanges:  newBoundedMap(cfg.MaxExchanges, func(v *PortwatchExchangeValue) uint64 { return v.LastSeen }),
		ephemeral:  newBoundedMap(cfg.MaxEphemeral, func(v *ephemeralValue) uint64 { return v.seen }),
		unexpected: newBoundedMap(cfg.MaxUnexpected, func(v *PortwatchUnexpectedValue) uint64 { return v.LastSeen }),
		flows:      newBoundedMap(cfg.MaxFlows, func(v *PortwatchFlowValue) uint64 { return v.Seen }),
	}
	t.SetCatalog(cat)
	return t
}

// SetCatalog replaces the port map, keeping every counter.
func (t *Twin) SetCatalog(cat *catalog.Catalog) {
	t.ports = [PortSlots]PortwatchPortEntry{}
	for _, e := range PortMap(cat) {
		t.ports[e.Index] = e.Value
	}
}

// OnLearn sets the function that receives rpcbind datagrams, from which the
// dynamic ports are learned.
func (t *Twin) OnLearn(f func(src, dst netip.Addr, sport, dport uint16, payload []byte)) {
	t.learn = f
}

// Ethernet counts a frame that starts at its Ethernet header, as XDP and TC
// see it. wireLen is its length on the wire; ts its time.
func (t *Twin) Ethernet(frame []byte, wireLen int, ts time.Time) {
	if !t.begin(wireLen, ts) {
		return
	}
	if len(frame) < 14 {
		t.count(PortwatchParseCounterPC_TRUNC_ETHERNET)
		return
	}
	proto := binary.BigEndian.Uint16(frame[12:14])
	pos := 14
	tags := 0
	for range int(VLANMaxDepth) {
		if proto != etherTypeVLAN && proto != etherTypeQinQ {
			break
		}
		if len(frame) < pos+4 {
			t.count(PortwatchParseCounterPC_TRUNC_VLAN)
			return
		}
		proto = binary.BigEndian.Uint16(frame[pos+2 : pos+4])
		pos += 4
		tags++
	}
	if tags == 1 {
		t.count(PortwatchParseCounterPC_VLAN)
	} else if tags == 2 {
		t.count(PortwatchParseCounterPC_QINQ)
	}
	if proto == etherTypeVLAN || proto == etherTypeQinQ {
		t.count(PortwatchParseCounterPC_VLAN_TOO_DEEP)
		return
	}
	t.network(proto, frame[pos:])
}

// Network counts a packet that starts at its network header (raw IP, Linux
// SLL), with etherType saying which.
func (t *Twin) Network(etherType uint16, pkt []byte, wireLen int, ts time.Time) {
	if !t.begin(wireLen, ts) {
		return
	}
	t.network(etherType, pkt)
}

// VLANMaxDepth and IPv6ExtMax are the C program's bounds.
const (
	VLANMaxDepth = 2
	IPv6ExtMax   = 6
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8

	ipProtoHopOpts  = 0
	ipProtoICMP     = 1
	ipProtoTCP      = 6
	ipProtoUDP      = 17
	ipProtoRouting  = 43
	ipProtoFragment = 44
	ipProtoICMPv6   = 58
	ipProtoDstOpts  = 60

	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
	// synDataMax is the most data a SYN can carry (SYN_DATA_MAX).
	synDataMax = 0xffff

	tftpData  = 3
	tftpError = 5

	bootpRequest = 1
	bootpReply   = 2
	// bootpPairBytes is op .. chaddr[6], the shortest BOOTP prefix that pairs.
	bootpPairBytes = 34
)

func (t *Twin) begin(wireLen int, ts time.Time) bool {
	t.now = uint64(ts.UnixNano())
	t.lastTime = ts
	t.len = uint64(wireLen)
	t.count(PortwatchParseCounterPC_PACKETS)
	return true
}

func (t *Twin) count(c PortwatchParseCounter) { t.parse.Count[c]++ }

func (t *Twin) network(proto uint16, pkt []byte) {
	switch proto {
	case etherTypeIPv4:
		t.onIPv4(pkt)
	case etherTypeIPv6:
		t.onIPv6(pkt)
	default:
		t.count(PortwatchParseCounterPC_NON_IP)
	}
}

func (t *Twin) onIPv4(p []byte) {
	if len(p) < 20 {
		t.count(PortwatchParseCounterPC_TRUNC_IPV4)
		return
	}
	version, ihl := p[0]>>4, int(p[0]&0x0f)
	if version != 4 || ihl < 5 {
		t.count(PortwatchParseCounterPC_BAD_IPV4HEADER)
		return
	}
	hlen := ihl * 4
	if hlen > 20 {
		t.count(PortwatchParseCounterPC_IPV4OPTIONS)
	}
	if len(p) < hlen {
		t.count(PortwatchParseCounterPC_TRUNC_IPV4)
		return
	}
	frag := binary.BigEndian.Uint16(p[6:8])
	if frag&0x1fff != 0 {
		t.count(PortwatchParseCounterPC_FRAG_LATER)
		return
	}
	if frag&0x2000 != 0 {
		t.count(PortwatchParseCounterPC_FRAG_FIRST)
	}
	t.l3, t.v6 = p, false
	t.onL4(p[9], p[hlen:], false)
}

func isIPv6Ext(next uint8) bool {
	return next == ipProtoHopOpts || next == ipProtoRouting || next == ipProtoDstOpts || next == ipProtoFragment
}

func (t *Twin) onIPv6(p []byte) {
	if len(p) < 40 {
		t.count(PortwatchParseCounterPC_TRUNC_IPV6)
		return
	}
	next := p[6]
	pos := 40
	walked := false
	for range IPv6ExtMax {
		if next == ipProtoHopOpts || next == ipProtoRouting || next == ipProtoDstOpts {
			// struct ipv6_opt_hdr is two bytes: next header, length.
			if len(p) < pos+2 {
				t.count(PortwatchParseCounterPC_TRUNC_IPV6EXT)
				return
			}
			next = p[pos]
			pos += (int(p[pos+1]) + 1) * 8
			walked = true
		} else if next == ipProtoFragment {
			if len(p) < pos+8 {
				t.count(PortwatchParseCounterPC_TRUNC_IPV6EXT)
				return
			}
			walked = true
			off := binary.BigEndian.Uint16(p[pos+2 : pos+4])
			if off&0xfff8 != 0 {
				t.count(PortwatchParseCounterPC_IPV6EXT_HEADERS)
				t.count(PortwatchParseCounterPC_FRAG_LATER)
				return
			}
			if off&1 != 0 {
				t.count(PortwatchParseCounterPC_FRAG_FIRST)
			}
			next = p[pos]
			pos += 8
		} else {
			break
		}
	}
	if walked {
		t.count(PortwatchParseCounterPC_IPV6EXT_HEADERS)
	}
	if isIPv6Ext(next) {
		t.count(PortwatchParseCounterPC_IPV6EXT_TOO_DEEP)
		return
	}
	t.l3, t.v6 = p, true
	// An extension header may claim more than the packet holds: the L4
	// parsers then see nothing and count it truncated, as the C does.
	var l4 []byte
	if pos <= len(p) {
		l4 = p[pos:]
	}
	t.onL4(next, l4, true)
}

func (t *Twin) onL4(proto uint8, l4 []byte, v6 bool) {
	switch {
	case proto == ipProtoTCP:
		if len(l4) < 20 {
			t.count(PortwatchParseCounterPC_TRUNC_TCP)
			return
		}
		if l4[12]>>4 < 5 {
			t.count(PortwatchParseCounterPC_BAD_TCP_HEADER)
			return
		}
		t.onTCP(l4)
	case proto == ipProtoUDP:
		if len(l4) < 8 {
			t.count(PortwatchParseCounterPC_TRUNC_UDP)
			return
		}
		if binary.BigEndian.Uint16(l4[4:6]) < 8 {
			t.count(PortwatchParseCounterPC_BAD_UDP_LENGTH)
			return
		}
		t.onUDP(l4)
	case proto == ipProtoICMP && !v6:
		t.onICMP4(l4)
	case proto == ipProtoICMPv6 && v6:
		t.onICMP6(l4)
	default:
		t.count(PortwatchParseCounterPC_OTHER_L4)
	}
}

// loadAddrs copies the packet's addresses into t.src and t.dst.
func (t *Twin) loadAddrs() {
	if t.v6 {
		t.src = addrFrom16(t.l3[8:24])
		t.dst = addrFrom16(t.l3[24:40])
	} else {
		t.src = addrFrom4(t.l3[12:16])
		t.dst = addrFrom4(t.l3[16:20])
	}
}

type direction uint8

const (
	dirNone direction = iota
	dirRequest
	dirReply
)

type resolved struct {
	service uint16
	flags   PortwatchPortFlags
	dir     direction
}

func (t *Twin) portLookup(slot PortwatchProtoSlot, port uint16) *PortwatchPortEntry {
	return &t.ports[uint32(slot)<<16|uint32(port)]
}

func serving(pe *PortwatchPortEntry, clientPort uint16) uint16 {
	if PortwatchPortFlags(pe.Flags)&PortwatchPortFlagsPORT_CLIENT_PORT != 0 {
		return 0
	}
	if clientPort != 0 && clientPort < 1024 {
		return pe.PrivService
	}
	return pe.Service
}

// resolve looks the lower port up first, as the C does.
func (t *Twin) resolve(slot PortwatchProtoSlot, sport, dport uint16) resolved {
	if dport <= sport {
		if r, ok := t.asRequest(slot, sport, dport); ok {
			return r
		}
		r, _ := t.asReply(slot, sport, dport)
		return r
	}
	if r, ok := t.asReply(slot, sport, dport); ok {
		return r
	}
	r, _ := t.asRequest(slot, sport, dport)
	return r
}

func (t *Twin) asRequest(slot PortwatchProtoSlot, sport, dport uint16) (resolved, bool) {
	pe := t.portLookup(slot, dport)
	if s := serving(pe, sport); s != 0 {
		return resolved{service: s, flags: PortwatchPortFlags(pe.Flags), dir: dirRequest}, true
	}
	return resolved{}, false
}

func (t *Twin) asReply(slot PortwatchProtoSlot, sport, dport uint16) (resolved, bool) {
	pe := t.portLookup(slot, sport)
	if s := serving(pe, dport); s != 0 {
		return resolved{service: s, flags: PortwatchPortFlags(pe.Flags), dir: dirReply}, true
	}
	return resolved{}, false
}

func (t *Twin) countService(service uint16, dir direction) *PortwatchServiceCounters {
	if int(service) >= len(t.services) {
		return nil
	}
	sc := &t.services[service]
	sc.Packets++
	sc.Bytes += t.len
	switch dir {
	case dirRequest:
		sc.Requests++
	case dirReply:
		sc.Replies++
	}
	return sc
}

// The tables' keys are the C structs': exchange_key is (client, server,
// exchangeTail), ephemeral_key (client, server, client port), unexpected_key
// (server, zero, unexpectedTail), flow_key (source, destination, flowTail).

func exchangeTail(service uint16, kind PortwatchExchangeKind) uint64 {
	return uint64(service) | uint64(kind)<<16
}

func unexpectedTail(port uint16, proto uint8) uint64 {
	return uint64(port) | uint64(proto)<<16
}

func flowTail(sport, dport uint16) uint64 {
	return uint64(sport) | uint64(dport)<<16
}

// ephemeralValue is struct ephemeral_value, and where the exchange of the
// request was last found in the exchanges table: the transfer that follows
// finds it again without a hash.
type ephemeralValue struct {
	seen     uint64 // the last packet of the request or its transfer
	service  uint16
	exchange uint32 // a position in t.exchanges, checked against the key
}

// exchangeTouch finds or creates an exchange; hint is where it may be, and
// is updated to where it is.
func (t *Twin) exchangeTouch(client, server addr, tail uint64, hint *uint32) (v *PortwatchExchangeValue, created bool) {
	if i := t.exchanges.findFrom(client, server, tail, *hint); i >= 0 {
		*hint = uint32(i)
		v = t.exchanges.at(i)
		v.LastSeen = t.now
		return v, false
	}
	i := t.exchanges.insert(client, server, tail, PortwatchExchangeValue{FirstSeen: t.now, LastSeen: t.now})
	if i < 0 {
		t.count(PortwatchParseCounterPC_MAP_UPDATE_FAILED)
		return nil, false
	}
	*hint = uint32(i)
	t.count(PortwatchParseCounterPC_EXCHANGE_NEW)
	return t.exchanges.at(i), true
}

func (t *Twin) exchangeIP(service uint16, client, server addr) *PortwatchExchangeValue {
	var hint uint32
	return t.exchangeIPFrom(service, client, server, &hint)
}

func (t *Twin) exchangeIPFrom(service uint16, client, server addr, hint *uint32) *PortwatchExchangeValue {
	v, _ := t.exchangeTouch(client, server, exchangeTail(service, PortwatchExchangeKindEXCHANGE_IP), hint)
	return v
}

func (t *Twin) recordUnexpected(proto uint8, server addr, port uint16, client addr) {
	tail := unexpectedTail(port, proto)
	v := t.unexpected.get(server, addr{}, tail)
	if v == nil {
		i := t.unexpected.insert(server, addr{}, tail, PortwatchUnexpectedValue{FirstSeen: t.now})
		if i < 0 {
			t.count(PortwatchParseCounterPC_MAP_UPDATE_FAILED)
			return
		}
		v = t.unexpected.at(i)
		t.count(PortwatchParseCounterPC_UNEXPECTED_NEW)
	}
	v.LastSeen = t.now
	v.Answers++
	v.Client = client.bytes()
}

func (t *Twin) onTCP(th []byte) {
	sport := binary.BigEndian.Uint16(th[0:2])
	dport := binary.BigEndian.Uint16(th[2:4])
	flags := th[13]

	// The commonest packet by far, an established connection's segment,
	// changes no exchange: count it by service and leave.
	if flags&(tcpSYN|tcpRST) == 0 {
		r := t.resolve(PortwatchProtoSlotSLOT_TCP, sport, dport)
		t.countService(r.service, r.dir)
		if r.dir == dirNone {
			t.count(PortwatchParseCounterPC_NON_CATALOG)
		}
		return
	}

	t.loadAddrs()
	syn, ack, rst := flags&tcpSYN != 0, flags&tcpACK != 0, flags&tcpRST != 0
	var r resolved
	switch {
	case syn && !ack:
		r.service = serving(t.portLookup(PortwatchProtoSlotSLOT_TCP, dport), sport)
		if r.service != 0 {
			r.dir = dirRequest
		}
	case syn && ack:
		r.service = serving(t.portLookup(PortwatchProtoSlotSLOT_TCP, sport), dport)
		if r.service != 0 {
			r.dir = dirReply
		}
	default:
		r = t.resolve(PortwatchProtoSlotSLOT_TCP, sport, dport)
	}

	if sc := t.countService(r.service, r.dir); sc != nil {
		if syn && !ack {
			sc.Syn++
		}
		if syn && ack {
			sc.SynAck++
		}
		if rst {
			sc.Rst++
		}
	}

	if r.dir == dirNone {
		t.count(PortwatchParseCounterPC_NON_CATALOG)
		if syn && ack {
			t.recordUnexpected(ipProtoTCP, t.src, sport, t.dst)
		}
		return
	}

	switch {
	case syn && !ack:
		v := t.exchangeIP(r.service, t.src, t.dst)
		if v == nil {
			return
		}
		seq := binary.BigEndian.Uint32(th[4:8])
		if v.LastPort == sport && v.LastSeq == seq && (v.Attempts|v.Retransmits) != 0 {
			v.Retransmits++
		} else {
			v.Attempts++
			v.LastPort = sport
			v.LastSeq = seq
		}
	case syn && ack:
		if v := t.exchangeIP(r.service, t.dst, t.src); v != nil {
			v.Answers++
		}
	case rst && ack && r.dir == dirReply:
		// Only the answer to the last SYN: to its port, acknowledging
		// its sequence number and any data it carried.
		v := t.exchanges.get(t.dst, t.src, exchangeTail(r.service, PortwatchExchangeKindEXCHANGE_IP))
		if v != nil && v.LastPort == dport && binary.BigEndian.Uint32(th[8:12])-v.LastSeq-1 <= synDataMax &&
			v.Attempts|v.Retransmits != 0 {
			v.LastSeen = t.now
			v.Resets++
		}
	}
}

func (t *Twin) onDHCP(payload []byte, service uint16, portDir direction) {
	if len(payload) < bootpPairBytes {
		t.countService(service, portDir)
		t.count(PortwatchParseCounterPC_TRUNC_DHCP)
		return
	}
	dir := dirNone
	switch payload[0] {
	case bootpRequest:
		dir = dirRequest
	case bootpReply:
		dir = dirReply
	}
	t.countService(service, dir)
	if dir == dirNone {
		return
	}
	// The client is its hardware address, chaddr[6], in the first bytes
	// of the key's client address.
	chaddr := payload[28:34]
	mac := addr{hi: uint64(binary.LittleEndian.Uint32(chaddr[0:4])) | uint64(binary.LittleEndian.Uint16(chaddr[4:6]))<<32}
	var hint uint32
	v, created := t.exchangeTouch(mac, addr{}, exchangeTail(service, PortwatchExchangeKindEXCHANGE_DHCP), &hint)
	if v == nil {
		return
	}
	xid := binary.BigEndian.Uint32(payload[4:8])
	if dir == dirRequest {
		v.Attempts++
		v.LastSeq = xid
	} else if created || v.LastSeq == xid {
		v.Answers++
	}
}

// onEphemeral handles an answer from a TFTP-style server's new port, or the
// client's packets back to it; false when the datagram is neither. A client
// port with no bit in ephemeralPorts is in no key: its lookup is skipped.
func (t *Twin) onEphemeral(sport, dport uint16) bool {
	if t.hasEphemeralPort(dport) {
		if service, v, ok := t.ephemeralExchange(t.dst, t.src, dport); ok {
			t.countService(service, dirReply)
			if v != nil {
				v.Answers++
			}
			return true
		}
	}
	if t.hasEphemeralPort(sport) {
		if service, v, ok := t.ephemeralExchange(t.src, t.dst, sport); ok {
			t.countService(service, dirNone)
			if v != nil {
				v.Followups++
			}
			return true
		}
	}
	return false
}

// ephemeralExchange is ephemeral_exchange: the remembered request of client
// (from port) to a TFTP-style server, refreshed, with its service and its
// exchange (nil if the exchange could not be made); ok is false when no
// such request is remembered.
func (t *Twin) ephemeralExchange(client, server addr, port uint16) (service uint16, v *PortwatchExchangeValue, ok bool) {
	ev := t.ephemeral.get(client, server, uint64(port))
	if ev == nil {
		return 0, nil, false
	}
	ev.seen = t.now
	return ev.service, t.exchangeIPFrom(ev.service, client, server, &ev.exchange), true
}

func (t *Twin) hasEphemeralPort(port uint16) bool {
	return t.ephemeralPorts[port/64]&(1<<(port%64)) != 0
}

func (t *Twin) onUDPOther(uh []byte, sport, dport uint16) {
	if t.onEphemeral(sport, dport) {
		return
	}

	t.countService(0, dirNone)
	t.count(PortwatchParseCounterPC_NON_CATALOG)

	// A TFTP transfer whose request was not seen: its DATA, ACK and ERROR
	// datagrams never show a port open (see the C).
	if len(uh) >= 10 && uh[8] == 0 && uh[9] >= tftpData && uh[9] <= tftpError {
		return
	}

	if f := t.flows.get(t.dst, t.src, flowTail(dport, sport)); f != nil {
		f.Seen = t.now
		t.recordUnexpected(ipProtoUDP, t.src, sport, t.dst)
		return
	}
	fwd := flowTail(sport, dport)
	if f := t.flows.get(t.src, t.dst, fwd); f != nil {
		f.Seen = t.now
		return
	}
	if t.flows.insert(t.src, t.dst, fwd, PortwatchFlowValue{Seen: t.now}) >= 0 {
		t.count(PortwatchParseCounterPC_FLOW_NEW)
	} else {
		t.count(PortwatchParseCounterPC_MAP_UPDATE_FAILED)
	}
}

func (t *Twin) onUDP(uh []byte) {
	sport := binary.BigEndian.Uint16(uh[0:2])
	dport := binary.BigEndian.Uint16(uh[2:4])
	r := t.resolve(PortwatchProtoSlotSLOT_UDP, sport, dport)

	t.loadAddrs()
	if r.dir == dirNone {
		t.onUDPOther(uh, sport, dport)
		return
	}
	if r.flags&PortwatchPortFlagsPORT_BROADCAST != 0 {
		t.onDHCP(uh[8:], r.service, r.dir)
		return
	}
	t.countService(r.service, r.dir)
	if r.flags&PortwatchPortFlagsPORT_PORTMAPPER != 0 && t.learn != nil {
		t.learn(Addr(t.src.bytes()), Addr(t.dst.bytes()), sport, dport, udpPayload(uh))
	}

	if r.dir == dirRequest {
		var hint uint32
		if v := t.exchangeIPFrom(r.service, t.src, t.dst, &hint); v != nil {
			v.Attempts++
		}
		if r.flags&PortwatchPortFlagsPORT_EPHEMERAL_REPLY != 0 {
			if ev := t.ephemeral.get(t.src, t.dst, uint64(sport)); ev != nil {
				ev.seen, ev.exchange = t.now, hint
			} else {
				if t.ephemeral.insert(t.src, t.dst, uint64(sport), ephemeralValue{seen: t.now, service: r.service, exchange: hint}) >= 0 {
					t.ephemeralPorts[sport/64] |= 1 << (sport % 64)
					t.count(PortwatchParseCounterPC_EPHEMERAL_NEW)
				} else {
					t.count(PortwatchParseCounterPC_MAP_UPDATE_FAILED)
				}
			}
		}
	} else if v := t.exchangeIP(r.service, t.dst, t.src); v != nil {
		v.Answers++
	}
}

// udpPayload is the datagram's payload, bounded by the UDP length field.
func udpPayload(uh []byte) []byte {
	n := int(binary.BigEndian.Uint16(uh[4:6]))
	if n > len(uh) {
		n = len(uh)
	}
	return uh[8:n]
}

type unreachableClass uint8

const (
	unreachClosed unreachableClass = iota
	unreachFiltered
	unreachOther
)

func (t *Twin) onUnreachable(proto uint8, isrc, idst addr, il4 []byte, cls unreachableClass) {
	if len(il4) < 4 {
		t.count(PortwatchParseCounterPC_TRUNC_ICMP_INNER)
		return
	}
	isport := binary.BigEndian.Uint16(il4[0:2])
	idport := binary.BigEndian.Uint16(il4[2:4])
	slot := PortwatchProtoSlotSLOT_UDP
	if proto == ipProtoTCP {
		slot = PortwatchProtoSlotSLOT_TCP
	}
	r := t.resolve(slot, isport, idport)

	switch r.dir {
	case dirRequest:
		var sc *PortwatchServiceCounters
		if int(r.service) < len(t.services) {
			sc = &t.services[r.service]
		}
		v := t.exchangeIP(r.service, isrc, idst)
		switch cls {
		case unreachClosed:
			if sc != nil {
				sc.IcmpClosed++
			}
			if v != nil {
				v.IcmpClosed++
			}
		case unreachFiltered:
			if sc != nil {
				sc.IcmpFiltered++
			}
			if v != nil {
				v.IcmpFiltered++
			}
		default:
			if sc != nil {
				sc.IcmpOther++
			}
			if v != nil {
				v.IcmpOther++
			}
		}
		return
	case dirReply:
		// DHCP clients take their answers on raw sockets, so the kernel's
		// port unreachable for an answer proves nothing.
		if r.flags&PortwatchPortFlagsPORT_BROADCAST == 0 {
			if v := t.exchangeIP(r.service, idst, isrc); v != nil {
				v.ReturnBlocked++
			}
			return
		}
	}
	if proto == ipProtoUDP && t.hasEphemeralPort(idport) {
		if _, v, ok := t.ephemeralExchange(idst, isrc, idport); ok {
			if v != nil {
				v.ReturnBlocked++
			}
			return
		}
	}
	t.count(PortwatchParseCounterPC_ICMP_UNMATCHED)
}

func (t *Twin) onICMP4(ic []byte) {
	if len(ic) < 8 {
		t.count(PortwatchParseCounterPC_TRUNC_ICMP)
		return
	}
	if ic[0] != 3 { // destination unreachable
		t.count(PortwatchParseCounterPC_ICMP_NOT_UNREACHABLE)
		return
	}
	cls := unreachOther
	switch ic[1] {
	case 3: // port unreachable
		cls = unreachClosed
	case 9, 10, 13: // network, host, communication administratively prohibited
		cls = unreachFiltered
	}
	iip := ic[8:]
	if len(iip) < 20 {
		t.count(PortwatchParseCounterPC_TRUNC_ICMP_INNER)
		return
	}
	version, ihl := iip[0]>>4, int(iip[0]&0x0f)
	if version != 4 || ihl < 5 || binary.BigEndian.Uint16(iip[6:8])&0x1fff != 0 {
		t.count(PortwatchParseCounterPC_ICMP_UNMATCHED)
		return
	}
	proto := iip[9]
	if proto != ipProtoTCP && proto != ipProtoUDP {
		t.count(PortwatchParseCounterPC_ICMP_UNMATCHED)
		return
	}
	var il4 []byte
	if ihl*4 <= len(iip) {
		il4 = iip[ihl*4:]
	}
	t.onUnreachable(proto, addrFrom4(iip[12:16]), addrFrom4(iip[16:20]), il4, cls)
}

func (t *Twin) onICMP6(ic []byte) {
	if len(ic) < 8 {
		t.count(PortwatchParseCounterPC_TRUNC_ICMP)
		return
	}
	if ic[0] != 1 { // destination unreachable
		t.count(PortwatchParseCounterPC_ICMP_NOT_UNREACHABLE)
		return
	}
	cls := unreachOther
	switch ic[1] {
	case 4: // port unreachable
		cls = unreachClosed
	case 1: // administratively prohibited
		cls = unreachFiltered
	}
	iip := ic[8:]
	if len(iip) < 40 {
		t.count(PortwatchParseCounterPC_TRUNC_ICMP_INNER)
		return
	}
	next := iip[6]
	if next != ipProtoTCP && next != ipProtoUDP {
		t.count(PortwatchParseCounterPC_ICMP_UNMATCHED)
		return
	}
	t.onUnreachable(next, addrFrom16(iip[8:24]), addrFrom16(iip[24:40]), iip[40:], cls)
}

// Snapshot returns the twin's counters, stamped with the time of the last
// packet (capture time).
func (t *Twin) Snapshot() Snapshot {
	s := Snapshot{
		Time:       t.lastTime,
		Services:   make([]ServiceCounters, len(t.services)),
		Exchanges:  make([]ExchangeEntry, 0, t.exchanges.len()),
		Unexpected: make(map[UnexpectedKey]UnexpectedCounters, t.unexpected.len()),
		Parse:      make([]uint64, NumParseCounters),
	}
	for i := range t.services {
		s.Services[i].Add(t.services[i])
	}
	copy(s.Parse, t.parse.Count[:])
	t.exchanges.each(func(k *tableKey, v *PortwatchExchangeValue) {
		mk := PortwatchExchangeKey{Client: k.a.bytes(), Server: k.b.bytes(), Service: uint16(k.tail), Kind: uint8(k.tail >> 16)}
		key, c := Exchange(mk, *v, EpochClock)
		s.Exchanges = append(s.Exchanges, ExchangeEntry{key, c})
	})
	t.unexpected.each(func(k *tableKey, v *PortwatchUnexpectedValue) {
		mk := PortwatchUnexpectedKey{Server: k.a.bytes(), Port: uint16(k.tail), Proto: uint8(k.tail >> 16)}
		key, c := Unexpected(mk, *v, EpochClock)
		s.Unexpected[key] = c
	})
	return s
}
