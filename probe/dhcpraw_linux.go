package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// dhcpReplyFilter keeps, on the raw socket, only unfragmented IPv4 UDP
// datagrams to port 68: DHCP answers, and nothing else of the interface's
// traffic is copied up to the probe.
var dhcpReplyFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadAbsolute{Off: 9, Size: 1},                                 // IP protocol
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 17, SkipTrue: 5},          // not UDP: drop
	bpf.LoadAbsolute{Off: 6, Size: 2},                                 // flags and fragment offset
	bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 3},       // a later fragment: drop
	bpf.LoadMemShift{Off: 0},                                          // X = IP header length
	bpf.LoadIndirect{Off: 2, Size: 2},                                 // UDP destination port
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: dhcpClientPort, SkipTrue: 1}, // to port 68: keep
	bpf.RetConstant{Val: 0},
	bpf.RetConstant{Val: 0xffff},
})

func mustAssemble(prog []bpf.Instruction) []unix.SockFilter {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// exchangeDHCPBroadcast broadcasts a DISCOVER on the interface exactly as a
// booting node does (from 0.0.0.0 port 68 to 255.255.255.255 port 67, the
// Ethernet broadcast address) and waits for the target's OFFER, directly or
// through a relay. A node without an address can send this only from a raw
// socket, and so can the probe: it needs CAP_NET_RAW.
func (p *pacer) exchangeDHCPBroadcast(ctx context.Context, ifindex int, target netip.Addr, msg dhcpMessage) outcome {
	o := outcome{source: netip.AddrPortFrom(netip.IPv4Unspecified(), dhcpClientPort)}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			o.state, o.reason = StateError, ReasonNoPrivilege
			o.evidence = "a broadcast DISCOVER from 0.0.0.0 needs a raw socket (CAP_NET_RAW): run probe as root, " +
				"or ask a relay or server directly with --dhcp-unicast ADDRESS"
			return o
		}
		return localFailure(fmt.Errorf("raw socket for DHCP: %w", err))
	}
	defer unix.Close(fd)
	prog := unix.SockFprog{Len: uint16(len(dhcpReplyFilter)), Filter: &dhcpReplyFilter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return localFailure(fmt.Errorf("filter on the DHCP raw socket: %w", err))
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return localFailure(fmt.Errorf("binding the DHCP raw socket to interface %d: %w", ifindex, err))
	}
	buf := make([]byte, 4096)
	// Frames queued between socket() and the filter were not filtered.
	for {
		if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	packet := ipv4UDP(netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		dhcpClientPort, dhcpServerPort, msg.Marshal())
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	answer := dhcpAnswer{target: target}
	for range p.retries + 1 {
		if err := p.wait(ctx); err != nil {
			return cancelled(o, err)
		}
		sent := time.Now()
		o.attempts++
		if err := unix.Sendto(fd, packet, 0, to); err != nil {
			return localFailure(fmt.Errorf("broadcasting the DISCOVER: %w", err))
		}
		deadline := sent.Add(p.timeout)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			tv := unix.NsecToTimeval(left.Nanoseconds())
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return localFailure(err)
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return localFailure(fmt.Errorf("reading the DHCP raw socket: %w", err))
			}
			src, _, dport, payload, ok := udpOfIPv4(buf[:n])
			if !ok || dport != dhcpClientPort {
				continue
			}
			r, perr := parseDHCPReply(payload, msg.XID, msg.MAC)
			if perr != nil {
				continue
			}
			if answer.take(src, r) {
				o.rtt = time.Since(sent)
				o.state, o.reason, o.evidence = StateOpen, ReasonReply, r.String()
				return o
			}
		}
	}
	return answer.silence(o, o.attempts, p.timeout, "broadcast DISCOVERs")
}
