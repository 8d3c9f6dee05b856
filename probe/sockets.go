package probe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// outcome is what one probe found, before it becomes a Result.
type outcome struct {
	state    State
	reason   Reason
	evidence string
	rtt      time.Duration
	attempts int
	icmp     *ICMPError
	source   netip.AddrPort
}

// pacer is what the socket code needs from a run: timeouts and the rate
// limit every packet waits for.
type pacer struct {
	timeout time.Duration // per attempt
	retries int
	// wait blocks until the rate limit lets one more packet go.
	wait func(ctx context.Context) error
	// noPrivilegedPorts is set once binding a port below 1024 failed for
	// lack of privilege, so later probes do not try again.
	noPrivilegedPorts atomic.Bool
	// avoid are the catalog's ports: a probe from, say, port 873 to nfsd
	// would look to an observer like an answer of the rsync daemon.
	avoid map[uint16]bool
}

// datagramRequest is one UDP request-reply probe.
type datagramRequest struct {
	// payload is the request, sent again unchanged on a retry so that a
	// late answer to the first one still counts.
	payload []byte
	// parse reads a datagram from the service port: the evidence, or
	// errNotOurs for a datagram that answers something else.
	parse func(reply []byte) (string, error)
	// oneWay: nothing answers the service (syslog, an empty datagram to
	// xcatd): only an ICMP error (or an unexpected answer) comes back.
	oneWay bool
	// once: send it a single time, retries or not (a syslog line lands in
	// a log; one is enough).
	once bool
}

// exchangeUDP sends a request from a connected UDP socket and reads the
// answer, or the ICMP error the kernel matched to the socket.
func (p *pacer) exchangeUDP(ctx context.Context, dst netip.AddrPort, privileged bool, req datagramRequest) outcome {
	conn, note, err := p.dialUDP(ctx, dst, privileged)
	if err != nil {
		return localFailure(err)
	}
	defer conn.Close()
	o := outcome{source: netip.MustParseAddrPort(conn.LocalAddr().String())}
	sends := p.retries + 1
	if req.once {
		sends = 1
	}
	o, done := p.roundTrips(ctx, conn, o, sends, note,
		func() error { _, err := conn.Write(req.payload); return err },
		func(b []byte, _ netip.AddrPort, o *outcome) bool {
			evidence, perr := req.parse(b)
			if errors.Is(perr, errNotOurs) {
				return false
			}
			o.state, o.reason = StateOpen, ReasonReply
			o.evidence = evidence
			if perr != nil {
				o.evidence = fmt.Sprintf("a reply it could not read (%v): the port answered", perr)
			}
			*o = withNote(*o, note)
			return true
		})
	if done {
		return o
	}
	if req.oneWay {
		o.state, o.reason = StateNoAnswer, ReasonOneWay
		o.evidence = "sent; this service never answers, so only an ICMP error or --observer can judge the path"
		return withNote(o, note)
	}
	o.state, o.reason = StateNoAnswer, ReasonNoReply
	o.evidence = fmt.Sprintf("no reply to %d requests in %s", o.attempts, time.Duration(o.attempts)*p.timeout)
	return withNote(o, note)
}

// roundTrips sends a request up to sends times, paced, and after each
// reads what comes back until the timeout. answered takes each datagram and
// says whether it answers the request, settling o if so. It returns true with
// the outcome when an answer came (its rtt set) or the socket failed (with
// the ICMP error the kernel matched to it), false when every request went
// unanswered.
func (p *pacer) roundTrips(ctx context.Context, conn *net.UDPConn, o outcome, sends int, note string,
	send func() error, answered func(b []byte, from netip.AddrPort, o *outcome) bool) (outcome, bool) {
	buf := make([]byte, 64*1024)
	for range sends {
		if err := p.wait(ctx); err != nil {
			return cancelled(o, err), true
		}
		sent := time.Now()
		o.attempts++
		if err := send(); err != nil {
			return p.socketError(conn, o, err, "udp", note), true
		}
		if err := conn.SetReadDeadline(sent.Add(p.timeout)); err != nil {
			return localFailure(err), true
		}
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if isTimeout(err) {
				break
			}
			rtt := time.Since(sent)
			if err != nil {
				o.rtt = rtt
				return p.socketError(conn, o, err, "udp", note), true
			}
			if answered(buf[:n], from, &o) {
				o.rtt = rtt
				return o, true
			}
		}
	}
	return o, false
}

