package loader

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/loader/capture"
)

// BenchmarkLiveRate sends UDP datagrams to a catalog port (IPMI, 623) across
// a veth pair as fast as one sender can, while both backends watch the
// receiving side: XDP + TC and the AF_PACKET capture. Reported: the rate
// sent, and the share of the datagrams each backend counted (the capture
// also reports what the kernel dropped before its socket). 1.0 is nothing
// missed.
func BenchmarkLiveRate(b *testing.B) {
	p := newVethPair(b)
	cat := testCatalog(b)
	l := openIn(b, p.nsA, Config{Catalog: cat, Interfaces: []string{p.ifA}})
	var cb *capture.Backend
	mustInNetns(b, p.nsA, func() (err error) {
		cb, err = capture.StartBackend([]string{p.ifA}, capture.BackendOptions{Catalog: cat, Twin: bpf.DefaultTwinConfig})
		return err
	})
	b.Cleanup(func() { cb.Close() })
	// A listener, so that no ICMP error answers each datagram.
	var sink *net.UDPConn
	mustInNetns(b, p.nsA, func() (err error) {
		sink, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 623})
		return err
	})
	b.Cleanup(func() { sink.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := sink.Read(buf); err != nil {
				return
			}
		}
	}()
	var conn *net.UDPConn
	mustInNetns(b, p.nsB, func() (err error) {
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.a4, 623)))
		return err
	})
	b.Cleanup(func() { conn.Close() })

	ipmi := func(s bpf.Snapshot) uint64 { return s.Services[40].Requests } // ipmi/udp
	xdpBefore, err := l.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	capBefore, err := cb.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 32)
	const perOp = 100_000
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for range perOp {
			if _, err := conn.Write(payload); err != nil {
				b.Fatal(err)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sent := uint64(b.N * perOp)
	time.Sleep(500 * time.Millisecond) // let the capture drain its ring
	xdpAfter, err := l.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	capAfter, err := cb.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "sent-packets/s")
	b.ReportMetric(float64(ipmi(xdpAfter)-ipmi(xdpBefore))/float64(sent), "xdp-seen")
	b.ReportMetric(float64(ipmi(capAfter)-ipmi(capBefore))/float64(sent), "capture-seen")
	b.ReportMetric(float64(capAfter.Lost-capBefore.Lost), "capture-dropped")
}
