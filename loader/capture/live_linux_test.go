//go:build linux

package capture

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// collector reads a live source in the background, keeping copies.
type collector struct {
	mu      sync.Mutex
	packets []readPacket
	done    chan error
}

func collect(src Source) *collector {
	c := &collector{done: make(chan error, 1)}
	go func() {
		for {
			p, err := src.Next()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				c.done <- err
				return
			}
			c.mu.Lock()
			c.packets = append(c.packets, readPacket{p.Timestamp, append([]byte(nil), p.Data...), p.WireLen, p.Network, p.EtherType, p.Interface, p.Number})
			c.mu.Unlock()
		}
	}()
	return c
}

// sendFrame sends a raw frame out of ifc through an AF_PACKET socket: the
// only way here to put a VLAN tag on the wire (there is no 8021q module).
func sendFrame(t *testing.T, ifc string, frame []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	i, err := net.InterfaceByName(ifc)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: i.Index, Halen: 6}); err != nil {
		t.Fatal(err)
	}
}

// listen accepts TCP connections on port and reads them to their end.
func listen(t *testing.T, ip net.IP, port int) {
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
}

// send connects to ip:port and writes data; a refused connection is fine.
func send(t *testing.T, ip net.IP, port int, data []byte) {
	c, err := net.DialTimeout("tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		t.Errorf("writing to port %d: %v", port, err)
	}
}

func TestLiveCapture(t *testing.T) {
	n := newTestNet(t)
	cat := builtinCatalog(t)
	var src LiveSource
	n.inNS(t, n.nsA, func() {
		var err error
		src, err = OpenLive(n.ifA, LiveOptions{Catalog: cat, BlockTimeout: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		listen(t, n.ipA, 3001)  // xcatd: a catalog port
		listen(t, n.ipA, 40000) // not in the catalog
		listen(t, n.ipA, 40001) // mountd, once learned
	})
	t.Cleanup(func() { src.Close() })
	got := collect(src)

	bulk := bytes.Repeat([]byte("bulk data on a port the catalog does not name "), 20000)
	n.inNS(t, n.nsB, func() {
		send(t, n.ipA, 3001, []byte("hello xcatd"))
		send(t, n.ipA, 3002, []byte("nobody listens")) // RST
		send(t, n.ipA, 40000, bulk)
		send(t, n.ipA, 40001, []byte("before the port is learned"))
		u, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: n.ipA, Port: 50999})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = u.Write([]byte("to a closed UDP port")) // ICMP port unreachable
		u.Close()
		tagged := frame(t, &layers.Ethernet{SrcMAC: n.macB, DstMAC: n.macA, EthernetType: layers.EthernetTypeDot1Q},
			dot1q(42, layers.EthernetTypeIPv4),
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: n.ipB, DstIP: n.ipA},
			udp(5555, 3001), gopacket.Payload("tagged 42"))
		sendFrame(t, n.ifB, tagged)
		qinq := frame(t, &layers.Ethernet{SrcMAC: n.macB, DstMAC: n.macA, EthernetType: layers.EthernetTypeQinQ},
			dot1q(100, layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4),
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: n.ipB, DstIP: n.ipA},
			tcp(5555, 40000, "PA"), gopacket.Payload("qinq data on a non-catalog port"))
		sendFrame(t, n.ifB, qinq)
		qinqCatalog := frame(t, &layers.Ethernet{SrcMAC: n.macB, DstMAC: n.macA, EthernetType: layers.EthernetTypeQinQ},
			dot1q(100, layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4),
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: n.ipB, DstIP: n.ipA},
			tcp(5555, 3001, "PA"), gopacket.Payload("qinq to xcatd"))
		sendFrame(t, n.ifB, qinqCatalog)
	})
	time.Sleep(200 * time.Millisecond)

	learned, err := cat.WithLearnedPort("mount-tcp/tcp", 40001)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetCatalog(learned); err != nil {
		t.Fatal(err)
	}
	n.inNS(t, n.nsB, func() { send(t, n.ipA, 40001, []byte("after the port is learned")) })
	time.Sleep(200 * time.Millisecond)

	received, dropped, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got.done; err != nil {
		t.Fatalf("Next: %v", err)
	}
	t.Logf("%d packets delivered; kernel: %d received, %d dropped", len(got.packets), received, dropped)
	if received < uint64(len(got.packets))/2 || received == 0 {
		t.Errorf("kernel counted %d packets, %d delivered", received, len(got.packets))
	}

	var (
		synIn, synAckOut, rstOut, icmpOut, helloData               bool
		bulkSyn, bulkSynAck, bulkData, beforeLearned, afterLearned bool
		vlanFrame, qinqFrame, qinqDelivered                        bool
		numbersInOrder                                             = true
	)
	for i, p := range got.packets {
		if p.Number != uint64(i+1) {
			numbersInOrder = false
		}
		if p.Network || p.Interface == 0 || p.WireLen < len(p.Data) {
			t.Errorf("packet %d: Network %v, Interface %d, WireLen %d, %d bytes", i+1, p.Network, p.Interface, p.WireLen, len(p.Data))
		}
		d := decode(p.Data)
		if d.ip4 == nil {
			continue
		}
		fromB, fromA := d.ip4.SrcIP.Equal(n.ipB), d.ip4.SrcIP.Equal(n.ipA)
		switch {
		case d.tcp != nil:
			port := d.tcp.DstPort
			if fromA {
				port = d.tcp.SrcPort
			}
			switch {
			case port == 3001 && len(d.vlans) == 2:
				qinqFrame = d.outer == layers.EthernetTypeQinQ && d.vlans[0].VLANIdentifier == 100 && d.vlans[1].VLANIdentifier == 42
			case port == 3001 && fromB && d.tcp.SYN && !d.tcp.ACK:
				synIn = true
			case port == 3001 && fromA && d.tcp.SYN && d.tcp.ACK:
				synAckOut = true
			case port == 3001 && fromB && bytes.Equal(d.payload, []byte("hello xcatd")):
				helloData = true
			case port == 3002 && fromA && d.tcp.RST:
				rstOut = true
			case port == 40000 && len(d.vlans) > 0:
				qinqDelivered = true
			case port == 40000 && d.tcp.SYN && !d.tcp.ACK:
				bulkSyn = true
			case port == 40000 && d.tcp.SYN && d.tcp.ACK:
				bulkSynAck = true
			case port == 40000 && len(d.payload) > 0:
				bulkData = true
			case port == 40001 && bytes.Equal(d.payload, []byte("before the port is learned")):
				beforeLearned = true
			case port == 40001 && bytes.Equal(d.payload, []byte("after the port is learned")):
				afterLearned = true
			}
		case d.udp != nil && d.udp.DstPort == 3001 && fromB:
			vlanFrame = len(d.vlans) == 1 && d.outer == layers.EthernetTypeDot1Q && d.vlans[0].VLANIdentifier == 42 &&
				bytes.Equal(d.payload, []byte("tagged 42")) && p.WireLen == len(p.Data)
		case d.icmp != nil && fromA && d.icmp.TypeCode.Type() == layers.ICMPv4TypeDestinationUnreachable:
			icmpOut = true
		}
	}
	for _, c := range []struct {
		what string
		ok   bool
	}{
		{"packet numbers 1, 2, 3, ...", numbersInOrder},
		{"incoming SYN to 3001", synIn},
		{"outgoing SYN-ACK from 3001", synAckOut},
		{"data to 3001", helloData},
		{"outgoing RST from closed 3002", rstOut},
		{"outgoing ICMP port unreachable", icmpOut},
		{"SYN to non-catalog 40000", bulkSyn},
		{"SYN-ACK from non-catalog 40000", bulkSynAck},
		{"802.1Q frame with its tag put back", vlanFrame},
		{"QinQ frame with its outer tag put back", qinqFrame},
		{"data to 40001 after SetCatalog learned it", afterLearned},
	} {
		if !c.ok {
			t.Errorf("not seen: %s", c.what)
		}
	}
	if bulkData {
		t.Error("the filter delivered data on non-catalog port 40000")
	}
	if qinqDelivered {
		t.Error("the filter delivered QinQ data on non-catalog port 40000")
	}
	if beforeLearned {
		t.Error("the filter delivered data on 40001 before SetCatalog learned it")
	}
}

