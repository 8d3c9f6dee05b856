//go:build !linux

package probe

import (
	"context"
	"net/netip"
)

func (p *pacer) exchangeDHCPBroadcast(context.Context, int, netip.Addr, dhcpMessage) outcome {
	return outcome{state: StateError, reason: ReasonNoPrivilege,
		evidence: "a broadcast DISCOVER from 0.0.0.0 needs Linux's raw AF_PACKET socket; ask a relay or server with --dhcp-unicast ADDRESS"}
}
