package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

// writeTemp writes a capture into the test's temporary directory.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testFrames are Ethernet frames of several kinds and lengths.
func testFrames(t testing.TB) [][]byte {
	return [][]byte{
		frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 3001, "S")),
		frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(50000, 69), payload),
		frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolTCP), tcp(50123, 22, "PA"), payload),
		frame(t, eth(layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(68, 67), payload),
	}
}

func TestPcapgoWritersRoundTrip(t *testing.T) {
	frames := testFrames(t)
	for _, nanos := range []bool{false, true} {
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		resolution := time.Microsecond
		if nanos {
			w = pcapgo.NewWriterNanos(&buf)
			resolution = time.Nanosecond
		}
		if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		var want []time.Time
		for i, f := range frames {
			ts := t0.Add(time.Duration(i) * 1001 * time.Nanosecond).Truncate(resolution)
			want = append(want, ts)
			// A wire length above the captured one: a snapshot cut.
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f) + i}, f); err != nil {
				t.Fatal(err)
			}
		}
		got, err := readFile(writeTemp(t, "pcapgo.pcap", buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		checkPackets(t, got, frames, want)
		for i, p := range got {
			if p.WireLen != len(frames[i])+i {
				t.Errorf("nanos=%v packet %d: WireLen %d, want %d", nanos, i+1, p.WireLen, len(frames[i])+i)
			}
		}
	}
}

// checkPackets compares Ethernet packets read with the frames and times written.
func checkPackets(t *testing.T, got []readPacket, frames [][]byte, times []time.Time) {
	t.Helper()
	if len(got) != len(frames) {
		t.Fatalf("read %d packets, wrote %d", len(got), len(frames))
	}
	for i, p := range got {
		if !p.Timestamp.Equal(times[i]) {
			t.Errorf("packet %d: timestamp %v, want %v", i+1, p.Timestamp.Format(time.RFC3339Nano), times[i].Format(time.RFC3339Nano))
		}
		if !bytes.Equal(p.Data, frames[i]) || p.Network {
			t.Errorf("packet %d: data or Network differ", i+1)
		}
		if p.Number != uint64(i+1) {
			t.Errorf("packet %d numbered %d", i+1, p.Number)
		}
	}
}

func TestPcapBothByteOrdersAndResolutions(t *testing.T) {
	frames := testFrames(t)
	for _, order := range []binary.AppendByteOrder{binary.BigEndian, binary.LittleEndian} {
		for _, nanos := range []bool{false, true} {
			var records []pcapRecord
			var times []time.Time
			for i, f := range frames {
				ts := t0.Add(time.Duration(i) * 999_999_937 * time.Nanosecond)
				frac := uint32(ts.Nanosecond())
				if !nanos {
					frac /= 1000
					ts = ts.Truncate(time.Microsecond)
				}
				records = append(records, rec(uint32(ts.Unix()), frac, f))
				times = append(times, ts)
			}
			got, err := readFile(writeTemp(t, "x.pcap", pcapFile(order, nanos, 262144, linktypeEthernet, records...)))
			if err != nil {
				t.Fatalf("%v nanos=%v: %v", order, nanos, err)
			}
			checkPackets(t, got, frames, times)
		}
	}
}

