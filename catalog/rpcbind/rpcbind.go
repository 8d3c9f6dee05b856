// Package rpcbind learns the ports of dynamic RPC services (mountd) by
// snooping the portmapper: it pairs rpcbind calls (GETPORT, GETADDR,
// GETVERSADDR, DUMP) with their replies and reports the mappings they reveal.
// It reads only what crosses the wire, so it works for a passive observer on
// any host and for captures alike.
package rpcbind

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"portwatch/catalog"
)

// ProgramPortmapper is rpcbind's own RPC program number.
const ProgramPortmapper = 100000

// Mapping is one (program, version, protocol) → port that rpcbind gave out.
type Mapping struct {
	Server  netip.Addr
	Program uint32
	Version uint32
	Proto   catalog.Proto
	Port    uint16
}

const (
	msgCall  = 0
	msgReply = 1

	procGetPort     = 3 // v2 PMAPPROC_GETPORT, v3/v4 RPCBPROC_GETADDR
	procDump        = 4 // v2 PMAPPROC_DUMP, v3/v4 RPCBPROC_DUMP
	procGetVersAddr = 9 // v4 RPCBPROC_GETVERSADDR

	// A reply that never comes must not hold its call forever.
	pendingLimit = 1024
	pendingTTL   = 30 * time.Second
)

type pendingKey struct {
	xid    uint32
	client netip.Addr
	port   uint16
}

type call struct {
	version, proc  uint32
	program, rvers uint32
	proto          catalog.Proto // asked for, GETPORT/GETADDR
	server         netip.Addr
	seen           time.Time
}

// Snooper pairs calls with replies. It is not safe for concurrent use.
type Snooper struct {
	pending map[pendingKey]call
}

// NewSnooper returns an empty snooper.
func NewSnooper() *Snooper { return &Snooper{pending: make(map[pendingKey]call)} }

// Datagram reads one UDP datagram to or from the portmapper (src to dst) and
// returns the mappings a reply revealed. Anything it cannot read is ignored:
// the caller hands it every rpcbind datagram, well-formed or not.
func (s *Snooper) Datagram(src, dst netip.Addr, sport, dport uint16, payload []byte, now time.Time) []Mapping {
	r := XDR{b: payload}
	xid := r.U32()
	switch r.U32() {
	case msgCall:
		s.onCall(r, pendingKey{xid, src, sport}, dst, now)
	case msgReply:
		key := pendingKey{xid, dst, dport}
		c, ok := s.pending[key]
		if !ok {
			return nil
		}
		delete(s.pending, key)
		return onReply(r, c)
	}
	return nil
}

func (s *Snooper) onCall(r XDR, key pendingKey, server netip.Addr, now time.Time) {
	if r.U32() != 2 || r.U32() != ProgramPortmapper {
		return
	}
	c := call{version: r.U32(), proc: r.U32(), server: server, seen: now}
	r.skipAuth() // credentials
	r.skipAuth() // verifier
	switch {
	case c.proc == procDump:
	case c.proc == procGetPort && c.version == 2:
		c.program, c.rvers = r.U32(), r.U32()
		c.proto = ipProto(r.U32())
	case (c.proc == procGetPort || c.proc == procGetVersAddr) && c.version >= 3:
		c.program, c.rvers = r.U32(), r.U32()
		c.proto = netidProto(r.str())
	default:
		return
	}
	if r.bad {
		return
	}
	if len(s.pending) >= pendingLimit {
		s.expire(now)
	}
	if len(s.pending) < pendingLimit {
		s.pending[key] = c
	}
}

func (s *Snooper) expire(now time.Time) {
	for k, c := range s.pending {
		if now.Sub(c.seen) > pendingTTL || now.Before(c.seen) {
			delete(s.pending, k)
		}
	}
}

