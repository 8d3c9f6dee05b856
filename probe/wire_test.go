package probe

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"portwatch/catalog"
	"portwatch/catalog/rpcbind"
	goldenfile "portwatch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// datagram is one UDP datagram of a capture.
type datagram struct {
	src, dst netip.AddrPort
	payload  []byte
}

// labDatagrams reads testdata/lab-replies.pcap: what `portwatch probe` sent
// from a lab node to mn, the BMC and the switch (scenario open), and what
// the real daemons (dnsmasq, rpcbind, snmpd, ipmi_sim, the lab's xcatd and
// mountd simulators) answered.
func labDatagrams(t *testing.T) []datagram {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "lab-replies.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []datagram
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		out = append(out, datagram{
			src:     netip.AddrPortFrom(src, uint16(udp.SrcPort)),
			dst:     netip.AddrPortFrom(dst, uint16(udp.DstPort)),
			payload: udp.Payload,
		})
	}
}

// exchange finds the request to server port and the first datagram back
// to the request's source port.
func exchange(t *testing.T, ds []datagram, port uint16, nth int) (req, reply datagram) {
	t.Helper()
	seen := 0
	for i, d := range ds {
		if d.dst.Port() != port {
			continue
		}
		if seen++; seen <= nth {
			continue
		}
		for _, back := range ds[i+1:] {
			// A DHCP answer goes to the client port, broadcast: the
			// client has no address yet.
			if back.dst == d.src || (d.src.Port() == dhcpClientPort && back.dst.Port() == dhcpClientPort) {
				return d, back
			}
		}
		t.Fatalf("no answer to the request to port %d", port)
	}
	t.Fatalf("no request %d to port %d in the capture", nth, port)
	return
}

