package probe

import (
	"net/netip"
	"testing"
	"time"
)

// TestRefusedOnTheWay: a port unreachable is the target's "closed" only when
// the target sent it; from a router or firewall on the way (iptables'
// REJECT) the request never got there.
func TestRefusedOnTheWay(t *testing.T) {
	target, router := netip.MustParseAddr("10.77.0.10"), netip.MustParseAddr("10.77.1.1")
	portUnreachable := func(from netip.Addr) *ICMPError { return &ICMPError{Type: 3, Code: 3, From: from} }
	for _, c := range []struct {
		name   string
		icmp   *ICMPError
		target netip.Addr
		state  State
		want   bool
	}{
		{"from the target", portUnreachable(target), target, StateClosed, false},
		{"from a router", portUnreachable(router), target, StateClosed, true},
		{"from a router, v4-mapped", portUnreachable(netip.AddrFrom16(router.As16())), target, StateClosed, true},
		{"a reset, no ICMP", nil, target, StateClosed, false},
		{"DHCP's broadcast", portUnreachable(router), netip.AddrFrom4([4]byte{255, 255, 255, 255}), StateClosed, false},
		{"not closed", &ICMPError{Type: 3, Code: 13, From: router}, target, StateFiltered, false},
	} {
		if got := refusedOnTheWay(c.icmp, c.target, c.state); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestTCPDeadline: every SYN retransmission that --retries asks for leaves
// before the deadline and gets the timeout to be answered.
func TestTCPDeadline(t *testing.T) {
	for _, c := range []struct {
		timeout time.Duration
		retries int
		want    time.Duration
	}{
		{time.Second, 2, 4 * time.Second},                    // SYNs at 0, 1, 3 s
		{300 * time.Millisecond, 1, 1300 * time.Millisecond}, // one retransmission at 1 s
		{time.Second, 0, time.Second},
		{time.Second, 40, 64 * time.Second}, // capped
	} {
		if got := tcpDeadline(c.timeout, c.retries); got != c.want {
			t.Errorf("timeout %v, %d retries: %v, want %v", c.timeout, c.retries, got, c.want)
		}
	}
}
