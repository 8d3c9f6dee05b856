package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"portwatch/catalog"
)

// These tests talk only to sockets they open on loopback.

func testPacer() *pacer {
	return &pacer{timeout: 150 * time.Millisecond, retries: 1, wait: func(context.Context) error { return nil }}
}

// freeUDPPort returns a loopback port where nothing listens.
func freeUDPPort(t *testing.T, network, host string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	ap := netip.MustParseAddrPort(c.LocalAddr().String())
	c.Close()
	return ap
}

// udpServer answers each datagram with answer(payload); nil means silence.
func udpServer(t *testing.T, answer func([]byte) []byte) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var got atomic.Int32
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(1)
			if a := answer(buf[:n]); a != nil {
				_, _ = c.WriteTo(a, from)
			}
		}
	}()
	return netip.MustParseAddrPort(c.LocalAddr().String()), &got
}

func TestExchangeUDP(t *testing.T) {
	ctx := context.Background()
	p := testPacer()
	echo := func(b []byte) []byte { return append([]byte(nil), b...) }
	equal := func(b []byte) (string, error) {
		if string(b) != "ping" {
			return "", errNotOurs
		}
		return "echoed", nil
	}
	open, _ := udpServer(t, echo)
	silent, silentGot := udpServer(t, func([]byte) []byte { return nil })
	// Answers something else first, then the answer.
	noisy, _ := udpServer(t, func(b []byte) []byte { return []byte("ping") })

	tests := []struct {
		name     string
		dst      netip.AddrPort
		req      datagramRequest
		state    State
		reason   Reason
		attempts int
	}{
		{"answered", open, datagramRequest{payload: []byte("ping"), parse: equal}, StateOpen, ReasonReply, 1},
		{"closed port", freeUDPPort(t, "udp4", "127.0.0.1"), datagramRequest{payload: []byte("ping"), parse: equal},
			StateClosed, ReasonICMPPortUnreachable, 1},
		{"silent", silent, datagramRequest{payload: []byte("ping"), parse: equal}, StateNoAnswer, ReasonNoReply, 2},
		{"one-way, silent", silent, datagramRequest{payload: []byte{}, parse: anyAnswer, oneWay: true},
			StateNoAnswer, ReasonOneWay, 2},
		{"one-way, once", silent, datagramRequest{payload: []byte("line"), parse: anyAnswer, oneWay: true, once: true},
			StateNoAnswer, ReasonOneWay, 1},
		{"one-way, closed", freeUDPPort(t, "udp4", "127.0.0.1"), datagramRequest{payload: []byte("line"), parse: anyAnswer, oneWay: true},
			StateClosed, ReasonICMPPortUnreachable, 1},
		{"answer to something else", noisy, datagramRequest{payload: []byte("x"), parse: func(b []byte) (string, error) {
			return "", errNotOurs
		}}, StateNoAnswer, ReasonNoReply, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := p.exchangeUDP(ctx, tt.dst, false, tt.req)
			if o.state != tt.state || o.reason != tt.reason || o.attempts != tt.attempts {
				t.Errorf("%s %s after %d requests (%s), want %s %s after %d", o.state, o.reason, o.attempts, o.evidence,
					tt.state, tt.reason, tt.attempts)
			}
		})
	}
	if n := silentGot.Load(); n != 5 {
		t.Errorf("the silent server got %d datagrams, want 2 requests, 2 empty datagrams and 1 line", n)
	}
}

// TestICMPFromErrorQueue checks that the ICMP error behind a closed port is
// read from the socket's error queue with its type, code and sender.
func TestICMPFromErrorQueue(t *testing.T) {
	for _, tc := range []struct{ network, host string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(tc.network, func(t *testing.T) {
			dst := freeUDPPort(t, tc.network, tc.host)
			o := testPacer().exchangeUDP(context.Background(), dst, false,
				datagramRequest{payload: []byte("x"), parse: anyAnswer})
			if o.icmp == nil {
				t.Fatalf("no ICMP error from the error queue: %+v", o)
			}
			wantType := uint8(3)
			if tc.network == "udp6" {
				wantType = 1
			}
			if o.icmp.Type != wantType || o.icmp.From != dst.Addr() || o.state != StateClosed {
				t.Errorf("%+v, state %s", o.icmp, o.state)
			}
			if o.rtt <= 0 {
				t.Errorf("no round-trip time for the ICMP error")
			}
		})
	}
}

func TestConnectTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	p := testPacer()
	o := p.connectTCP(context.Background(), netip.MustParseAddrPort(ln.Addr().String()), false)
	if o.state != StateOpen || o.reason != ReasonSYNACK || o.rtt <= 0 || !o.source.IsValid() {
		t.Errorf("listening port: %+v", o)
	}
	closed := freeTCPPort(t)
	o = p.connectTCP(context.Background(), closed, false)
	if o.state != StateClosed || o.reason != ReasonReset {
		t.Errorf("closed port: %+v", o)
	}
	// A row whose clients use ports below 1024: from one when this
	// process may bind it (never a catalog port), else from an ephemeral
	// port, and said so.
	p.avoid = map[uint16]bool{}
	for port := 512; port < 1024; port++ {
		if port != 700 {
			p.avoid[uint16(port)] = true
		}
	}
	o = p.connectTCP(context.Background(), netip.MustParseAddrPort(ln.Addr().String()), true)
	if o.state != StateOpen {
		t.Fatalf("privileged row: %+v", o)
	}
	if privileged := o.source.Port() < 1024; privileged == strings.Contains(o.evidence, "unprivileged port") ||
		(privileged && o.source.Port() != 700) {
		t.Errorf("source port %d, evidence %q", o.source.Port(), o.evidence)
	}
}

func freeTCPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return ap
}

// tftpServer answers a read request from a new port, as TFTP servers do:
// ERROR for a missing file, DATA block 1 for "boot.0"; it records what
// comes back to the new port.
func tftpServer(t *testing.T) (netip.AddrPort, chan []byte) {
	t.Helper()
	followups := make(chan []byte, 4)
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			data, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "boot.0") {
				_, _ = data.WriteTo(append([]byte{0, 3, 0, 1}, make([]byte, 512)...), from)
				_ = data.SetReadDeadline(time.Now().Add(time.Second))
				if m, _, err := data.ReadFrom(buf); err == nil {
					followups <- append([]byte(nil), buf[:m]...)
				}
			} else {
				_, _ = data.WriteTo([]byte("\x00\x05\x00\x01File not found\x00"), from)
			}
			data.Close()
		}
	}()
	return netip.MustParseAddrPort(c.LocalAddr().String()), followups
}

func TestExchangeTFTP(t *testing.T) {
	srv, followups := tftpServer(t)
	p := testPacer()
	o := p.exchangeTFTP(context.Background(), srv, "missing")
	if o.state != StateOpen || !strings.HasPrefix(o.evidence, `TFTP ERROR 1 "File not found" from the server's port`) {
		t.Errorf("missing file: %+v", o)
	}
	o = p.exchangeTFTP(context.Background(), srv, "boot.0")
	if o.state != StateOpen || !strings.HasPrefix(o.evidence, "TFTP DATA block 1 (512 bytes)") {
		t.Errorf("boot file: %+v", o)
	}
	select {
	case b := <-followups:
		if string(b) != string(tftpAbort()) {
			t.Errorf("the server's port got %q, want the abort", b)
		}
	case <-time.After(2 * time.Second):
		t.Error("the probe did not end the transfer")
	}
	o = p.exchangeTFTP(context.Background(), freeUDPPort(t, "udp4", "127.0.0.1"), "x")
	if o.state != StateClosed {
		t.Errorf("closed port: %+v", o)
	}
}