func onReply(r XDR, c call) []Mapping {
	// reply_stat MSG_ACCEPTED, the verifier, accept_stat SUCCESS.
	if r.U32() != 0 {
		return nil
	}
	r.skipAuth()
	if r.U32() != 0 || r.bad {
		return nil
	}
	var out []Mapping
	switch {
	case c.proc == procDump && c.version == 2:
		for r.U32() == 1 && !r.bad {
			m := Mapping{Server: c.server, Program: r.U32(), Version: r.U32(), Proto: ipProto(r.U32())}
			port := r.U32()
			if !r.bad && m.Proto != 0 && port > 0 && port <= 65535 {
				m.Port = uint16(port)
				out = append(out, m)
			}
		}
	case c.proc == procDump:
		for r.U32() == 1 && !r.bad {
			m := Mapping{Server: c.server, Program: r.U32(), Version: r.U32()}
			m.Proto = netidProto(r.str())
			port, ok := uaddrPort(r.str())
			r.str() // owner
			if !r.bad && ok && m.Proto != 0 {
				m.Port = port
				out = append(out, m)
			}
		}
	case c.version == 2:
		port := r.U32()
		if !r.bad && port > 0 && port <= 65535 && c.proto != 0 {
			out = append(out, Mapping{Server: c.server, Program: c.program, Version: c.rvers, Proto: c.proto, Port: uint16(port)})
		}
	default:
		port, ok := uaddrPort(r.str())
		if !r.bad && ok && c.proto != 0 {
			out = append(out, Mapping{Server: c.server, Program: c.program, Version: c.rvers, Proto: c.proto, Port: port})
		}
	}
	return out
}

// ipProto reads a portmapper v2 protocol number: only TCP and UDP map ports.
func ipProto(n uint32) catalog.Proto {
	if n == uint32(catalog.TCP) || n == uint32(catalog.UDP) {
		return catalog.Proto(n)
	}
	return 0
}

// netidProto reads an rpcbind network id: "udp", "tcp", "udp6", "tcp6".
func netidProto(netid string) catalog.Proto {
	switch strings.TrimSuffix(netid, "6") {
	case "udp":
		return catalog.UDP
	case "tcp":
		return catalog.TCP
	}
	return 0
}

// uaddrPort reads the port of a universal address: "10.0.0.1.3.232" and
// "fe80::1.3.232" both end in the port's high and low bytes.
func uaddrPort(uaddr string) (uint16, bool) {
	last := strings.LastIndexByte(uaddr, '.')
	if last < 0 {
		return 0, false
	}
	prev := strings.LastIndexByte(uaddr[:last], '.')
	if prev < 0 {
		return 0, false
	}
	hi, err1 := strconv.ParseUint(uaddr[prev+1:last], 10, 8)
	lo, err2 := strconv.ParseUint(uaddr[last+1:], 10, 8)
	if err1 != nil || err2 != nil || hi<<8|lo == 0 {
		return 0, false
	}
	return uint16(hi<<8 | lo), true
}

// XDR reads XDR items (RFC 4506) from an ONC RPC message; past the end
// it returns zeros and reports Bad. The probe reads the replies to its RPC
// calls with it too.
type XDR struct {
	b   []byte
	bad bool
}

// NewXDR reads b.
func NewXDR(b []byte) *XDR { return &XDR{b: b} }

// Bad says whether a read ran past the end.
func (x *XDR) Bad() bool { return x.bad }

// Rest is what is left to read.
func (x *XDR) Rest() []byte { return x.b }

// U32 reads an unsigned integer.
func (x *XDR) U32() uint32 {
	if len(x.b) < 4 {
		x.bad = true
		x.b = nil
		return 0
	}
	v := binary.BigEndian.Uint32(x.b)
	x.b = x.b[4:]
	return v
}

// Opaque reads variable-length opaque data (or a string), skipping its padding.
func (x *XDR) Opaque() []byte {
	n := x.U32()
	padded := (uint64(n) + 3) &^ 3
	if x.bad || uint64(len(x.b)) < padded {
		x.bad = true
		x.b = nil
		return nil
	}
	v := x.b[:n]
	x.b = x.b[padded:]
	return v
}

func (x *XDR) str() string { return string(x.Opaque()) }

// skipAuth skips an opaque_auth: a flavor and its body.
func (x *XDR) skipAuth() {
	x.U32()
	x.Opaque()
}
