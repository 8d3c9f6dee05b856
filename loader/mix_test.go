package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"portwatch/bpf"
)

// The benchmark mix: a management network's traffic during a provisioning
// burst, as a pcapng file that the kernel programs' and the Go twin's
// benchmarks both read. Each packet's first comment names its class
// ("class=tcp-data"); a packet that opens a new exchange when its client is
// new also carries the comment "opens-exchange"; a last comment says what
// it is, for people. TestMixFile writes it from mixPackets below.
var mixFile = filepath.Join("..", "testdata", "mgmt-mix.pcapng")

const (
	mixClassPrefix = "class="
	mixOpens       = "opens-exchange"
)

type mixPacket struct {
	class string
	opens bool
	note  string
	frame []byte
}

func mixPackets(tb testing.TB) []mixPacket {
	mgmt := netip.MustParseAddr("10.0.0.1") // the management node
	node := netip.MustParseAddr("10.0.1.17")
	bmc := netip.MustParseAddr("10.0.2.17")
	mgmt6 := netip.MustParseAddr("fd00::1")
	node6 := netip.MustParseAddr("fd00::1:17")
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	nodeMAC := macClient

	var out []mixPacket
	add := func(class string, opens bool, note string, frame []byte) {
		out = append(out, mixPacket{class, opens, note, frame})
	}

	add("dhcp-discover", true, "DHCP DISCOVER, broadcast", dhcpFrame(tb, ap(netip.IPv4Unspecified(), 68), ap(bcast, 67), layers.DHCPOpRequest, 0x50570001, nodeMAC))
	add("dhcp-offer", false, "DHCP OFFER, same xid", dhcpFrame(tb, ap(mgmt, 67), ap(bcast, 68), layers.DHCPOpReply, 0x50570001, nodeMAC))
	add("dhcp-discover", false, "DHCP REQUEST, same xid", dhcpFrame(tb, ap(netip.IPv4Unspecified(), 68), ap(bcast, 67), layers.DHCPOpRequest, 0x50570001, nodeMAC))
	add("dhcp-offer", false, "DHCP ACK", dhcpFrame(tb, ap(mgmt, 67), ap(bcast, 68), layers.DHCPOpReply, 0x50570001, nodeMAC))

	rrq := append([]byte{0, 1}, []byte("xcat/xnba.kpxe\x00octet\x00blksize\x001468\x00")...)
	add("tftp-rrq", true, "TFTP read request", udpFrame(tb, ap(node, 2070), ap(mgmt, 69), rrq))
	add("tftp-data", false, "TFTP DATA from the server's new port", udpFrame(tb, ap(mgmt, 47001), ap(node, 2070), append([]byte{0, 3, 0, 1}, make([]byte, 1468)...)))
	add("tftp-ack", false, "TFTP ACK to the server's new port", udpFrame(tb, ap(node, 2070), ap(mgmt, 47001), []byte{0, 4, 0, 1}))

	for i, svc := range []struct {
		port uint16
		name string
	}{{3001, "xcatd"}, {3002, "xcatd status"}, {22, "ssh"}, {873, "rsync"}, {80, "http"}} {
		cport := uint16(40000 + i)
		add("tcp-syn", true, svc.name+" SYN", tcpFrame(tb, ap(node, cport), ap(mgmt, svc.port), flagSYN, 1000, nil))
		add("tcp-syn-ack", false, svc.name+" SYN-ACK", tcpFrame(tb, ap(mgmt, svc.port), ap(node, cport), flagSYNACK, 9000, nil))
		add("tcp-ack", false, svc.name+" handshake ACK", tcpFrame(tb, ap(node, cport), ap(mgmt, svc.port), flagACK, 1001, nil))
		add("tcp-data", false, svc.name+" request", tcpFrame(tb, ap(node, cport), ap(mgmt, svc.port), flagPSHACK, 1001, make([]byte, 200)))
		add("tcp-data", false, svc.name+" reply", tcpFrame(tb, ap(mgmt, svc.port), ap(node, cport), flagPSHACK, 9001, make([]byte, 1400)))
	}
	add("tcp-syn", true, "ssh SYN over IPv6", tcpFrame(tb, ap(node6, 40100), ap(mgmt6, 22), flagSYN, 1000, nil))
	add("tcp-data", false, "ssh data over IPv6", tcpFrame(tb, ap(node6, 40100), ap(mgmt6, 22), flagPSHACK, 1001, make([]byte, 100)))

	snmpReq := udpFrame(tb, ap(mgmt, 41000), ap(bmc, 161), make([]byte, 40))
	add("snmp-request", true, "SNMP GET to a switch", snmpReq)
	add("snmp-response", false, "SNMP response", udpFrame(tb, ap(bmc, 161), ap(mgmt, 41000), make([]byte, 120)))
	add("ipmi-request", true, "RMCP+ to a BMC", udpFrame(tb, ap(mgmt, 41001), ap(bmc, 623), make([]byte, 40)))
	add("ipmi-response", false, "RMCP+ answer", udpFrame(tb, ap(bmc, 623), ap(mgmt, 41001), make([]byte, 60)))
	blocked := udpFrame(tb, ap(mgmt, 41002), ap(netip.MustParseAddr("10.0.2.18"), 161), make([]byte, 40))
	add("icmp-unreachable", false, "admin prohibited quoting an SNMP GET", icmpUnreachFrame(tb, bmc, mgmt, 13, ipPacket(blocked)))

	add("non-catalog-tcp", false, "web proxy data on 8080", tcpFrame(tb, ap(node, 40200), ap(mgmt, 8080), flagPSHACK, 5, make([]byte, 300)))
	add("non-catalog-udp", false, "mDNS query", udpFrame(tb, ap(node, 5353), ap(netip.MustParseAddr("10.0.0.255"), 5353), make([]byte, 40)))
	return out
}