// TestRun probes two site rows on loopback, with a fake observer.
func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	silent, _ := udpServer(t, func([]byte) []byte { return nil })
	closed := freeTCPPort(t)
	site := filepath.Join(t.TempDir(), "site.yaml")
	yaml := fmt.Sprintf(`services:
  - {name: lab-tcp, proto: tcp, port: %d, roles: [mn], need: required, when: [always]}
  - {name: lab-udp, proto: udp, port: %d, roles: [mn], need: required, when: [always]}
  - {name: lab-closed, proto: tcp, port: %d, roles: [mn], need: optional}
`, netip.MustParseAddrPort(ln.Addr().String()).Port(), silent.Port(), closed.Port())
	if err := os.WriteFile(site, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(catalog.Options{SiteFile: site})
	if err != nil {
		t.Fatal(err)
	}

	// The observer saw the UDP datagram arrive (a one-way judgement).
	var reads atomic.Int32
	obs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reads.Add(1)
		d := &ExchangesDoc{Ports: []TrackedPort{{"udp", silent.Port(), "lab-udp"}}}
		if n > 1 {
			d.Exchanges = []Exchange{{Service: "lab-udp", Proto: "udp", Port: silent.Port(), Client: "127.0.0.1", Server: "127.0.0.1", Attempts: 1}}
		}
		_ = json.NewEncoder(w).Encode(d)
	}))
	defer obs.Close()
	oc, _ := NewObserverClient(obs.URL)

	cfg := Config{Catalog: cat, Services: []string{"lab-tcp", "lab-udp", "lab-closed"}, Timeout: 100 * time.Millisecond,
		Retries: 0, Rate: 100, Observer: oc, Settle: 10 * time.Millisecond}
	targets := []Target{{"127.0.0.1", "argument 1"}, {"127.0.0.1", "argument 2"}, {"no-such-host.test", "argument 3"}}
	cfg.Resolver = fakeResolver{}
	rep, err := Run(context.Background(), cfg, targets)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Results {
		got = append(got, fmt.Sprintf("%s %s %v", r.Key(), r.State, r.Required))
	}
	// Results come by port, and the ports are whatever loopback gave.
	slices.Sort(got)
	want := []string{"lab-closed/tcp closed false", "lab-tcp/tcp open true", "lab-udp/udp open true"}
	if !slices.Equal(got, want) {
		t.Errorf("results %v, want %v (the duplicate target probed once)", got, want)
	}
	for i := 1; i < len(rep.Results); i++ {
		if rep.Results[i-1].Port > rep.Results[i].Port {
			t.Errorf("results not by port: %d before %d", rep.Results[i-1].Port, rep.Results[i].Port)
		}
	}
	if len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0].Error(), `argument 3: target "no-such-host.test": no such host`) {
		t.Errorf("failed targets %v", rep.Failed)
	}
	if rep.Observer == nil || rep.Observer.Error != "" || reads.Load() != 2 {
		t.Errorf("observer %+v, read %d times", rep.Observer, reads.Load())
	}
}

type fakeResolver struct{}

func (fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestEveryPacketWaits checks that each packet the probe itself sends waits
// for the rate limiter: retries, the TFTP abort, the TCP connect.
func TestEveryPacketWaits(t *testing.T) {
	var waits atomic.Int32
	p := testPacer()
	p.wait = func(context.Context) error { waits.Add(1); return nil }
	ctx := context.Background()
	count := func(what string, want int32, f func()) {
		t.Helper()
		waits.Store(0)
		f()
		if got := waits.Load(); got != want {
			t.Errorf("%s: waited %d times, want %d", what, got, want)
		}
	}
	silent, _ := udpServer(t, func([]byte) []byte { return nil })
	count("two UDP requests", 2, func() {
		p.exchangeUDP(ctx, silent, false, datagramRequest{payload: []byte("x"), parse: anyAnswer})
	})
	srv, _ := tftpServer(t)
	count("RRQ and abort", 2, func() { p.exchangeTFTP(ctx, srv, "boot.0") })
	count("one connect", 1, func() { p.connectTCP(ctx, freeTCPPort(t), false) })

	p.wait = func(context.Context) error { return context.Canceled }
	if o := p.exchangeUDP(ctx, silent, false, datagramRequest{payload: []byte("x"), parse: anyAnswer}); o.state != StateError || o.attempts != 0 {
		t.Errorf("interrupted before sending: %+v", o)
	}
}