// dialUDP connects a UDP socket with IP_RECVERR set, from a port below 1024
// when the row's clients use one and the process may bind it.
func (p *pacer) dialUDP(ctx context.Context, dst netip.AddrPort, privileged bool) (*net.UDPConn, string, error) {
	network := networkFor("udp", dst.Addr())
	var note string
	if privileged && !p.noPrivilegedPorts.Load() {
		for range 8 {
			d := net.Dialer{Control: recvErrControl, LocalAddr: &net.UDPAddr{Port: p.privilegedPort()}}
			c, err := d.DialContext(ctx, network, dst.String())
			if err == nil {
				return c.(*net.UDPConn), "", nil
			}
			if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
				p.noPrivilegedPorts.Store(true)
				break
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				return nil, "", err
			}
		}
	}
	if privileged {
		note = unprivilegedNote
	}
	d := net.Dialer{Control: recvErrControl}
	c, err := d.DialContext(ctx, network, dst.String())
	if err != nil {
		return nil, "", err
	}
	return c.(*net.UDPConn), note, nil
}

// privilegedPort picks a port as bindresvport does, from 512-1023, and
// none that a catalog row serves.
func (p *pacer) privilegedPort() int {
	for {
		port := 512 + rand.IntN(512)
		if !p.avoid[uint16(port)] {
			return port
		}
	}
}

func networkFor(proto string, a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return proto + "4"
	}
	return proto + "6"
}

// socketError turns a failed read or write into an outcome, with the ICMP
// error from the socket's error queue when there is one.
func (p *pacer) socketError(conn syscall.Conn, o outcome, err error, proto, note string) outcome {
	var icmp *ICMPError
	if rc, rerr := conn.SyscallConn(); rerr == nil {
		_ = rc.Control(func(fd uintptr) { icmp = readErrQueue(int(fd)) })
	}
	return withNote(fromError(o, err, icmp, proto), note)
}

// fromError classifies a socket error: with the ICMP error the kernel
// queued when there is one, else by errno alone.
func fromError(o outcome, err error, icmp *ICMPError, proto string) outcome {
	if icmp != nil {
		o.icmp = icmp
		o.state, o.reason = icmp.classify()
		o.evidence = icmp.String()
		return o
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		o.state = StateClosed
		if proto == "tcp" {
			o.reason, o.evidence = ReasonReset, "TCP reset (RST) answered the SYN"
		} else {
			o.reason, o.evidence = ReasonICMPPortUnreachable, "ICMP port unreachable"
		}
	case errors.Is(err, syscall.EHOSTUNREACH):
		o.state, o.reason, o.evidence = StateUnreachable, ReasonICMPHostUnreachable, "host unreachable ("+err.Error()+")"
	case errors.Is(err, syscall.ENETUNREACH):
		o.state, o.reason, o.evidence = StateError, ReasonLocalError, "no route to the target from this host ("+err.Error()+")"
	case isTimeout(err):
		o.state, o.reason, o.evidence = StateNoAnswer, ReasonNoReply, "no answer before the deadline"
	default:
		o.state, o.reason, o.evidence = StateError, ReasonLocalError, err.Error()
	}
	return o
}

func withNote(o outcome, note string) outcome {
	if note != "" {
		o.evidence += "; " + note
	}
	return o
}

