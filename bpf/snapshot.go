// Package bpf is portwatch's packet program: the XDP and TC programs in C
// (built by bpf2go), their Go twin for captures, and the Snapshot both of
// them produce.
package bpf

import (
	"net/netip"
	"time"

	"portwatch/catalog"
)

// Snapshot is the cumulative state of the counters at one moment, from the
// kernel maps or from the Go twin. Counters only grow between two snapshots
// of one source; an exchange that vanished was evicted from the bounded
// table, and one whose counters went down was evicted and seen again.
type Snapshot struct {
	// Time is when the snapshot was taken: the wall clock for the kernel
	// backend, the timestamp of the last packet for a capture.
	Time time.Time
	// Services is indexed by catalog.ServiceID; index 0 counts TCP and UDP
	// traffic on no catalog port.
	Services []ServiceCounters
	// Exchanges holds the tracked (service, client, server) exchanges, one
	// entry a key, in no particular order. A slice, not a map: the drain
	// builds it for 100,000 exchanges every window, and every reader only
	// ranges over it (ExchangeMap gives a map to those that look up).
	Exchanges []ExchangeEntry
	// Unexpected holds answered exchanges on ports in no catalog row.
	Unexpected map[UnexpectedKey]UnexpectedCounters
	// Parse counts the parser's outcomes, indexed by ParseCounter.
	Parse []uint64
	// Lost counts packets the capture dropped before portwatch saw them
	// (AF_PACKET drops, a damaged capture); the kernel hooks lose none.
	Lost uint64
}

// ServiceCounters are one catalog row's counters.
type ServiceCounters struct {
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
	Requests uint64 `json:"requests"` // packets toward the service port
	Replies  uint64 `json:"replies"`  // packets from it, or for TFTP from the server's ephemeral port
	SYN      uint64 `json:"syn"`      // SYN without ACK
	SYNACK   uint64 `json:"syn_ack"`
	RST      uint64 `json:"rst"`
	// ICMP destination-unreachable errors quoting a request to the service.
	ICMPClosed   uint64 `json:"icmp_closed"`   // port unreachable
	ICMPFiltered uint64 `json:"icmp_filtered"` // administratively prohibited
	ICMPOther    uint64 `json:"icmp_other"`    // any other unreachable code (host, network, ...)
}

// ExchangeEntry is one tracked exchange.
type ExchangeEntry struct {
	Key      ExchangeKey
	Counters ExchangeCounters
}

// ExchangeMap indexes the exchanges by key.
func (s Snapshot) ExchangeMap() map[ExchangeKey]ExchangeCounters {
	m := make(map[ExchangeKey]ExchangeCounters, len(s.Exchanges))
	for _, e := range s.Exchanges {
		m[e.Key] = e.Counters
	}
	return m
}

// ExchangeKey names an exchange: a client host with a server's service.
// Several source ports of one client count together.
type ExchangeKey struct {
	Service catalog.ServiceID
	// Client is the client's address. For DHCP, which pairs by hardware
	// address, Client is the zero Addr and ClientMAC holds the address.
	Client    netip.Addr
	ClientMAC [6]byte
	// Server is the server's address; the zero Addr for DHCP, whose
	// requests are broadcast.
	Server netip.Addr
}

// IsDHCP reports whether the exchange is keyed by hardware address.
func (k ExchangeKey) IsDHCP() bool { return !k.Client.IsValid() }

// ExchangeCounters are what the hooks record of one exchange: only the
// packets that change its state, never established TCP data.
type ExchangeCounters struct {
	FirstSeen time.Time
	LastSeen  time.Time
	// Attempts counts distinct requests: a SYN (not its retransmits), a UDP
	// request, a DHCP DISCOVER or REQUEST.
	Attempts uint64
	// Retransmits counts SYNs repeated with the same source port and
	// sequence number.
	Retransmits uint64
	// Answers counts SYN-ACKs, UDP replies (from the service port, or for
	// TFTP from the server's ephemeral port), DHCP replies with the
	// request's transaction id.
	Answers uint64
	// Resets counts RSTs from the server that answer the exchange's last
	// SYN (to its port, acknowledging its sequence number).
	Resets uint64
	// ICMP destination-unreachable errors quoting a request of the exchange.
	ICMPClosed   uint64
	ICMPFiltered uint64
	ICMPOther    uint64
	// ReturnBlocked counts ICMP errors quoting an answer: the answer was
	// refused on its way back to the client.
	ReturnBlocked uint64
	// Followups counts client packets to the server's ephemeral port (TFTP
	// ACKs): proof that the answer reached the client.
	Followups uint64
}

// UnexpectedKey names a port in no catalog row that answered.
type UnexpectedKey struct {
	Proto  catalog.Proto
	Server netip.Addr
	Port   uint16
}

// UnexpectedCounters are the evidence that an unexpected port is open.
type UnexpectedCounters struct {
	FirstSeen time.Time
	LastSeen  time.Time
	Answers   uint64     // SYN-ACKs or UDP replies from the port
	Client    netip.Addr // the last client it answered
}

// ExchangeEntries lists a map's exchanges as a snapshot holds them (for
// snapshots built by hand, as tests do).
func ExchangeEntries(m map[ExchangeKey]ExchangeCounters) []ExchangeEntry {
	out := make([]ExchangeEntry, 0, len(m))
	for k, c := range m {
		out = append(out, ExchangeEntry{k, c})
	}
	return out
}