func TestPcapngWriterTwoInterfaces(t *testing.T) {
	// pcapgo's writer: two interfaces of different link types.
	frames := testFrames(t)
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	rawID, err := w.AddInterface(pcapgo.NgInterface{Name: "tun0", LinkType: layers.LinkTypeRaw})
	if err != nil {
		t.Fatal(err)
	}
	ipPacket := frames[0][14:]
	for i, f := range frames {
		ts := t0.Add(time.Duration(i) * time.Second)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts.Add(time.Nanosecond), CaptureLength: len(ipPacket), Length: len(ipPacket), InterfaceIndex: rawID}, ipPacket); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := readFile(writeTemp(t, "two.pcapng", buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*len(frames) {
		t.Fatalf("read %d packets, want %d", len(got), 2*len(frames))
	}
	for i := range frames {
		eth, raw := got[2*i], got[2*i+1]
		ts := t0.Add(time.Duration(i) * time.Second)
		if !eth.Timestamp.Equal(ts) || !bytes.Equal(eth.Data, frames[i]) || eth.Network || eth.Interface != 0 {
			t.Errorf("ethernet packet %d: %+v", i, eth)
		}
		if !raw.Timestamp.Equal(ts.Add(time.Nanosecond)) || !bytes.Equal(raw.Data, ipPacket) || !raw.Network || raw.EtherType != EtherTypeIPv4 || raw.Interface != rawID {
			t.Errorf("raw packet %d: %+v", i, raw)
		}
	}
}

func TestPcapngResolutionsAndSections(t *testing.T) {
	f := testFrames(t)[1]
	ip := f[14:]
	sll2 := append(sll2Header(EtherTypeIPv4), ip...)
	// Section 1, big-endian: microseconds (no option), 2^-20 and 10^-9.
	// Section 2, little-endian: 10^-3 with an offset of 100 s, and a
	// simple packet block.
	w := newNg(binary.BigEndian).
		iface(linktypeEthernet, 0).
		iface(linktypeRaw, 0, tsresol(0x80|20)).
		iface(linktypeSLL2, 0, tsresol(9))
	sec := uint64(t0.Unix())
	w.epb(0, sec*1e6+123456, uint32(len(f)), uint32(len(f)), f)
	w.epb(1, sec<<20|(1<<19), uint32(len(ip)), uint32(len(ip)), ip) // half a second
	w.epb(2, sec*1e9+123456789, uint32(len(sll2)), uint32(len(sll2)), sll2)
	w.section(binary.LittleEndian).
		iface(linktypeEthernet, 128, tsresol(3), option{ngOptTSOffset, binary.LittleEndian.AppendUint64(nil, 100)})
	w.epb(0, sec*1e3+7, uint32(len(f)), uint32(len(f)), f)
	w.spb(uint32(len(f)), f)
	got, err := readFile(writeTemp(t, "res.pcapng", w.b))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		ts      time.Time
		iface   int
		network bool
	}{
		{time.Unix(int64(sec), 123456000), 0, false},
		{time.Unix(int64(sec), 500000000), 1, true},
		{time.Unix(int64(sec), 123456789), 2, true},
		{time.Unix(int64(sec)+100, 7000000), 0, false},
		{time.Unix(int64(sec)+100, 7000000), 0, false}, // the simple packet takes the last time
	}
	if len(got) != len(want) {
		t.Fatalf("read %d packets, want %d", len(got), len(want))
	}
	for i, w := range want {
		p := got[i]
		if !p.Timestamp.Equal(w.ts) || p.Interface != w.iface || p.Network != w.network {
			t.Errorf("packet %d: time %v iface %d network %v, want %v %d %v", i+1, p.Timestamp.Format(time.RFC3339Nano), p.Interface, p.Network, w.ts.UTC().Format(time.RFC3339Nano), w.iface, w.network)
		}
		if w.network && (!bytes.Equal(p.Data, ip) || p.EtherType != EtherTypeIPv4) {
			t.Errorf("packet %d: network data %x type %#x", i+1, p.Data, p.EtherType)
		}
	}
}