func localFailure(err error) outcome {
	o := fromError(outcome{}, err, nil, "")
	if o.state != StateError {
		// A failure before anything was sent is always local.
		o.state, o.reason = StateError, ReasonLocalError
	}
	o.evidence = "could not send: " + err.Error()
	return o
}

func cancelled(o outcome, err error) outcome {
	o.state, o.reason, o.evidence = StateError, ReasonLocalError, "interrupted: "+err.Error()
	return o
}

// tcpDeadline is how long connectTCP waits: until the retries-th
// retransmission of the SYN, which the kernel sends 1 s, 3 s, 7 s... after
// the first, has had the timeout to be answered. (timeout × (retries+1)
// ended as the second retransmission left, at 3 s, and a timeout below a
// second let none leave.)
func tcpDeadline(timeout time.Duration, retries int) time.Duration {
	n := min(max(retries, 0), 6)
	return time.Duration(1<<n-1)*time.Second + timeout
}

// connectTCP makes a TCP connection and closes it: nmap's connect scan.
// The kernel retransmits the SYN until tcpDeadline.
func (p *pacer) connectTCP(ctx context.Context, dst netip.AddrPort, privileged bool) outcome {
	if err := p.wait(ctx); err != nil {
		return cancelled(outcome{}, err)
	}
	limit := tcpDeadline(p.timeout, p.retries)
	v6 := !dst.Addr().Is4() && !dst.Addr().Is4In6()
	tryPrivileged := privileged && !p.noPrivilegedPorts.Load()
	for try := 1; ; try++ {
		kept := -1
		var local *net.TCPAddr
		if tryPrivileged {
			local = &net.TCPAddr{Port: p.privilegedPort()}
		}
		d := net.Dialer{
			Timeout:   limit,
			LocalAddr: local,
			Control: func(_, _ string, c syscall.RawConn) error {
				var err error
				kept, err = keepSocket(c, v6)
				return err
			},
		}
		start := time.Now()
		conn, err := d.DialContext(ctx, networkFor("tcp", dst.Addr()), dst.String())
		elapsed := time.Since(start)
		if local != nil && err != nil && (isSyscall(err, "bind") || errors.Is(err, syscall.EADDRNOTAVAIL)) {
			// The port was not ours to take: another one, or an
			// ephemeral port when binding below 1024 is not allowed.
			releaseSocket(kept)
			if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
				p.noPrivilegedPorts.Store(true)
				tryPrivileged = false
			} else if try >= 8 {
				tryPrivileged = false
			}
			continue
		}
		var note string
		if privileged && local == nil {
			note = unprivilegedNote
		}
		o := outcome{attempts: 1}
		if err == nil {
			o.source = netip.MustParseAddrPort(conn.LocalAddr().String())
			conn.Close()
			releaseSocket(kept)
			o.state, o.reason, o.rtt = StateOpen, ReasonSYNACK, elapsed
			o.evidence = "SYN-ACK: connected"
			if elapsed >= time.Second {
				o.evidence += " after the kernel retransmitted the SYN"
			}
			return withNote(o, note)
		}
		icmp := readErrQueue(kept)
		releaseSocket(kept)
		o = fromError(o, err, icmp, "tcp")
		if o.state == StateClosed || o.state == StateFiltered || o.state == StateUnreachable {
			o.rtt = elapsed // the refusal's round trip
		}
		switch {
		case o.state == StateNoAnswer:
			o.evidence = fmt.Sprintf("no answer to the SYN or its retransmissions in %s", limit)
		case kept < 0:
			o.attempts = 0 // the socket never got as far as sending
		}
		return withNote(o, note)
	}
}

// unprivilegedNote explains a probe of a row whose clients use ports below
// 1024, made from an ephemeral port.
const unprivilegedNote = "sent from an unprivileged port (binding one below 1024 needs CAP_NET_BIND_SERVICE), where this row's clients use 1-1023"

func isSyscall(err error, name string) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Syscall == name
}

// isTimeout: a read deadline or a dial timeout passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
