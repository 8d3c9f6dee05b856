package classify

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

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

// portText is the row's port for a message: "69", "7000-7010", "dynamic".
func portText(e *catalog.Entry) string {
	switch {
	case !e.HasPort():
		return "dynamic"
	case e.PortLast != e.Port:
		return fmt.Sprintf("%d-%d", e.Port, e.PortLast)
	}
	return strconv.Itoa(int(e.Port))
}

// exchangeSubject is "tftp-udp (udp/69) from 10.0.1.11 to 10.0.0.1".
func exchangeSubject(e *catalog.Entry, k bpf.ExchangeKey) string {
	server := addrString(k.Server)
	if k.IsDHCP() {
		server = "any DHCP server"
	}
	return fmt.Sprintf("%s (%s/%s) from %s to %s", e.Name, e.Proto, portText(e), clientString(k), server)
}

// plural renders "1 request", "4 requests".
func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatUint(n, 10) + " " + many
}

func attemptsText(e *catalog.Entry, n uint64) string {
	if e.Proto == catalog.TCP {
		return plural(n, "connection attempt", "connection attempts")
	}
	return plural(n, "request", "requests")
}

// spanText renders a span for people: tenths of a second below a minute.
func spanText(ns int64) string {
	d := time.Duration(ns)
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// exchangeMessage is the one sentence of a blocked or cleared event.
func exchangeMessage(v Verdict, e *catalog.Entry, k bpf.ExchangeKey, x *exchange, total counts, r reasonCode, judge judgement) string {
	subject := exchangeSubject(e, k)
	span := spanText(x.lastSeen - x.pendingSince)
	if v == Cleared {
		if judge == judgeICMPOnly {
			return fmt.Sprintf("%s: %s over %s drew no ICMP error after it was blocked (%s)",
				subject, attemptsText(e, x.pending), span, reasonNames[r])
		}
		return fmt.Sprintf("%s: answered again after it was blocked (%s)", subject, reasonNames[r])
	}
	switch r {
	case reasonAdminProhibited:
		return fmt.Sprintf("%s: refused by a firewall (%s), no answer",
			subject, plural(total.icmpFiltered, "ICMP administratively prohibited", "ICMP administratively prohibited errors"))
	case reasonPortUnreachable:
		return fmt.Sprintf("%s: nothing listens on the port (%s), no answer",
			subject, plural(total.icmpClosed, "ICMP port unreachable", "ICMP port unreachable errors"))
	case reasonReset:
		return fmt.Sprintf("%s: connection refused (%s), no answer",
			subject, plural(total.resets, "TCP reset", "TCP resets"))
	}
	switch {
	case x.has(flagReturnPath) && total.returnBlocked > 0:
		return fmt.Sprintf("%s: the server answered, but %s quoting its answers show them refused on their way back to the client",
			subject, plural(total.returnBlocked, "ICMP error", "ICMP errors"))
	case x.has(flagReturnPath):
		return fmt.Sprintf("%s: the server answered %s over %s, but the client never followed up: the answers never reach it (typical of a stateful firewall without a TFTP helper)",
			subject, attemptsText(e, x.pending), span)
	}
	return fmt.Sprintf("%s: %s over %s, no reply", subject, attemptsText(e, x.pending), span)
}

func unexpectedMessage(k bpf.UnexpectedKey, client netip.Addr) string {
	to := ""
	if client.IsValid() {
		to = " " + addrString(client)
	}
	return fmt.Sprintf("%s/%d on %s answered%s: the port is in no catalog row", k.Proto, k.Port, addrString(k.Server), to)
}
