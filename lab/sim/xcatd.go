// Package sim holds the lab's own small servers: stand-ins for daemons that
// Debian does not package (xcatd) or that need a kernel NFS server
// (mountd). They answer just enough for a client to see that the port
// works, and log every request.
package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// XcatdPort is one port of xcatd and what it is for.
type XcatdPort struct {
	Proto   string // "tcp" or "udp"
	Port    uint16
	Service string // named in every answer
}

// XcatdPorts are xCAT's defaults: xcatdport 3001 (tcp, udp), xcatiport
// 3002 (tcp, udp), xcatlport 3003 (tcp).
var XcatdPorts = []XcatdPort{
	{"tcp", 3001, "xcatdport"}, {"udp", 3001, "xcatdport"},
	{"tcp", 3002, "xcatiport"}, {"udp", 3002, "xcatiport"},
	{"tcp", 3003, "xcatlport"},
}

// maxRequest bounds a request line or datagram.
const maxRequest = 1024

// Answer is the simulator's reply to a request: "ok SERVICE REQUEST", with
// the service named as in xCAT's site table (xcatdport, xcatiport, xcatlport).
// Real xcatd speaks XML over TLS on 3001 and a line protocol on 3002; what
// matters to portwatch is that the port answers.
func Answer(service, request string) string {
	return "ok " + service + " " + strings.Join(strings.Fields(request), " ") + "\n"
}

// ServeXcatd answers on every port of ports at addr until ctx ends. TCP: a
// request line, an answer line, close. UDP: a datagram, an answer.
func ServeXcatd(ctx context.Context, addr netip.Addr, ports []XcatdPort, logger *log.Logger) error {
	var lc net.ListenConfig
	var closers []func() error
	var serve []func()
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for _, p := range ports {
		ap := netip.AddrPortFrom(addr, p.Port).String()
		switch p.Proto {
		case "tcp":
			ln, err := lc.Listen(ctx, "tcp", ap)
			if err != nil {
				return fmt.Errorf("xcatd-sim: %w", err)
			}
			closers = append(closers, ln.Close)
			serve = append(serve, func() { serveTCP(ln, p, logger) })
		case "udp":
			pc, err := lc.ListenPacket(ctx, "udp", ap)
			if err != nil {
				return fmt.Errorf("xcatd-sim: %w", err)
			}
			closers = append(closers, pc.Close)
			serve = append(serve, func() { serveUDP(pc, p, logger) })
		default:
			return fmt.Errorf("xcatd-sim: protocol %q", p.Proto)
		}
	}
	var wg sync.WaitGroup
	for _, s := range serve {
		wg.Add(1)
		go func() { defer wg.Done(); s() }()
	}
	logger.Printf("xcatd-sim listening on %s", describe(addr, ports))
	<-ctx.Done()
	for _, c := range closers {
		_ = c()
	}
	closers = nil
	wg.Wait()
	return nil
}

func describe(addr netip.Addr, ports []XcatdPort) string {
	var s []string
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%s/%d", p.Proto, p.Port))
	}
	return addr.String() + " " + strings.Join(s, " ")
}

func serveTCP(ln net.Listener, p XcatdPort, logger *log.Logger) {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			logger.Printf("tcp/%d: accept: %v", p.Port, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReaderSize(conn, maxRequest).ReadString('\n')
			if err != nil && line == "" {
				logger.Printf("tcp/%d from %s: no request: %v", p.Port, conn.RemoteAddr(), err)
				return
			}
			logger.Printf("tcp/%d from %s: %q", p.Port, conn.RemoteAddr(), strings.TrimSpace(line))
			_, _ = conn.Write([]byte(Answer(p.Service, line)))
		}()
	}
}

func serveUDP(pc net.PacketConn, p XcatdPort, logger *log.Logger) {
	buf := make([]byte, maxRequest)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			logger.Printf("udp/%d: %v", p.Port, err)
			continue
		}
		req := string(buf[:n])
		logger.Printf("udp/%d from %s: %q", p.Port, from, strings.TrimSpace(req))
		if _, err := pc.WriteTo([]byte(Answer(p.Service, req)), from); err != nil {
			logger.Printf("udp/%d to %s: %v", p.Port, from, err)
		}
	}
}
