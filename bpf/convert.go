package bpf

import (
	"net/netip"
	"time"

	"portwatch/catalog"
)

// PortSlots is the number of entries of the port map: one per protocol slot
// and port.
const PortSlots = int(PortwatchProtoSlotSLOT_COUNT) * 65536

// PortIndex is the port map's index of (proto, port); ok is false for a
// protocol the map does not hold.
func PortIndex(proto catalog.Proto, port uint16) (idx uint32, ok bool) {
	switch proto {
	case catalog.TCP:
		return uint32(PortwatchProtoSlotSLOT_TCP)<<16 | uint32(port), true
	case catalog.UDP:
		return uint32(PortwatchProtoSlotSLOT_UDP)<<16 | uint32(port), true
	}
	return 0, false
}

// PortMapEntry is one non-empty entry of the port map.
type PortMapEntry struct {
	Index uint32
	Value PortwatchPortEntry
}

// PortMap renders the catalog as the port map's non-empty entries, ordered by
// index. The kernel loader writes them into the map; the twin into its array.
func PortMap(cat *catalog.Catalog) []PortMapEntry {
	bindings := cat.PortBindings()
	out := make([]PortMapEntry, 0, len(bindings))
	for _, b := range bindings {
		idx, ok := PortIndex(b.Proto, b.Port)
		if !ok {
			continue
		}
		out = append(out, PortMapEntry{Index: idx, Value: PortwatchPortEntry{
			Service:     uint16(b.Service.ID),
			PrivService: uint16(b.Privileged.ID),
			Flags:       uint8(portFlags(b.Service) | portFlags(b.Privileged)),
		}})
	}
	return out
}

func portFlags(e *catalog.Entry) PortwatchPortFlags {
	var f PortwatchPortFlags
	switch e.Pattern {
	case catalog.PatternEphemeralReply:
		f |= PortwatchPortFlagsPORT_EPHEMERAL_REPLY
	case catalog.PatternBroadcast:
		f |= PortwatchPortFlagsPORT_BROADCAST
	case catalog.PatternClientPort:
		f |= PortwatchPortFlagsPORT_CLIENT_PORT
	}
	if e.Portmapper {
		f |= PortwatchPortFlagsPORT_PORTMAPPER
	}
	return f
}

// Addr reads a 16-byte map address: IPv4-mapped addresses become IPv4.
func Addr(b [16]uint8) netip.Addr {
	return netip.AddrFrom16(b).Unmap()
}

// Addr16 is the map form of an address.
func Addr16(a netip.Addr) [16]uint8 {
	return a.As16()
}

// Clock turns a map time stamp into a time. The kernel stamps with its tick
// counter (the loader knows the tick's length); the twin with capture time
// in nanoseconds since the epoch.
type Clock func(stamp uint64) time.Time

// EpochClock reads timestamps that count from the Unix epoch (the twin's).
func EpochClock(ns uint64) time.Time { return time.Unix(0, int64(ns)) }

// Add sums another CPU's (or source's) counters into c.
func (c *ServiceCounters) Add(v PortwatchServiceCounters) {
	c.Packets += v.Packets
	c.Bytes += v.Bytes
	c.Requests += v.Requests
	c.Replies += v.Replies
	c.SYN += v.Syn
	c.SYNACK += v.SynAck
	c.RST += v.Rst
	c.ICMPClosed += v.IcmpClosed
	c.ICMPFiltered += v.IcmpFiltered
	c.ICMPOther += v.IcmpOther
}

// Exchange converts an exchange map entry.
func Exchange(k PortwatchExchangeKey, v PortwatchExchangeValue, clock Clock) (ExchangeKey, ExchangeCounters) {
	key := ExchangeKey{Service: catalog.ServiceID(k.Service)}
	if PortwatchExchangeKind(k.Kind) == PortwatchExchangeKindEXCHANGE_DHCP {
		copy(key.ClientMAC[:], k.Client[:6])
	} else {
		key.Client = Addr(k.Client)
		key.Server = Addr(k.Server)
	}
	return key, ExchangeCounters{
		FirstSeen:     clock(v.FirstSeen),
		LastSeen:      clock(v.LastSeen),
		Attempts:      v.Attempts,
		Retransmits:   v.Retransmits,
		Answers:       v.Answers,
		Resets:        v.Resets,
		ICMPClosed:    v.IcmpClosed,
		ICMPFiltered:  v.IcmpFiltered,
		ICMPOther:     v.IcmpOther,
		ReturnBlocked: v.ReturnBlocked,
		Followups:     v.Followups,
	}
}

// Unexpected converts an unexpected-port map entry.
func Unexpected(k PortwatchUnexpectedKey, v PortwatchUnexpectedValue, clock Clock) (UnexpectedKey, UnexpectedCounters) {
	return UnexpectedKey{Proto: catalog.Proto(k.Proto), Server: Addr(k.Server), Port: k.Port},
		UnexpectedCounters{
			FirstSeen: clock(v.FirstSeen),
			LastSeen:  clock(v.LastSeen),
			Answers:   v.Answers,
			Client:    Addr(v.Client),
		}
}