func TestPcapngBinaryResolutionExact(t *testing.T) {
	// 2^-30 units: each fraction must convert to the nanosecond below the
	// exact value, never off by the truncated-scale error.
	f := testFrames(t)[0]
	w := newNg(binary.LittleEndian).iface(linktypeEthernet, 0, tsresol(0x80|30))
	fracs := []uint64{0, 1, 3, 1 << 29, 1<<30 - 1, 123456789}
	for _, fr := range fracs {
		w.epb(0, 1000<<30|fr, uint32(len(f)), uint32(len(f)), f)
	}
	got, err := readFile(writeTemp(t, "bin.pcapng", w.b))
	if err != nil {
		t.Fatal(err)
	}
	for i, fr := range fracs {
		want := time.Unix(1000, int64(fr*1e9>>30))
		if !got[i].Timestamp.Equal(want) {
			t.Errorf("fraction %d/2^30: %v, want %v", fr, got[i].Timestamp.Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339Nano))
		}
	}
}

// sllHeader is a Linux cooked v1 header of an incoming packet from macB.
func sllHeader(proto uint16) []byte {
	h := binary.BigEndian.AppendUint16(nil, 0) // to us
	h = binary.BigEndian.AppendUint16(h, 1)    // ARPHRD_ETHER
	h = binary.BigEndian.AppendUint16(h, 6)
	h = append(h, macB...)
	h = append(h, 0, 0)
	return binary.BigEndian.AppendUint16(h, proto)
}

// sll2Header is a Linux cooked v2 header of an incoming packet from macB.
func sll2Header(proto uint16) []byte {
	h := binary.BigEndian.AppendUint16(nil, proto)
	h = append(h, 0, 0)                     // reserved
	h = binary.BigEndian.AppendUint32(h, 3) // ifindex
	h = binary.BigEndian.AppendUint16(h, 1) // ARPHRD_ETHER
	h = append(h, 0, 6)                     // to us, address length
	h = append(h, macB...)
	return append(h, 0, 0)
}

func TestLinkTypes(t *testing.T) {
	ip4 := frame(t, ipv4(layers.IPProtocolUDP), udp(50000, 69), payload)
	ip6 := frame(t, ipv6(layers.IPProtocolUDP), udp(546, 547), payload)
	// A tagged payload: TCI of VLAN 42, then the inner EtherType.
	tagged := append([]byte{0x00, 42, 0x08, 0x00}, ip4...)
	taggedFrame := append(append(append([]byte{}, make([]byte, 6)...), macB...), append([]byte{0x81, 0x00}, tagged...)...)
	cases := []struct {
		name      string
		linkType  uint32
		frame     []byte
		data      []byte
		network   bool
		etherType uint16
	}{
		{"ethernet", linktypeEthernet, testFrames(t)[3], testFrames(t)[3], false, 0},
		{"raw 101 ipv4", linktypeRaw, ip4, ip4, true, EtherTypeIPv4},
		{"raw 101 ipv6", linktypeRaw, ip6, ip6, true, EtherTypeIPv6},
		{"raw 101 not ip", linktypeRaw, []byte{0x12, 0x34}, []byte{0x12, 0x34}, true, 0},
		{"DLT_RAW 12", dltRaw12, ip4, ip4, true, EtherTypeIPv4},
		{"DLT_RAW 14", dltRaw14, ip6, ip6, true, EtherTypeIPv6},
		{"ipv4 228", linktypeIPv4, ip4, ip4, true, EtherTypeIPv4},
		{"ipv6 229", linktypeIPv6, ip6, ip6, true, EtherTypeIPv6},
		{"sll ipv4", linktypeSLL, append(sllHeader(EtherTypeIPv4), ip4...), ip4, true, EtherTypeIPv4},
		{"sll arp", linktypeSLL, append(sllHeader(0x0806), 1, 2, 3), []byte{1, 2, 3}, true, 0x0806},
		{"sll 802.1Q", linktypeSLL, append(sllHeader(etherTypeVLAN), tagged...), taggedFrame, false, 0},
		{"sll truncated", linktypeSLL, sllHeader(EtherTypeIPv4)[:10], []byte{}, false, 0},
		{"sll2 ipv6", linktypeSLL2, append(sll2Header(EtherTypeIPv6), ip6...), ip6, true, EtherTypeIPv6},
		{"sll2 802.1Q", linktypeSLL2, append(sll2Header(etherTypeVLAN), tagged...), taggedFrame, false, 0},
		{"null host order ipv4", linktypeNull, append([]byte{2, 0, 0, 0}, ip4...), ip4, true, EtherTypeIPv4},
		{"null network order ipv6 (NetBSD)", linktypeNull, append([]byte{0, 0, 0, 24}, ip6...), ip6, true, EtherTypeIPv6},
		{"loop ipv6 (FreeBSD)", linktypeLoop, append([]byte{0, 0, 0, 28}, ip6...), ip6, true, EtherTypeIPv6},
		{"loop ipv6 (Darwin) host order", linktypeLoop, append([]byte{30, 0, 0, 0}, ip6...), ip6, true, EtherTypeIPv6},
		{"null unknown family", linktypeNull, append([]byte{0, 0, 0, 7}, ip4...), ip4, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := pcapFile(binary.LittleEndian, false, 65535, c.linkType, rec(1, 2, c.frame))
			got, err := readFile(writeTemp(t, "lt.pcap", file))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("read %d packets", len(got))
			}
			p := got[0]
			if !bytes.Equal(p.Data, c.data) || p.Network != c.network || p.EtherType != c.etherType {
				t.Errorf("got data %x network %v type %#04x\nwant data %x network %v type %#04x", p.Data, p.Network, p.EtherType, c.data, c.network, c.etherType)
			}
			if c.name == "sll 802.1Q" || c.name == "sll2 802.1Q" {
				d := decode(p.Data)
				if len(d.vlans) != 1 || d.vlans[0].VLANIdentifier != 42 || d.udp == nil || d.udp.DstPort != 69 {
					t.Errorf("the Ethernet view does not parse as VLAN 42 carrying UDP to 69")
				}
			}
		})
	}
}