// TestLabReplies runs each parser on the answer a real server gave to the
// request the probe really sent, and checks that the builders produce that
// request byte for byte.
func TestLabReplies(t *testing.T) {
	ds := labDatagrams(t)
	server := netip.MustParseAddr("10.77.0.10")

	t.Run("dns", func(t *testing.T) {
		req, reply := exchange(t, ds, 53, 0)
		id := binary.BigEndian.Uint16(req.payload)
		want, _ := dnsQuery(id, reverseName(server), dnsTypePTR)
		if !bytes.Equal(req.payload, want) {
			t.Errorf("query\n got %x\nwant %x", req.payload, want)
		}
		a, err := parseDNSResponse(reply.payload, id)
		if err != nil || a.RCode != 0 || a.PTR != "mn.cluster.test." || !a.Authoritative {
			t.Errorf("dnsmasq's answer: %+v, %v", a, err)
		}
		if _, err := parseDNSResponse(reply.payload, id+1); !errors.Is(err, errNotOurs) {
			t.Errorf("another id: %v", err)
		}
	})
	t.Run("dhcp", func(t *testing.T) {
		req, reply := exchange(t, ds, dhcpServerPort, 0)
		if req.src.String() != "0.0.0.0:68" || req.dst.String() != "255.255.255.255:67" {
			t.Errorf("DISCOVER went %s -> %s, want 0.0.0.0:68 -> 255.255.255.255:67", req.src, req.dst)
		}
		xid := binary.BigEndian.Uint32(req.payload[4:])
		mac := net.HardwareAddr(req.payload[28:34])
		want := dhcpMessage{Type: dhcpDiscover, XID: xid, MAC: mac, Broadcast: true}.Marshal()
		if !bytes.Equal(req.payload, want) {
			t.Errorf("DISCOVER\n got %x\nwant %x", req.payload, want)
		}
		r, err := parseDHCPReply(reply.payload, xid, mac)
		if err != nil || r.Type != dhcpOffer || r.ServerID != server || r.YIAddr.String() != "10.77.1.11" ||
			r.GIAddr.String() != "10.77.1.1" || r.Bootfile != "pxelinux.0" {
			t.Errorf("dnsmasq's OFFER through the relay: %+v, %v", r, err)
		}
		if _, err := parseDHCPReply(reply.payload, xid+1, mac); !errors.Is(err, errNotOurs) {
			t.Errorf("another xid: %v", err)
		}
	})
	t.Run("tftp", func(t *testing.T) {
		req, reply := exchange(t, ds, 69, 0)
		if want := tftpReadRequest(DefaultTFTPFile); !bytes.Equal(req.payload, want) {
			t.Errorf("RRQ %q, want %q", req.payload, want)
		}
		if reply.src.Port() == 69 {
			t.Errorf("dnsmasq answered from port 69; the capture should show a new port")
		}
		r, err := parseTFTPReply(reply.payload)
		if err != nil || r.Opcode != tftpERROR || r.ErrorCode != 1 || !strings.Contains(r.Message, "not found") {
			t.Errorf("ERROR for a missing file: %+v, %v", r, err)
		}
		req, reply = exchange(t, ds, 69, 1)
		if want := tftpReadRequest("pxelinux.0"); !bytes.Equal(req.payload, want) {
			t.Errorf("RRQ %q, want %q", req.payload, want)
		}
		r, err = parseTFTPReply(reply.payload)
		if err != nil || r.Opcode != tftpDATA || r.Block != 1 || r.DataBytes != 512 {
			t.Errorf("DATA of pxelinux.0: %+v, %v", r, err)
		}
		// The probe ended the transfer with an ERROR to the server's port.
		var abort []byte
		for _, d := range ds {
			if d.dst == reply.src {
				abort = d.payload
			}
		}
		if !bytes.Equal(abort, tftpAbort()) {
			t.Errorf("abort sent to the server's port: %q, want %q", abort, tftpAbort())
		}
	})
	t.Run("rpcbind", func(t *testing.T) {
		req, reply := exchange(t, ds, 111, 0)
		xid := binary.BigEndian.Uint32(req.payload)
		if want := rpcCall(xid, programPortmapper, 2, procDump); !bytes.Equal(req.payload, want) {
			t.Errorf("DUMP call\n got %x\nwant %x", req.payload, want)
		}
		rep, err := parseRPCReply(reply.payload, xid)
		if err != nil || !rep.Accepted || rep.AcceptStat != 0 {
			t.Fatalf("rpcbind's reply: %+v, %v", rep, err)
		}
		got := dumpMappings(req.payload, reply.payload, server)
		for _, proto := range []catalog.Proto{catalog.UDP, catalog.TCP} {
			if !slices.ContainsFunc(got, func(m rpcbind.Mapping) bool {
				return m.Program == programMount && m.Proto == proto && m.Port == 20048
			}) {
				t.Errorf("no mountd %s/20048 in %v", proto, got)
			}
		}
	})
	t.Run("mountd", func(t *testing.T) {
		req, reply := exchange(t, ds, 20048, 0)
		xid := binary.BigEndian.Uint32(req.payload)
		if want := rpcCall(xid, programMount, 3, procNull); !bytes.Equal(req.payload, want) {
			t.Errorf("MOUNT NULL call\n got %x\nwant %x", req.payload, want)
		}
		rep, err := parseRPCReply(reply.payload, xid)
		if err != nil || !rep.Accepted || rep.AcceptStat != 0 {
			t.Errorf("mountd's reply: %+v, %v", rep, err)
		}
	})
	t.Run("snmp", func(t *testing.T) {
		req, reply := exchange(t, ds, 161, 0)
		id := snmpRequestID(t, req.payload)
		if want := snmpGet(DefaultSNMPCommunity, id); !bytes.Equal(req.payload, want) {
			t.Errorf("GET\n got %x\nwant %x", req.payload, want)
		}
		a, err := parseSNMPResponse(reply.payload, id)
		if err != nil || a.ErrorStatus != 0 || !strings.HasPrefix(a.Value, "Linux") {
			t.Errorf("snmpd's response: %+v, %v", a, err)
		}
		if _, err := parseSNMPResponse(reply.payload, id+1); !errors.Is(err, errNotOurs) {
			t.Errorf("another request id: %v", err)
		}
	})
	t.Run("rmcp", func(t *testing.T) {
		req, reply := exchange(t, ds, 623, 0)
		tag := req.payload[9]
		if want := asfPing(tag); !bytes.Equal(req.payload, want) {
			t.Errorf("ping %x, want %x", req.payload, want)
		}
		p, err := parseASFPong(reply.payload, tag)
		if err != nil || p.Entities != 0x81 {
			t.Errorf("ipmi_sim's pong: %+v, %v", p, err)
		}
		if p.String() != "ASF presence pong, IPMI supported, ASF version 1" {
			t.Errorf("evidence %q", p)
		}
	})
	t.Run("syslog", func(t *testing.T) {
		var line []byte
		for _, d := range ds {
			if d.dst.Port() == 514 {
				line = d.payload
			}
		}
		if !bytes.HasPrefix(line, []byte("<14>1 ")) || !bytes.Contains(line, []byte(" portwatch - probe - portwatch probe ")) {
			t.Errorf("syslog line %q", line)
		}
	})
}

