package capture

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gopacket/gopacket/layers"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seed corpus")

// FuzzCaptureReader feeds arbitrary bytes to Open. Nothing may panic; an
// error is an *InputError; every packet is within its lengths; and reading
// the same bytes as a stream that trickles one byte per Read gives the same
// packets and the same error, so streaming never changes what is read.
func FuzzCaptureReader(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "input")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fromFile, fileErr := readFile(path)
		if fileErr != nil {
			asInputError(t, fileErr)
		}
		for i, p := range fromFile {
			if p.Number != uint64(i+1) {
				t.Fatalf("packet %d numbered %d", i+1, p.Number)
			}
			if len(p.Data) > p.WireLen {
				t.Fatalf("packet %d: %d bytes captured of %d on the wire", i+1, len(p.Data), p.WireLen)
			}
		}
		var fromStream []readPacket
		src, streamErr := OpenReader(path, iotest.OneByteReader(bytes.NewReader(data)))
		if streamErr == nil {
			fromStream, streamErr = readAll(src)
			src.Close()
		}
		if fmt.Sprint(fileErr) != fmt.Sprint(streamErr) {
			t.Fatalf("file error %v, stream error %v", fileErr, streamErr)
		}
		if len(fromFile) != len(fromStream) {
			t.Fatalf("%d packets from the file, %d from the stream", len(fromFile), len(fromStream))
		}
		for i := range fromFile {
			a, b := fromFile[i], fromStream[i]
			if !a.Timestamp.Equal(b.Timestamp) || !bytes.Equal(a.Data, b.Data) || a.WireLen != b.WireLen || a.Network != b.Network || a.EtherType != b.EtherType || a.Interface != b.Interface {
				t.Fatalf("packet %d differs between file and stream", i+1)
			}
		}
	})
}

// maxSeedSize keeps committed seeds small.
const maxSeedSize = 2048

// TestFuzzSeedCorpus checks that the committed seed corpus is there, and
// with -update rewrites it: small captures of tcpdump's test suite (one or
// two of each link type and format) and the damaged files of
// TestDamagedInput.
func TestFuzzSeedCorpus(t *testing.T) {
	corpus := filepath.Join("testdata", "fuzz", "FuzzCaptureReader")
	if !*updateSeeds {
		entries, err := os.ReadDir(corpus)
		if err != nil || len(entries) < 20 {
			t.Fatalf("seed corpus %s has %d files (%v); run go test -run TestFuzzSeedCorpus -update with PORTWATCH_TCPDUMP_TESTS set", corpus, len(entries), err)
		}
		return
	}
	seeds := map[string][]byte{}
	for _, c := range damagedCases(t) {
		seeds["damaged-"+strings.NewReplacer(" ", "-", "(", "", ")", "", ".", "").Replace(c.name)] = c.data
	}
	// Every supported link type, with and without VLAN tags.
	ip4 := frame(t, ipv4(layers.IPProtocolUDP), udp(50000, 69), payload)
	tagged := append([]byte{0x00, 42, 0x08, 0x00}, ip4...)
	le := binary.LittleEndian
	seeds["linktype-sll-vlan"] = pcapFile(le, false, 65535, linktypeSLL, rec(1, 0, append(sllHeader(etherTypeVLAN), tagged...)), rec(2, 0, append(sllHeader(EtherTypeIPv4), ip4...)))
	seeds["linktype-sll2-vlan"] = pcapFile(binary.BigEndian, true, 65535, linktypeSLL2, rec(1, 0, append(sll2Header(etherTypeVLAN), tagged...)), rec(2, 0, append(sll2Header(EtherTypeIPv4), ip4...)))
	seeds["linktype-loop"] = pcapFile(le, false, 65535, linktypeLoop, rec(1, 0, append([]byte{0, 0, 0, 2}, ip4...)), rec(2, 0, append([]byte{28, 0, 0, 0}, ip4...)))
	seeds["linktype-raw12"] = pcapFile(le, false, 65535, dltRaw12, rec(1, 0, ip4))
	seeds["pcapng-three-interfaces"] = newNg(binary.BigEndian).iface(linktypeEthernet, 0).iface(linktypeSLL2, 0, tsresol(0x80|20)).iface(linktypeRaw, 96, tsresol(9)).
		epb(0, 1, uint32(len(testFrames(t)[3])), uint32(len(testFrames(t)[3])), testFrames(t)[3]).
		epb(1, 1<<20, uint32(len(ip4)+20), uint32(len(ip4)+20), append(sll2Header(EtherTypeIPv4), ip4...)).
		epb(2, 5, uint32(len(ip4)), uint32(len(ip4)), ip4).
		section(le).iface(linktypeLoop, 0).spb(uint32(len(ip4)+4), append([]byte{2, 0, 0, 0}, ip4...)).b
	dir := tcpdumpTestCaptures(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	perKind := map[string]int{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.Size() > maxSeedSize || e.Name() == "LICENSE" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		kind := "pcapng"
		if lts := fileLinkTypes(data); len(lts) == 1 {
			kind = fmt.Sprint(lts[0])
			if linkKindOf(lts[0]) == linkUnsupported {
				kind = "unsupported"
			}
		}
		limit := 2
		if kind == "pcapng" || kind == "1" {
			limit = 6
		}
		if perKind[kind] >= limit {
			continue
		}
		perKind[kind]++
		seeds["tcpdump-"+strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))] = data
	}
	if err := os.RemoveAll(corpus); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(seeds))
	for name := range seeds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[name])
		if err := os.WriteFile(filepath.Join(corpus, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seeds: %v", len(names), perKind)
}