func writeMix(tb testing.TB, w io.Writer, pkts []mixPacket) {
	intf := pcapgo.DefaultNgInterface
	intf.LinkType = layers.LinkTypeEthernet
	intf.OS = "linux"
	intf.Name = "mgmt0"
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "portwatch",
		Comment: "portwatch benchmark mix: each packet's first comment is class=NAME; a packet that opens " +
			"a new exchange for a new client also says opens-exchange",
	}}
	nw, err := pcapgo.NewNgWriterInterface(w, intf, opts)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, p := range pkts {
		comments := []string{mixClassPrefix + p.class}
		if p.opens {
			comments = append(comments, mixOpens)
		}
		comments = append(comments, p.note)
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond),
			CaptureLength: len(p.frame), Length: len(p.frame)}
		if err := nw.WritePacketWithOptions(ci, p.frame, pcapgo.NgPacketOptions{Comments: comments}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := nw.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// readMix reads the shared mix file.
func readMix(tb testing.TB) []mixPacket {
	f, err := os.Open(mixFile)
	if err != nil {
		tb.Fatalf("%v (write it with `go test ./loader -run TestMixFile -update`)", err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		tb.Fatal(err)
	}
	var out []mixPacket
	for {
		data, _, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		p := mixPacket{frame: append([]byte(nil), data...)}
		for _, c := range opts.Comments {
			switch {
			case strings.HasPrefix(c, mixClassPrefix):
				p.class = strings.TrimPrefix(c, mixClassPrefix)
			case c == mixOpens:
				p.opens = true
			default:
				p.note = c
			}
		}
		if p.class == "" {
			tb.Fatalf("%s: packet %d has no class comment", mixFile, len(out)+1)
		}
		out = append(out, p)
	}
}

func TestMixFile(t *testing.T) {
	var buf bytes.Buffer
	writeMix(t, &buf, mixPackets(t))
	if *update {
		if err := os.WriteFile(mixFile, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := mixPackets(t)
	got := readMix(t)
	if len(got) != len(want) {
		t.Fatalf("%s has %d packets, the generator %d (rerun with -update)", mixFile, len(got), len(want))
	}
	for i := range got {
		if got[i].class != want[i].class || got[i].opens != want[i].opens || !bytes.Equal(got[i].frame, want[i].frame) {
			t.Errorf("%s packet %d (%s) differs from the generator's (rerun with -update)", mixFile, i+1, got[i].note)
		}
	}
}

// Every packet of the mix passes both programs, and each lands where its
// class says: the mix measures the paths it claims to.
func TestMixPaths(t *testing.T) {
	l := loadForTest(t, Config{})
	cat := testCatalog(t)
	for _, p := range readMix(t) {
		before := mustSnapshot(t, l)
		ret, err := l.RunXDP(p.frame)
		if err != nil || ret != xdpPass {
			t.Fatalf("%s: %d, %v", p.note, ret, err)
		}
		d := diff(cat, before, mustSnapshot(t, l))
		var got []string
		for k := range d.services {
			got = append(got, k)
		}
		want := map[string]string{
			"dhcp-discover": "bootps/udp", "dhcp-offer": "bootps/udp", "tftp-rrq": "tftp-udp/udp",
			"tftp-data": "tftp-udp/udp", "tftp-ack": "tftp-udp/udp", "snmp-request": "snmp/udp",
			"snmp-response": "snmp/udp", "ipmi-request": "ipmi/udp", "ipmi-response": "ipmi/udp",
			"icmp-unreachable": "snmp/udp", "non-catalog-tcp": "none", "non-catalog-udp": "none",
		}[p.class]
		if strings.HasPrefix(p.class, "tcp-") {
			want = "catalog tcp"
			if len(got) == 1 && strings.HasSuffix(got[0], "/tcp") {
				got[0] = want
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s (%s) counted under %v, want %s", p.note, p.class, got, want)
		}
		if p.class == "tcp-data" || p.class == "tcp-ack" {
			if len(d.exchanges) != 0 || d.parse[bpf.ParsePackets] != 1 || len(d.parse) != 1 {
				t.Errorf("%s: established TCP touched the tables: %v %v", p.note, d.exchanges, d.parse)
			}
		}
		if p.opens && d.parse[bpf.ParseExchangeNew] != 1 {
			t.Errorf("%s says it opens an exchange, but parse counters %v", p.note, fmt.Sprint(d.parse))
		}
	}
}