// snmpRequestID reads the request id of a GetRequest.
func snmpRequestID(t *testing.T, b []byte) int32 {
	t.Helper()
	msg, _, err := berRead(b, berSequence)
	if err == nil {
		_, msg, err = berRead(msg, berInteger)
	}
	if err == nil {
		_, msg, err = berRead(msg, berOctetString)
	}
	var pdu []byte
	if err == nil {
		pdu, _, err = berRead(msg, pduGetRequest)
	}
	var id int64
	if err == nil {
		id, _, err = berReadInt(pdu)
	}
	if err != nil {
		t.Fatalf("not a GetRequest: %x", b)
	}
	return int32(id)
}

// TestRequests keeps the requests, built with fixed ids, in a golden file:
// docs/probe.md shows the same bytes.
func TestRequests(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x70, 0x77, 0x01, 0x00, 0x0b}
	q, err := dnsQuery(0x1234, "11.1.77.10.in-addr.arpa", dnsTypePTR)
	if err != nil {
		t.Fatal(err)
	}
	requests := []struct {
		name string
		b    []byte
	}{
		{"dhcp-discover (xid 0x01020304)", dhcpMessage{Type: dhcpDiscover, XID: 0x01020304, MAC: mac, Broadcast: true}.Marshal()},
		{"pxe-request (xid 0x01020304, from 10.77.1.11)", dhcpMessage{Type: dhcpRequest, XID: 0x01020304, MAC: mac,
			CIAddr: netip.MustParseAddr("10.77.1.11")}.Marshal()},
		{"tftp-rrq", tftpReadRequest(DefaultTFTPFile)},
		{"tftp abort", tftpAbort()},
		{"dns-query (id 0x1234, PTR of 10.77.1.11)", q},
		{"snmp-get (request id 0x01020304, community public)", snmpGet("public", 0x01020304)},
		{"rmcp-ping (tag 0x42)", asfPing(0x42)},
		{"rpcbind-dump (xid 0x01020304)", rpcCall(0x01020304, programPortmapper, 2, procDump)},
		{"nfs-null (xid 0x01020304)", rpcCall(0x01020304, programNFS, 3, procNull)},
		{"mount-null (xid 0x01020304)", rpcCall(0x01020304, programMount, 3, procNull)},
		{"dhcp-discover as sent on the raw socket (IPv4 and UDP headers)", ipv4UDP(netip.IPv4Unspecified(),
			netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, []byte{})},
	}
	var b strings.Builder
	for _, r := range requests {
		fmt.Fprintf(&b, "%s: %d bytes\n%s\n", r.name, len(r.b), hex.Dump(r.b))
	}
	golden(t, "requests", b.String())
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, name+".golden", []byte(got), *update)
}

