package sim

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"syscall"
	"time"
)

// ONC RPC (RFC 5531) and portmapper (RFC 1833) numbers.
const (
	rpcVersion = 2

	msgCall  = 0
	msgReply = 1

	replyAccepted = 0
	replyDenied   = 1

	acceptSuccess      = 0
	acceptProgUnavail  = 1
	acceptProgMismatch = 2
	acceptProcUnavail  = 3
	acceptGarbageArgs  = 4

	deniedRPCMismatch = 0

	// PortmapProgram is rpcbind's program; version 2 is the portmapper protocol.
	PortmapProgram = 100000
	portmapVersion = 2
	pmapProcSet    = 1
	pmapProcUnset  = 2

	// MountProgram is mountd's program number.
	MountProgram = 100005
	// Mountd versions 1 to 3 (NFSv2 and NFSv3 mounts).
	mountVersionLow  = 1
	mountVersionHigh = 3

	ipProtoTCP = 6
	ipProtoUDP = 17
)

// rpcCall is the header of a call message, up to its arguments.
type rpcCall struct {
	xid, rpcvers, prog, vers, proc uint32
	args                           []byte
}

// parseCall reads a call message; it skips the credential and verifier.
func parseCall(b []byte) (rpcCall, error) {
	var c rpcCall
	u32 := func() (uint32, error) {
		if len(b) < 4 {
			return 0, io.ErrUnexpectedEOF
		}
		v := binary.BigEndian.Uint32(b)
		b = b[4:]
		return v, nil
	}
	opaqueAuth := func() error {
		if _, err := u32(); err != nil { // flavor
			return err
		}
		n, err := u32()
		if err != nil {
			return err
		}
		padded := (int(n) + 3) &^ 3
		if n > 400 || len(b) < padded {
			return fmt.Errorf("bad auth length %d", n)
		}
		b = b[padded:]
		return nil
	}
	var err error
	var mtype uint32
	if c.xid, err = u32(); err != nil {
		return c, err
	}
	if mtype, err = u32(); err != nil {
		return c, err
	}
	if mtype != msgCall {
		return c, fmt.Errorf("message type %d is not a call", mtype)
	}
	for _, f := range []*uint32{&c.rpcvers, &c.prog, &c.vers, &c.proc} {
		if *f, err = u32(); err != nil {
			return c, err
		}
	}
	if err := opaqueAuth(); err != nil {
		return c, err
	}
	if err := opaqueAuth(); err != nil {
		return c, err
	}
	c.args = b
	return c, nil
}

// appendU32 appends XDR unsigned ints.
func appendU32(b []byte, vs ...uint32) []byte {
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// mountdReply answers a call to the simulated mountd: the NULL procedure
// of versions 1-3 succeeds; anything else is refused as RPC says.
func mountdReply(c rpcCall) []byte {
	r := appendU32(nil, c.xid, msgReply)
	if c.rpcvers != rpcVersion {
		return appendU32(r, replyDenied, deniedRPCMismatch, rpcVersion, rpcVersion)
	}
	r = appendU32(r, replyAccepted, 0, 0) // verifier AUTH_NONE, empty
	switch {
	case c.prog != MountProgram:
		return appendU32(r, acceptProgUnavail)
	case c.vers < mountVersionLow || c.vers > mountVersionHigh:
		return appendU32(r, acceptProgMismatch, mountVersionLow, mountVersionHigh)
	case c.proc != 0:
		return appendU32(r, acceptProcUnavail)
	}
	return appendU32(r, acceptSuccess)
}

// ServeMountd registers program 100005 (versions 1-3, UDP and TCP, on
// port) with the rpcbind at 127.0.0.1 and answers RPC NULL calls, until ctx
// ends; then it unregisters. It stands in for rpc.mountd, which needs the
// kernel NFS server, so that `rpcinfo -p` shows mountd and a client can
// learn its port the way NFS clients do.
func ServeMountd(ctx context.Context, port int, logger *log.Logger) error {
	// Register before listening: when the port is open, rpcbind knows it.
	if err := register(ctx, port); err != nil {
		return err
	}
	defer func() {
		if err := unregister(); err != nil {
			logger.Printf("mountd-sim: unregister: %v", err)
		}
	}()
	var lc net.ListenConfig
	addr := fmt.Sprintf("0.0.0.0:%d", port)
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return fmt.Errorf("mountd-sim: %w", err)
	}
	defer pc.Close()
	ln, err := lc.Listen(ctx, "tcp4", addr)
	if err != nil {
		return fmt.Errorf("mountd-sim: %w", err)
	}
	defer ln.Close()
	logger.Printf("mountd-sim: program %d versions %d-%d on udp/%d and tcp/%d, registered with rpcbind",
		MountProgram, mountVersionLow, mountVersionHigh, port, port)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); serveRPCUDP(pc, logger) }()
	go func() { defer wg.Done(); serveRPCTCP(ln, logger) }()
	<-ctx.Done()
	pc.Close()
	ln.Close()
	wg.Wait()
	return nil
}