// damagedCase is a damaged capture and the error it must give.
type damagedCase struct {
	name   string
	data   []byte
	good   int    // packets delivered before the error
	packet uint64 // InputError.Packet
	offset int64  // InputError.Offset
	msg    string
}

func TestDamagedInput(t *testing.T) {
	for _, c := range damagedCases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "damaged", c.data)
			got, err := readFile(path)
			if err == nil {
				t.Fatalf("read %d packets without error", len(got))
			}
			ie := asInputError(t, err)
			if len(got) != c.good {
				t.Errorf("%d good packets delivered before the error, want %d", len(got), c.good)
			}
			if ie.Name != path || ie.Packet != c.packet || ie.Offset != c.offset {
				t.Errorf("error at %s packet %d offset %d, want %s packet %d offset %d", ie.Name, ie.Packet, ie.Offset, path, c.packet, c.offset)
			}
			if !strings.Contains(ie.Msg, c.msg) {
				t.Errorf("message %q does not contain %q", ie.Msg, c.msg)
			}
			if !strings.HasPrefix(ie.Error(), path+": ") || !strings.Contains(ie.Error(), "byte offset") {
				t.Errorf("Error() = %q does not name the file and offset", ie.Error())
			}
			// The error is final.
			if src, oerr := Open(path); oerr == nil {
				for range c.good + 3 {
					_, err = src.Next()
				}
				if _, again := src.Next(); again != err {
					t.Errorf("after the error, Next returned %v, then %v", err, again)
				}
				src.Close()
			}
		})
	}
}