func TestDHCPMessageLayout(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x70, 0x77, 0x01, 0x00, 0x0b}
	b := dhcpMessage{Type: dhcpDiscover, XID: 0xdeadbeef, MAC: mac, Broadcast: true}.Marshal()
	checks := []struct {
		what string
		off  int
		want []byte
	}{
		{"op, htype, hlen, hops", 0, []byte{1, 1, 6, 0}},
		{"xid", 4, []byte{0xde, 0xad, 0xbe, 0xef}},
		{"secs, broadcast flag", 8, []byte{0, 0, 0x80, 0}},
		{"ciaddr yiaddr siaddr giaddr", 12, make([]byte, 16)},
		{"chaddr", 28, append(append([]byte{}, mac...), make([]byte, 10)...)},
		{"magic cookie", 236, []byte{99, 130, 83, 99}},
		{"option 53 DISCOVER", 240, []byte{53, 1, 1}},
	}
	for _, c := range checks {
		if got := b[c.off : c.off+len(c.want)]; !bytes.Equal(got, c.want) {
			t.Errorf("%s at %d: %x, want %x", c.what, c.off, got, c.want)
		}
	}
	if len(b) != bootpMinSize {
		t.Errorf("%d bytes, want BOOTP's minimum %d", len(b), bootpMinSize)
	}
	if !bytes.Contains(b, append([]byte{optVendorClass, byte(len(pxeVendorClass))}, pxeVendorClass...)) {
		t.Error("no PXE vendor class")
	}
	req := dhcpMessage{Type: dhcpRequest, XID: 1, MAC: mac, CIAddr: netip.MustParseAddr("10.77.1.11")}.Marshal()
	if !bytes.Equal(req[12:16], []byte{10, 77, 1, 11}) || req[10]&0x80 != 0 {
		t.Errorf("PXE request: ciaddr %v, flags %x", req[12:16], req[10:12])
	}
}

func TestParseDHCPReply(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x70, 0x77, 0x01, 0x00, 0x0b}
	reply := func(xid uint32, opts ...byte) []byte {
		b := make([]byte, 240)
		b[0], b[1], b[2] = bootReply, 1, 6
		binary.BigEndian.PutUint32(b[4:], xid)
		copy(b[16:], []byte{10, 77, 1, 11})
		copy(b[28:], mac)
		copy(b[108:], "from-the-file-field")
		copy(b[236:], dhcpMagicCookie)
		return append(b, opts...)
	}
	tests := []struct {
		name    string
		b       []byte
		want    dhcpReply
		wantErr string
	}{
		{"offer", reply(7, 53, 1, 2, 54, 4, 10, 77, 0, 10, 0, 0, 67, 4, 'a', '.', '0', 0, 255),
			dhcpReply{Type: dhcpOffer, ServerID: netip.MustParseAddr("10.77.0.10"), Bootfile: "a.0"}, ""},
		{"ack, boot file in the file field", reply(7, 53, 1, 5, 255), dhcpReply{Type: dhcpAck, Bootfile: "from-the-file-field"}, ""},
		{"nak", reply(7, 53, 1, 6), dhcpReply{Type: dhcpNak, Bootfile: "from-the-file-field"}, ""},
		{"another xid", reply(8, 53, 1, 2), dhcpReply{}, errNotOurs.Error()},
		{"no message type", reply(7, 255), dhcpReply{}, "without a DHCP message type"},
		{"option cut short", reply(7, 53, 1, 2, 54, 4, 10), dhcpReply{Type: dhcpOffer, Bootfile: "from-the-file-field"}, ""},
		{"a request, not a reply", append([]byte{bootRequest}, reply(7, 53, 1, 1)[1:]...), dhcpReply{}, errNotOurs.Error()},
		{"short", []byte{2, 1, 6}, dhcpReply{}, errNotOurs.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDHCPReply(tt.b, 7, mac)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.want.Type || got.ServerID != tt.want.ServerID || got.Bootfile != tt.want.Bootfile ||
				got.YIAddr.String() != "10.77.1.11" {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// A cookie that is not DHCP's is an error, not someone else's reply.
	b := reply(7, 53, 1, 2)
	b[236] = 0
	if _, err := parseDHCPReply(b, 7, mac); err == nil || errors.Is(err, errNotOurs) {
		t.Errorf("bad cookie: %v", err)
	}
}

func TestIPv4UDP(t *testing.T) {
	payload := dhcpMessage{Type: dhcpDiscover, XID: 9, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Broadcast: true}.Marshal()
	pkt := ipv4UDP(netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, payload)
	if checksum(pkt[:20], 0) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	// gopacket, an independent encoder, lays out the same packet with
	// the same checksums.
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IPv4zero.To4(), DstIP: net.IPv4bcast.To4()}
	udp := &layers.UDP{SrcPort: 68, DstPort: 67}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkt, buf.Bytes()) {
		t.Errorf("packet differs from gopacket's:\n got %x\nwant %x", pkt[:28], buf.Bytes()[:28])
	}
	src, sport, dport, got, ok := udpOfIPv4(pkt)
	if !ok || src != netip.IPv4Unspecified() || sport != 68 || dport != 67 || !bytes.Equal(got, payload) {
		t.Errorf("udpOfIPv4: %v %d %d ok=%v", src, sport, dport, ok)
	}
	frag := slices.Clone(pkt)
	frag[6], frag[7] = 0x00, 0x10 // a fragment offset: no UDP header here
	if _, _, _, _, ok := udpOfIPv4(frag); ok {
		t.Error("a later fragment read as UDP")
	}
	if _, _, _, _, ok := udpOfIPv4(pkt[:25]); ok {
		t.Error("a truncated packet read as UDP")
	}
}

