package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// exchangeTFTP sends a read request to port 69 and waits for the first
// DATA or ERROR, which comes from a new port of the server: so the socket
// is not connected (a connected socket would refuse it, and this host
// would answer the server with ICMP port unreachable).
func (p *pacer) exchangeTFTP(ctx context.Context, dst netip.AddrPort, file string) outcome {
	lc := net.ListenConfig{Control: recvErrControl}
	pc, err := lc.ListenPacket(ctx, networkFor("udp", dst.Addr()), anyAddr(dst.Addr()))
	if err != nil {
		return localFailure(err)
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	o := outcome{source: netip.MustParseAddrPort(conn.LocalAddr().String())}
	rrq := tftpReadRequest(file)
	// Retransmit from the same port, as TFTP clients do: the server may
	// answer the first request late.
	o, done := p.roundTrips(ctx, conn, o, p.retries+1, "",
		func() error { _, err := conn.WriteToUDPAddrPort(rrq, dst); return err },
		func(b []byte, from netip.AddrPort, o *outcome) bool {
			if from.Addr().Unmap() != dst.Addr().Unmap() {
				return false
			}
			reply, perr := parseTFTPReply(b)
			if perr != nil {
				return false
			}
			if reply.Opcode == tftpDATA {
				// Stop the transfer so that the server does not resend.
				if p.wait(ctx) == nil {
					_, _ = conn.WriteToUDPAddrPort(tftpAbort(), from)
				}
			}
			o.state, o.reason = StateOpen, ReasonReply
			o.evidence = fmt.Sprintf("%s from the server's port %d: the answer from a new port came back", reply, from.Port())
			return true
		})
	if done {
		return o
	}
	o.state, o.reason = StateNoAnswer, ReasonNoReply
	o.evidence = fmt.Sprintf("no DATA or ERROR to %d read requests in %s", o.attempts, time.Duration(o.attempts)*p.timeout)
	return o
}

func anyAddr(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "0.0.0.0:0"
	}
	return "[::]:0"
}

// dhcpAnswer collects the answers to a DHCP request: one from the target
// decides; answers from other servers are evidence.
type dhcpAnswer struct {
	target netip.Addr
	others []string
}

// take reads a reply that arrived from src; it reports whether the target
// answered.
func (a *dhcpAnswer) take(src netip.Addr, r dhcpReply) bool {
	if r.ServerID == a.target || (!r.ServerID.IsValid() && src == a.target) {
		return true
	}
	if len(a.others) < 4 {
		a.others = append(a.others, r.String())
	}
	return false
}

func (a *dhcpAnswer) silence(o outcome, sent int, timeout time.Duration, how string) outcome {
	o.state, o.reason = StateNoAnswer, ReasonNoReply
	o.evidence = fmt.Sprintf("no answer from %s to %d %s in %s", a.target, sent, how, time.Duration(sent)*timeout)
	if len(a.others) > 0 {
		o.evidence += fmt.Sprintf("; other servers answered: %v", a.others)
	}
	return o
}

// exchangeDHCPUnicast sends a DISCOVER from port 68 straight to a relay or
// server (--dhcp-unicast) and waits on port 68 for the answer, which the
// relay or server sends there (broadcast, since the request asks for it).
func (p *pacer) exchangeDHCPUnicast(ctx context.Context, via, target netip.Addr, msg dhcpMessage) outcome {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// A DHCP client of this host may hold port 68 too.
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		if err == nil {
			err = serr
		}
		if err == nil {
			err = recvErrControl(network, address, c)
		}
		return err
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", dhcpClientPort))
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return outcome{state: StateError, reason: ReasonNoPrivilege,
				evidence: "the answer comes to port 68, and binding it needs CAP_NET_BIND_SERVICE: run probe as root (or leave --dhcp-unicast out to broadcast, which needs CAP_NET_RAW)"}
		}
		return localFailure(fmt.Errorf("listening on the DHCP client port 68: %w", err))
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	o := outcome{source: netip.AddrPortFrom(netip.IPv4Unspecified(), dhcpClientPort)}
	answer := dhcpAnswer{target: target}
	payload := msg.Marshal()
	o, done := p.roundTrips(ctx, conn, o, p.retries+1, "",
		func() error {
			_, err := conn.WriteToUDPAddrPort(payload, netip.AddrPortFrom(via, dhcpServerPort))
			return err
		},
		func(b []byte, from netip.AddrPort, o *outcome) bool {
			r, perr := parseDHCPReply(b, msg.XID, msg.MAC)
			if perr != nil || !answer.take(from.Addr().Unmap(), r) {
				return false
			}
			o.state, o.reason, o.evidence = StateOpen, ReasonReply, r.String()+" (sent to "+via.String()+")"
			return true
		})
	if done {
		return o
	}
	return answer.silence(o, o.attempts, p.timeout, "DISCOVERs sent to "+via.String())
}