func damagedCases(t testing.TB) []damagedCase {
	f := testFrames(t)[2]
	n := len(f)
	le := binary.LittleEndian
	good := []pcapRecord{rec(1, 0, f), rec(2, 0, f)}
	pcapGood := pcapFile(le, false, 65535, linktypeEthernet, good...)
	recordLen := 16 + len(f)
	ng := func() *ngWriter {
		return newNg(le).iface(linktypeEthernet, 0).epb(0, 1, uint32(len(f)), uint32(len(f)), f).epb(0, 2, uint32(len(f)), uint32(len(f)), f)
	}
	ngGood := ng().b
	ngPrefix := len(ngGood) // offset of the block after the two good ones
	corruptTrailer := ng().epb(0, 3, uint32(len(f)), uint32(len(f)), f).b
	le.PutUint32(corruptTrailer[len(corruptTrailer)-4:], 999)
	badLength := append(ng().b, ng().epb(0, 3, uint32(len(f)), uint32(len(f)), f).b[ngPrefix:]...)
	le.PutUint32(badLength[ngPrefix+4:], 30)
	shortLength := append([]byte{}, ngGood...)
	shortLength = append(shortLength, 6, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0)
	return []damagedCase{
		{"empty file", nil, 0, 0, 0, "empty file"},
		{"not a capture (GIF)", []byte("GIF89a\x01\x00\x01\x00"), 0, 0, 0, "not a capture file: starts with 'GIF89a"},
		{"not a capture (binary)", []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, 0, 0, 0, "not a capture file: starts with 0x7f454c46"},
		{"three bytes", []byte("abc"), 0, 0, 0, "not a capture file: only 3 bytes"},
		{"pcap header cut", pcapGood[:20], 0, 0, 0, "ends inside the pcap file header (20 of 24 bytes)"},
		{"pcap truncated last record data", pcapGood[:len(pcapGood)-5], 1, 2, int64(24 + recordLen), "ends inside the packet data"},
		{"pcap truncated last record header", append(append([]byte{}, pcapGood...), 1, 2, 3), 2, 3, int64(24 + 2*recordLen), "ends inside the packet record header (3 of 16 bytes)"},
		{"pcap caplen above snaplen", pcapFile(le, false, 64, linktypeEthernet, rec(1, 0, f[:60]), rec(2, 0, f)), 1, 2, 24 + 16 + 60, fmt.Sprintf("captured length %d exceeds the snapshot length 64", n)},
		{"pcap caplen above wire length", pcapFile(le, false, 65535, linktypeEthernet, rec(1, 0, f), pcapRecord{2, 0, uint32(len(f)), 40, f}), 1, 2, int64(24 + recordLen), fmt.Sprintf("captured length %d exceeds the length on the wire 40", n)},
		{"pcap unknown link type", pcapFile(le, false, 65535, 105, good...), 0, 0, 20, "link type 105 (IEEE 802.11) is not supported: capture on the Ethernet interface, or with tcpdump -i any"},
		{"pcap bad version", func() []byte { b := append([]byte{}, pcapGood...); le.PutUint16(b[4:], 3); return b }(), 0, 0, 4, "pcap version 3.4 is not supported"},
		{"pcapng truncated last block", ngGood[:len(ngGood)-6], 1, 2, int64(ngPrefix - (12 + 20 + pad4(len(f)))), "ends inside the pcapng block"},
		{"pcapng trailing length mismatch", corruptTrailer, 2, 3, int64(ngPrefix), fmt.Sprintf("its length is %d at the start and 999 at the end", 32+pad4(n))},
		{"pcapng block length not a multiple of 4", badLength, 2, 3, int64(ngPrefix), "bad length 30 (not a multiple of 4)"},
		{"pcapng block length too small", shortLength, 2, 3, int64(ngPrefix), "bad length 8 (less than 12)"},
		{"pcapng caplen overruns block", ng().epb(0, 3, 500, 500, f).b, 2, 3, int64(ngPrefix), "captured length 500 overruns its enhanced packet block"},
		{"pcapng caplen above wire length", ng().epb(0, 3, uint32(len(f)), 10, f).b, 2, 3, int64(ngPrefix), fmt.Sprintf("captured length %d exceeds the length on the wire 10", n)},
		{"pcapng caplen above interface snaplen", newNg(le).iface(linktypeEthernet, 64).epb(0, 3, uint32(len(f)), uint32(len(f)), f).b, 0, 1, 28 + 20, "exceeds the snapshot length 64 of interface 0"},
		{"pcapng unknown interface", ng().epb(7, 3, uint32(len(f)), uint32(len(f)), f).b, 2, 3, int64(ngPrefix), "refers to interface 7, but the section describes 1 interface(s)"},
		{"pcapng unknown link type", newNg(le).iface(linktypeEthernet, 0).iface(127, 0).epb(0, 1, uint32(len(f)), uint32(len(f)), f).epb(1, 2, 4, 4, f[:4]).b, 1, 2, int64(28 + 20 + 20 + 12 + 20 + pad4(len(f))), "link type 127 (IEEE 802.11 with radiotap header) is not supported"},
		{"pcapng bad byte-order magic", func() []byte { b := append([]byte{}, ngGood...); b[8] = 0x99; return b }(), 0, 0, 0, "bad byte-order magic"},
		{"pcapng bad version", func() []byte { b := append([]byte{}, ngGood...); le.PutUint16(b[12:], 2); return b }(), 0, 0, 0, "pcapng version 2.0 is not supported"},
		{"pcapng resolution too fine", newNg(le).iface(linktypeEthernet, 0, tsresol(20)).b, 0, 0, 28, "timestamp resolution 10^-20 is finer"},
	}
}