func TestTFTP(t *testing.T) {
	if got, want := tftpReadRequest("pxelinux.0"), []byte("\x00\x01pxelinux.0\x00octet\x00"); !bytes.Equal(got, want) {
		t.Errorf("RRQ %q, want %q", got, want)
	}
	tests := []struct {
		name string
		b    []byte
		want string
		ours bool
	}{
		{"data block 1", append([]byte{0, 3, 0, 1}, make([]byte, 512)...), "TFTP DATA block 1 (512 bytes)", true},
		{"data block 2 is a later answer", []byte{0, 3, 0, 2, 1}, "", false},
		{"error", []byte("\x00\x05\x00\x01File not found\x00"), `TFTP ERROR 1 "File not found"`, true},
		{"error without its NUL", []byte("\x00\x05\x00\x02Access"), `TFTP ERROR 2 "Access"`, true},
		{"oack", []byte("\x00\x06blksize\x001468\x00"), "TFTP OACK", true},
		{"an ACK is not an answer", []byte{0, 4, 0, 1}, "", false},
		{"short", []byte{0, 5}, "", false},
	}
	for _, tt := range tests {
		r, err := parseTFTPReply(tt.b)
		if !tt.ours {
			if !errors.Is(err, errNotOurs) {
				t.Errorf("%s: %v, %v", tt.name, r, err)
			}
			continue
		}
		if err != nil || r.String() != tt.want {
			t.Errorf("%s: %q, %v, want %q", tt.name, r, err, tt.want)
		}
	}
}

func TestDNS(t *testing.T) {
	q, err := dnsQuery(0xabcd, "mn.cluster.test.", dnsTypeA)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02mn\x07cluster\x04test\x00\x00\x01\x00\x01")
	if !bytes.Equal(q, want) {
		t.Errorf("query\n got %x\nwant %x", q, want)
	}
	for _, bad := range []string{"a..b", strings.Repeat("x", 64) + ".test", strings.Repeat("abcdefg.", 40)} {
		if _, err := dnsQuery(1, bad, dnsTypeA); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	for name, want := range map[string]uint16{"11.1.77.10.in-addr.arpa.": dnsTypePTR, "mn": dnsTypeA, "1.0.ip6.arpa": dnsTypePTR} {
		if got := dnsQueryType(name); got != want {
			t.Errorf("type of %s: %d, want %d", name, got, want)
		}
	}
	for addr, want := range map[string]string{
		"10.77.1.11": "11.1.77.10.in-addr.arpa.",
		"fd00::1":    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
	} {
		if got := reverseName(netip.MustParseAddr(addr)); got != want {
			t.Errorf("reverse of %s: %s, want %s", addr, got, want)
		}
	}

	// A response with a compressed PTR answer pointing back into the
	// question, NXDOMAIN, a pointer loop, and a truncated message.
	resp := func(flags uint16, an uint16, answers ...byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, 0x1111)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = append(b, 0, 1, byte(an>>8), byte(an), 0, 0, 0, 0)
		b = append(b, "\x0211\x011\x0277\x0210\x07in-addr\x04arpa\x00\x00\x0c\x00\x01"...)
		return append(b, answers...)
	}
	ptr := []byte("\xc0\x0c\x00\x0c\x00\x01\x00\x00\x00\x3c\x00\x05\x02mn\xc0\x0f")
	tests := []struct {
		name string
		b    []byte
		want string
		ours bool
	}{
		{"PTR, compressed", resp(0x8580, 1, ptr...), "DNS response NOERROR, 1 answers, authoritative, PTR mn.1.77.10.in-addr.arpa.", true},
		{"NXDOMAIN", resp(0x8183, 0), "DNS response NXDOMAIN, 0 answers", true},
		{"REFUSED", resp(0x8105, 0), "DNS response REFUSED, 0 answers", true},
		{"pointer loop", resp(0x8180, 1, 0xc0, byte(len(resp(0, 0)))), "DNS response NOERROR, 1 answers", true},
		{"answer cut short", resp(0x8180, 1, ptr[:8]...), "DNS response NOERROR, 1 answers", true},
		{"a query, not a response", resp(0x0100, 0), "", false},
		{"short", []byte{0x11, 0x11, 0x80}, "", false},
	}
	for _, tt := range tests {
		a, err := parseDNSResponse(tt.b, 0x1111)
		if !tt.ours {
			if !errors.Is(err, errNotOurs) {
				t.Errorf("%s: %v, %v", tt.name, a, err)
			}
			continue
		}
		if err != nil || a.String() != tt.want {
			t.Errorf("%s: %q, %v\n want %q", tt.name, a, err, tt.want)
		}
	}
}

