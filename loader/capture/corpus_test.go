package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapgoPacket is what gopacket's reader makes of one packet.
type pcapgoPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// readWithPcapgo reads a file with gopacket's pcapgo, the independent
// reader these tests compare with.
func readWithPcapgo(path string) ([]pcapgoPacket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(4)
	var next func() ([]byte, gopacket.CaptureInfo, error)
	if bytes.Equal(head, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, err
		}
		next = r.ReadPacketData
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, err
		}
		next = r.ReadPacketData
	}
	var out []pcapgoPacket
	for {
		data, ci, err := next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, pcapgoPacket{ci, data})
	}
}

// fileLinkTypes returns the link types a capture file declares (every
// interface of a pcapng file), or nil when the header cannot be read.
func fileLinkTypes(data []byte) []uint32 {
	if len(data) < 24 {
		return nil
	}
	switch binary.BigEndian.Uint32(data) {
	case magicPcapMicro, magicPcapNano, magicPcapModified:
		return []uint32{binary.BigEndian.Uint32(data[20:]) & 0xffff}
	case magicPcapMicroSwapped, magicPcapNanoSwapped, magicPcapModSwapped:
		return []uint32{binary.LittleEndian.Uint32(data[20:]) & 0xffff}
	}
	return nil
}

// TestSharedCaptures runs every capture of tcpdump's test suite through the
// reader: nothing panics, a file of a supported link type reads the same
// packets as pcapgo (up to the first damage, which must be an InputError),
// and a file of another link type gives the clear error.
func TestSharedCaptures(t *testing.T) {
	dir := tcpdumpTestCaptures(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var read, unsupported, damaged, files, ran int
	for _, e := range entries {
		if e.IsDir() || e.Name() == "LICENSE" {
			continue
		}
		files++
		path := filepath.Join(dir, e.Name())
		t.Run(e.Name(), func(t *testing.T) {
			ran++
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readFile(path)
			if err != nil {
				ie := asInputError(t, err)
				if !strings.HasPrefix(ie.Error(), path+": ") {
					t.Errorf("error %q does not start with the file name", ie)
				}
				if strings.Contains(ie.Msg, "is not supported: capture on the Ethernet interface") {
					unsupported++
					for _, lt := range fileLinkTypes(raw) {
						if !strings.Contains(ie.Msg, "link type "+strconv.Itoa(int(lt))+" (") {
							t.Errorf("error %q does not name link type %d", ie.Msg, lt)
						}
					}
					return
				}
				damaged++
				t.Logf("damaged after %d packets: %v", len(got), err)
			} else {
				read++
			}
			want, werr := readWithPcapgo(path)
			if err == nil && werr != nil && len(want) < len(got) {
				t.Errorf("read %d packets cleanly where pcapgo reads %d and fails: %v", len(got), len(want), werr)
			}
			if err == nil && werr == nil && len(want) != len(got) {
				t.Errorf("read %d packets, pcapgo reads %d", len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				g, w := got[i], want[i]
				if !g.Timestamp.Equal(w.ci.Timestamp) && !isBinaryResolution(raw) {
					t.Errorf("packet %d: timestamp %v, pcapgo %v", i+1, g.Timestamp, w.ci.Timestamp)
				}
				if g.WireLen != w.ci.Length {
					t.Errorf("packet %d: wire length %d, pcapgo %d", i+1, g.WireLen, w.ci.Length)
				}
				if !bytes.HasSuffix(w.data, g.Data) && !g.Network && len(g.Data) > 0 {
					// Ethernet frames are handed out unchanged; cooked
					// headers become Ethernet-shaped, so compare the tail.
					if !bytes.Equal(w.data[len(w.data)-min(len(w.data), len(g.Data)-14):], g.Data[14:]) {
						t.Errorf("packet %d: data differs from pcapgo's", i+1)
					}
				}
				if g.Network && !bytes.HasSuffix(w.data, g.Data) {
					t.Errorf("packet %d: network data is not the tail of pcapgo's frame", i+1)
				}
				if g.Number != uint64(i+1) {
					t.Errorf("packet %d numbered %d", i+1, g.Number)
				}
			}
		})
	}
	t.Logf("%d files: %d read cleanly, %d damaged, %d of unsupported link types", files, read, damaged, unsupported)
	if ran == files && read == 0 {
		t.Error("no shared capture was read")
	}
}

// isBinaryResolution reports whether a pcapng file may have an interface
// with a power-of-2 timestamp resolution (an if_tsresol option with the top
// bit set), which pcapgo converts inexactly.
func isBinaryResolution(raw []byte) bool {
	if len(raw) < 4 || binary.BigEndian.Uint32(raw) != magicPcapngSHB {
		return false
	}
	for _, opt := range [][]byte{{9, 0, 1, 0}, {0, 9, 0, 1}} {
		for i := 0; ; {
			j := bytes.Index(raw[i:], opt)
			if j < 0 || i+j+len(opt) >= len(raw) {
				break
			}
			if raw[i+j+len(opt)]&0x80 != 0 {
				return true
			}
			i += j + 1
		}
	}
	return false
}
