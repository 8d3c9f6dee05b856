package classify

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// The messages are built with appends rather than fmt: a window in which a
// whole provisioning burst becomes blocked builds one per exchange.

// clientString is the exchange's client: an IP address, or for DHCP the
// hardware address.
func clientString(k bpf.ExchangeKey) string {
	if k.IsDHCP() {
		return net.HardwareAddr(k.ClientMAC[:]).String()
	}
	return addrString(k.Client)
}

// addrString renders an address, IPv4-mapped IPv6 as plain IPv4; the zero
// Addr is empty.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

// appendPort appends the row's port for a message: "69", "7000-7010",
// "dynamic".
func appendPort(b []byte, e *catalog.Entry) []byte {
	switch {
	case !e.HasPort():
		return append(b, "dynamic"...)
	case e.PortLast != e.Port:
		b = strconv.AppendUint(b, uint64(e.Port), 10)
		b = append(b, '-')
		return strconv.AppendUint(b, uint64(e.PortLast), 10)
	}
	return strconv.AppendUint(b, uint64(e.Port), 10)
}

// appendSubject appends "tftp-udp (udp/69) from 10.0.1.11 to 10.0.0.1: ".
func appendSubject(b []byte, e *catalog.Entry, client, server string) []byte {
	if server == "" {
		server = "any DHCP server"
	}
	b = append(b, e.Name...)
	b = append(b, " ("...)
	b = append(b, e.Proto.String()...)
	b = append(b, '/')
	b = appendPort(b, e)
	b = append(b, ") from "...)
	b = append(b, client...)
	b = append(b, " to "...)
	b = append(b, server...)
	return append(b, ": "...)
}

// appendCount appends "1 request" or "4 requests".
func appendCount(b []byte, n uint64, one, many string) []byte {
	b = strconv.AppendUint(b, n, 10)
	b = append(b, ' ')
	if n == 1 {
		return append(b, one...)
	}
	return append(b, many...)
}

func appendAttempts(b []byte, e *catalog.Entry, n uint64) []byte {
	if e.Proto == catalog.TCP {
		return appendCount(b, n, "connection attempt", "connection attempts")
	}
	return appendCount(b, n, "request", "requests")
}

// appendSpan appends a span for people: tenths of a second below a minute.
func appendSpan(b []byte, ns int64) []byte {
	d := time.Duration(ns)
	if d < time.Minute {
		d = d.Round(100 * time.Millisecond)
	} else {
		d = d.Round(time.Second)
	}
	return append(b, d.String()...)
}

// exchangeMessage is the one sentence of a blocked or cleared event.
func exchangeMessage(v Verdict, e *catalog.Entry, client, server string, x *exchange, total counts, r reasonCode, judge judgement) string {
	b := make([]byte, 0, 256)
	b = appendSubject(b, e, client, server)
	span := x.lastSeen - x.pendingSince
	if v == Cleared {
		if judge == judgeICMPOnly {
			b = appendAttempts(b, e, x.pending)
			b = append(b, " over "...)
			b = appendSpan(b, span)
			b = append(b, " drew no ICMP error after it was blocked ("...)
		} else {
			b = append(b, "answered again after it was blocked ("...)
		}
		b = append(b, reasonNames[r]...)
		return string(append(b, ')'))
	}
	switch {
	case r == reasonAdminProhibited:
		b = append(b, "refused by a firewall ("...)
		b = appendCount(b, total.icmpFiltered, "ICMP administratively prohibited", "ICMP administratively prohibited errors")
		b = append(b, "), no answer"...)
	case r == reasonPortUnreachable:
		b = append(b, "nothing listens on the port ("...)
		b = appendCount(b, total.icmpClosed, "ICMP port unreachable", "ICMP port unreachable errors")
		b = append(b, "), no answer"...)
	case r == reasonReset:
		b = append(b, "connection refused ("...)
		b = appendCount(b, total.resets, "TCP reset", "TCP resets")
		b = append(b, "), no answer"...)
	case x.has(flagReturnPath) && total.returnBlocked > 0:
		b = append(b, "the server answered, but "...)
		b = appendCount(b, total.returnBlocked, "ICMP error", "ICMP errors")
		b = append(b, " quoting its answers show them refused on their way back to the client"...)
	case x.has(flagReturnPath):
		b = append(b, "the server answered "...)
		b = appendAttempts(b, e, x.pending)
		b = append(b, " over "...)
		b = appendSpan(b, span)
		b = append(b, ", but the client never followed up: the answers never reach it (typical of a stateful firewall without a TFTP helper)"...)
	default:
		b = appendAttempts(b, e, x.pending)
		b = append(b, " over "...)
		b = appendSpan(b, span)
		b = append(b, ", no reply"...)
	}
	return string(b)
}

// unexpectedMessage is "udp/5353 on 10.0.0.1 answered 10.0.1.11: the port is
// in no catalog row".
func unexpectedMessage(k bpf.UnexpectedKey, client netip.Addr) string {
	b := make([]byte, 0, 96)
	b = append(b, k.Proto.String()...)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(k.Port), 10)
	b = append(b, " on "...)
	b = append(b, addrString(k.Server)...)
	b = append(b, " answered"...)
	if client.IsValid() {
		b = append(b, ' ')
		b = append(b, addrString(client)...)
	}
	return string(append(b, ": the port is in no catalog row"...))
}