func TestSNMP(t *testing.T) {
	// What net-snmp's `snmpget -v2c -c public HOST 1.3.6.1.2.1.1.1.0`
	// sent in the lab, request id 0x677c70da.
	want, _ := hex.DecodeString("302902010104067075626c6963a01c0204677c70da020100020100300e300c06082b060102010101000500")
	if got := snmpGet("public", 0x677c70da); !bytes.Equal(got, want) {
		t.Errorf("GET\n got %x\nwant %x", got, want)
	}
	long := strings.Repeat("c", 200)
	if b := snmpGet(long, 1); b[1] != 0x81 || int(b[2]) != len(b)-3 {
		t.Errorf("a long community needs the long length form: %x", b[:4])
	}
	for v, want := range map[int64]string{0: "020100", 127: "02017f", 128: "02020080", -1: "0201ff", -129: "0202ff7f", 0x01020304: "020401020304"} {
		if got := hex.EncodeToString(berInt(v)); got != want {
			t.Errorf("INTEGER %d: %s, want %s", v, got, want)
		}
	}

	response := func(id byte, status byte, value ...byte) []byte {
		vb := berTLV(berSequence, append(berTLV(berOID, oidSysDescr), value...))
		pdu := append([]byte{2, 1, id, 2, 1, status, 2, 1, 0}, berTLV(berSequence, vb)...)
		msg := append([]byte{2, 1, 1}, berTLV(berOctetString, []byte("public"))...)
		return berTLV(berSequence, append(msg, berTLV(pduResponse, pdu)...))
	}
	tests := []struct {
		name string
		b    []byte
		want string
		ours bool
	}{
		{"sysDescr", response(1, 0, berTLV(berOctetString, []byte("Cisco IOS\r\nSoftware"))...), `SNMP response, sysDescr "Cisco IOS Software"`, true},
		{"noSuchObject", response(1, 0, 0x80, 0), `SNMP response, sysDescr "(noSuchObject)"`, true},
		{"an error status", response(1, 2, 5, 0), "SNMP response, error-status 2", true},
		{"another request", response(2, 0, 5, 0), "", false},
		{"a GetRequest", snmpGet("public", 1), "", false},
		{"trailing bytes", append(response(1, 0, 5, 0), 0), "", false},
		{"garbage", []byte{0x30, 0x82, 0xff}, "", false},
	}
	for _, tt := range tests {
		a, err := parseSNMPResponse(tt.b, 1)
		if !tt.ours {
			if !errors.Is(err, errNotOurs) {
				t.Errorf("%s: %v, %v", tt.name, a, err)
			}
			continue
		}
		if err != nil || a.String() != tt.want {
			t.Errorf("%s: %q, %v, want %q", tt.name, a, err, tt.want)
		}
	}
}