func TestOpenLiveErrors(t *testing.T) {
	_, err := OpenLive("pwnosuchif0", LiveOptions{})
	if err == nil || !strings.Contains(err.Error(), "no such interface (see `ip link`)") {
		t.Errorf("unknown interface: %v", err)
	}
}

// TestLiveCloseWakesNext: Close from another goroutine ends a Next that
// waits on a quiet interface, with io.EOF, and the counters stay readable.
func TestLiveCloseWakesNext(t *testing.T) {
	n := newTestNet(t)
	var src LiveSource
	n.inNS(t, n.nsA, func() {
		var err error
		if src, err = OpenLive("lo", LiveOptions{Catalog: builtinCatalog(t)}); err != nil {
			t.Fatal(err)
		}
	})
	next := make(chan error, 1)
	go func() {
		_, err := src.Next()
		next <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-next:
		if err != io.EOF {
			t.Fatalf("Next after Close: %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Next")
	}
	if _, _, err := src.Stats(); err != nil {
		t.Errorf("Stats after Close: %v", err)
	}
	if _, err := src.Next(); err != io.EOF {
		t.Errorf("Next after Close: %v", err)
	}
}

// TestLiveCountsDrops fills a small ring that nobody reads: the kernel's
// drops must show in Stats, since the classifier reports them as lost.
func TestLiveCountsDrops(t *testing.T) {
	n := newTestNet(t)
	var src LiveSource
	n.inNS(t, n.nsA, func() {
		var err error
		if src, err = OpenLive(n.ifA, LiveOptions{RingBytes: 1, BlockTimeout: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	})
	defer src.Close()
	const sent = 2000
	n.inNS(t, n.nsB, func() {
		u, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: n.ipA, Port: 69})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		for range sent {
			_, _ = u.Write(make([]byte, 512))
		}
	})
	time.Sleep(100 * time.Millisecond)
	received, dropped, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, kernel received %d, dropped %d", sent, received, dropped)
	if dropped == 0 || received < dropped {
		t.Errorf("a full ring counted %d received, %d dropped", received, dropped)
	}
	// Reading resets the kernel's counters; Stats keeps the totals.
	if r2, d2, err := src.Stats(); err != nil || r2 < received || d2 < dropped {
		t.Errorf("second Stats: %d, %d, %v", r2, d2, err)
	}
}