// slowPipe feeds a capture through an io.Pipe: the header and the first
// record, then nothing until the reader has had its first packet.
func TestStreamingDeliversBeforeTheWriterEnds(t *testing.T) {
	f := testFrames(t)[0]
	le := binary.LittleEndian
	pcap := pcapFile(le, false, 65535, linktypeEthernet, rec(1, 0, f), rec(2, 0, f), rec(3, 0, f))
	ng := newNg(le).iface(linktypeEthernet, 0).epb(0, 1, uint32(len(f)), uint32(len(f)), f)
	firstEnd := len(ng.b)
	ng.epb(0, 2, uint32(len(f)), uint32(len(f)), f).epb(0, 3, uint32(len(f)), uint32(len(f)), f)
	for _, c := range []struct {
		name     string
		data     []byte
		firstEnd int
	}{
		{"pcap", pcap, 24 + 16 + len(f)},
		{"pcapng", ng.b, firstEnd},
	} {
		t.Run(c.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			firstRead := make(chan struct{})
			writerDone := make(chan struct{})
			go func() {
				defer close(writerDone)
				// Byte by byte, as a slow pipe might deliver.
				for i := range c.firstEnd {
					if _, err := pw.Write(c.data[i : i+1]); err != nil {
						return
					}
				}
				select {
				case <-firstRead:
				case <-time.After(5 * time.Second):
				}
				_, _ = pw.Write(c.data[c.firstEnd:])
				pw.Close()
			}()
			src, err := OpenReader("stdin", pr)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			done := make(chan error, 1)
			go func() {
				p, err := src.Next()
				if err == nil && p.Number != 1 {
					t.Errorf("first packet numbered %d", p.Number)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the first packet was not delivered while the writer waited: the reader reads ahead")
			}
			select {
			case <-writerDone:
				t.Fatal("the writer finished before the first packet was delivered")
			default:
			}
			close(firstRead)
			rest, err := readAll(src)
			if err != nil || len(rest) != 2 {
				t.Fatalf("then %d packets, %v", len(rest), err)
			}
		})
	}
}

func TestGzipCapture(t *testing.T) {
	frames := testFrames(t)
	var records []pcapRecord
	for i, f := range frames {
		records = append(records, rec(uint32(i), 0, f))
	}
	var buf bytes.Buffer
	zw := gzipWriter(&buf)
	_, _ = zw.Write(pcapFile(binary.BigEndian, true, 65535, linktypeEthernet, records...))
	zw.Close()
	got, err := readFile(writeTemp(t, "x.pcap.gz", buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(frames) {
		t.Fatalf("read %d packets of %d", len(got), len(frames))
	}
}