func serveRPCUDP(pc net.PacketConn, logger *log.Logger) {
	buf := make([]byte, 9000)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		c, err := parseCall(buf[:n])
		if err != nil {
			logger.Printf("udp from %s: %v", from, err)
			continue
		}
		logger.Printf("udp from %s: program %d version %d procedure %d", from, c.prog, c.vers, c.proc)
		_, _ = pc.WriteTo(mountdReply(c), from)
	}
}

func serveRPCTCP(ln net.Listener, logger *log.Logger) {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer conn.Close()
			r := bufio.NewReader(conn)
			for {
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				msg, err := readRecord(r)
				if err != nil {
					return
				}
				c, err := parseCall(msg)
				if err != nil {
					logger.Printf("tcp from %s: %v", conn.RemoteAddr(), err)
					return
				}
				logger.Printf("tcp from %s: program %d version %d procedure %d", conn.RemoteAddr(), c.prog, c.vers, c.proc)
				if _, err := conn.Write(record(mountdReply(c))); err != nil {
					return
				}
			}
		}()
	}
}

// Record marking (RFC 5531 section 11): fragments, each after a 4-byte
// header whose top bit marks the last one.
const lastFragment = 1 << 31

func readRecord(r io.Reader) ([]byte, error) {
	var msg []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h &^ lastFragment)
		if len(msg)+n > 1<<16 {
			return nil, fmt.Errorf("record of more than 64 KiB")
		}
		frag := make([]byte, n)
		if _, err := io.ReadFull(r, frag); err != nil {
			return nil, err
		}
		msg = append(msg, frag...)
		if h&lastFragment != 0 {
			return msg, nil
		}
	}
}

func record(msg []byte) []byte {
	return append(appendU32(nil, lastFragment|uint32(len(msg))), msg...)
}

// portmapCall sends one portmapper call to 127.0.0.1:111 from a privileged
// port, as rpcbind wants for SET and UNSET, and returns the reply's result.
func portmapCall(proc uint32, args []byte) (uint32, error) {
	conn, err := dialPrivileged()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	xid := uint32(time.Now().UnixNano())
	msg := appendU32(nil, xid, msgCall, rpcVersion, PortmapProgram, portmapVersion, proc, 0, 0, 0, 0)
	msg = append(msg, args...)
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := conn.Write(msg); err != nil {
			return 0, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return 0, err
		}
		return parsePortmapReply(buf[:n], xid)
	}
	return 0, fmt.Errorf("no answer from rpcbind at 127.0.0.1:111")
}

func parsePortmapReply(b []byte, xid uint32) (uint32, error) {
	// xid, REPLY, MSG_ACCEPTED, verifier (flavor, length 0), SUCCESS, result
	if len(b) < 28 {
		return 0, fmt.Errorf("short reply from rpcbind (%d bytes)", len(b))
	}
	w := func(i int) uint32 { return binary.BigEndian.Uint32(b[4*i:]) }
	if w(0) != xid || w(1) != msgReply || w(2) != replyAccepted || w(4) != 0 || w(5) != acceptSuccess {
		return 0, fmt.Errorf("rpcbind refused the call (reply words %d %d %d %d)", w(1), w(2), w(4), w(5))
	}
	return w(6), nil
}

// dialPrivileged connects a UDP socket from a port below 1024.
func dialPrivileged() (*net.UDPConn, error) {
	raddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 111}
	for p := 1023; p >= 600; p-- {
		conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}, raddr)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free privileged port to talk to rpcbind from")
}

func register(ctx context.Context, port int) error {
	if err := unregister(); err != nil {
		// rpcbind may still be starting: give it a moment.
		deadline := time.Now().Add(5 * time.Second)
		for err != nil && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			err = unregister()
		}
		if err != nil {
			return fmt.Errorf("mountd-sim: rpcbind: %w", err)
		}
	}
	for v := uint32(mountVersionLow); v <= mountVersionHigh; v++ {
		for _, proto := range []uint32{ipProtoUDP, ipProtoTCP} {
			ok, err := portmapCall(pmapProcSet, appendU32(nil, MountProgram, v, proto, uint32(port)))
			if err != nil {
				return fmt.Errorf("mountd-sim: register with rpcbind: %w", err)
			}
			if ok != 1 {
				return fmt.Errorf("mountd-sim: rpcbind refused to register program %d version %d protocol %d", MountProgram, v, proto)
			}
		}
	}
	return nil
}

func unregister() error {
	for v := uint32(mountVersionLow); v <= mountVersionHigh; v++ {
		if _, err := portmapCall(pmapProcUnset, appendU32(nil, MountProgram, v, 0, 0)); err != nil {
			return err
		}
	}
	return nil
}