func TestRMCP(t *testing.T) {
	if got, want := asfPing(0x42), []byte{6, 0, 0xff, 6, 0, 0, 0x11, 0xbe, 0x80, 0x42, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("ping %x, want %x", got, want)
	}
	pong := []byte{6, 0, 0xff, 6, 0, 0, 0x11, 0xbe, 0x40, 0x42, 0, 0x10, 0, 0, 0x11, 0xbe, 0, 0, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0}
	tests := []struct {
		name string
		b    []byte
		tag  byte
		want string
		ours bool
	}{
		{"pong", pong, 0x42, "ASF presence pong, IPMI supported, ASF version 1", true},
		{"pong with its data cut short", pong[:14], 0x42, "ASF presence pong", true},
		{"another tag", pong, 0x43, "", false},
		{"our own ping", asfPing(0x42), 0x42, "", false},
		{"IPMI class, not ASF", append([]byte{6, 0, 0xff, 7}, pong[4:]...), 0x42, "", false},
		{"short", pong[:8], 0x42, "", false},
	}
	for _, tt := range tests {
		p, err := parseASFPong(tt.b, tt.tag)
		if !tt.ours {
			if !errors.Is(err, errNotOurs) {
				t.Errorf("%s: %v, %v", tt.name, p, err)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("%s: %q, %v", tt.name, p, err)
		}
	}
}

func TestRPC(t *testing.T) {
	want, _ := hex.DecodeString("01020304" + "00000000" + "00000002" + "000186a3" + "00000003" + "00000000" + "0000000000000000" + "0000000000000000")
	if got := rpcCall(0x01020304, programNFS, 3, procNull); !bytes.Equal(got, want) {
		t.Errorf("NFS NULL call\n got %x\nwant %x", got, want)
	}
	u32s := func(v ...uint32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.BigEndian.AppendUint32(b, x)
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want string
		ours bool
	}{
		{"success", u32s(7, 1, 0, 0, 0, 0), "NFS v3 NULL: accepted", true},
		{"version mismatch", u32s(7, 1, 0, 0, 0, 2, 4, 4), "NFS v3 NULL: version not offered (versions 4-4), but the server answered", true},
		{"program unavailable", u32s(7, 1, 0, 0, 0, 1), "NFS v3 NULL: program not available on this port, but the port answered", true},
		{"denied", u32s(7, 1, 1, 1, 1), "NFS v3 NULL: call denied (RPC version or authentication), but the server answered", true},
		{"verifier with a body", append(u32s(7, 1, 0, 1, 8), append(make([]byte, 8), u32s(0)...)...), "NFS v3 NULL: accepted", true},
		{"another xid", u32s(8, 1, 0, 0, 0, 0), "", false},
		{"a call", rpcCall(7, programNFS, 3, 0), "", false},
		{"short", u32s(7), "", false},
	}
	for _, tt := range tests {
		rep, err := parseRPCReply(tt.b, 7)
		if !tt.ours {
			if !errors.Is(err, errNotOurs) {
				t.Errorf("%s: %+v, %v", tt.name, rep, err)
			}
			continue
		}
		if err != nil || rep.describe("NFS v3 NULL") != tt.want {
			t.Errorf("%s: %q, %v", tt.name, rep.describe("NFS v3 NULL"), err)
		}
	}
	if _, err := parseRPCReply(u32s(7, 1, 0, 0), 7); err == nil || errors.Is(err, errNotOurs) {
		t.Errorf("a truncated accepted reply: %v", err)
	}
	if _, err := parseRPCReply(u32s(7, 1, 9), 7); err == nil {
		t.Error("reply status 9 accepted")
	}

	// DUMP, through the same parser the observer learns mountd's port
	// with: a version 2 list of (program, version, protocol, port).
	call := rpcCall(5, programPortmapper, 2, procDump)
	reply := u32s(5, 1, 0, 0, 0, 0, 1, 100000, 2, 17, 111, 1, 100005, 3, 17, 20048, 1, 100005, 3, 6, 20050, 0)
	got := dumpMappings(call, reply, netip.MustParseAddr("10.77.0.10"))
	if len(got) != 3 || got[1].Port != 20048 || got[2].Proto != catalog.TCP || got[2].Port != 20050 {
		t.Errorf("mappings %v", got)
	}
	if s := describeMappings(got); s != "rpcbind DUMP: 3 registrations; mountd on [tcp/20050 udp/20048]" {
		t.Errorf("evidence %q", s)
	}
	if s := describeMappings(got[:1]); !strings.HasSuffix(s, "no mountd registered") {
		t.Errorf("evidence %q", s)
	}
}

func TestICMPClassify(t *testing.T) {
	from := netip.MustParseAddr("10.77.1.1")
	tests := []struct {
		e      ICMPError
		state  State
		reason Reason
	}{
		{ICMPError{Type: 3, Code: 3, From: from}, StateClosed, ReasonICMPPortUnreachable},
		{ICMPError{Type: 3, Code: 13, From: from}, StateFiltered, ReasonICMPAdminProhibited},
		{ICMPError{Type: 3, Code: 9}, StateFiltered, ReasonICMPAdminProhibited},
		{ICMPError{Type: 3, Code: 10}, StateFiltered, ReasonICMPAdminProhibited},
		{ICMPError{Type: 3, Code: 1}, StateUnreachable, ReasonICMPHostUnreachable},
		{ICMPError{Type: 3, Code: 0}, StateUnreachable, ReasonICMPNetUnreachable},
		{ICMPError{Type: 3, Code: 2}, StateUnreachable, ReasonICMPOther},
		{ICMPError{Type: 11, Code: 0}, StateUnreachable, ReasonICMPOther},
		{ICMPError{V6: true, Type: 1, Code: 4}, StateClosed, ReasonICMPPortUnreachable},
		{ICMPError{V6: true, Type: 1, Code: 1}, StateFiltered, ReasonICMPAdminProhibited},
		{ICMPError{V6: true, Type: 1, Code: 6}, StateFiltered, ReasonICMPAdminProhibited},
		{ICMPError{V6: true, Type: 1, Code: 3}, StateUnreachable, ReasonICMPHostUnreachable},
		{ICMPError{V6: true, Type: 1, Code: 0}, StateUnreachable, ReasonICMPNetUnreachable},
		{ICMPError{V6: true, Type: 3, Code: 0}, StateUnreachable, ReasonICMPOther},
	}
	for _, tt := range tests {
		if s, r := tt.e.classify(); s != tt.state || r != tt.reason {
			t.Errorf("%v: %s %s, want %s %s", tt.e, s, r, tt.state, tt.reason)
		}
	}
	if got := (ICMPError{Type: 3, Code: 13, From: from}).String(); got != "ICMP administratively prohibited (type 3 code 13) from 10.77.1.1" {
		t.Errorf("evidence %q", got)
	}
}

// FuzzReplies feeds every parser the same bytes: none may panic, and
// whatever they accept must be sane.
func FuzzReplies(f *testing.F) {
	mac := net.HardwareAddr{2, 0x70, 0x77, 1, 0, 11}
	f.Add([]byte{0, 5, 0, 1, 'x', 0})
	f.Add(asfPing(1))
	f.Add(snmpGet("public", 1))
	f.Add(dhcpMessage{Type: dhcpDiscover, XID: 1, MAC: mac}.Marshal())
	f.Add(rpcCall(1, programPortmapper, 2, procDump))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseTFTPReply(b)
		_, _ = parseDNSResponse(b, binary.BigEndian.Uint16(append(b, 0, 0)))
		_, _ = parseSNMPResponse(b, 1)
		_, _ = parseASFPong(b, 1)
		_, _ = parseRPCReply(b, binary.BigEndian.Uint32(append(b, 0, 0, 0, 0)))
		_ = dumpMappings(rpcCall(1, programPortmapper, 2, procDump), b, netip.MustParseAddr("10.0.0.1"))
		if r, err := parseDHCPReply(b, binary.BigEndian.Uint32(append(b, 0, 0, 0, 0, 0, 0, 0, 0)[4:]), mac); err == nil && r.Type == 0 {
			t.Errorf("a DHCP reply without a type accepted: %+v", r)
		}
		_, _, _, payload, ok := udpOfIPv4(b)
		if ok && len(payload) > len(b) {
			t.Errorf("payload longer than the packet")
		}
	})
}
