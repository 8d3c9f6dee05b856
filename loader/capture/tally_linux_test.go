package capture

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"portwatch/bpf/packets"
	"portwatch/internal/privtest"
)

// linkFrame turns an untagged Ethernet frame into the given link type's
// record: the cooked, raw and loopback headers tcpdump writes.
func linkFrame(linkType uint32, frame []byte) []byte {
	if linkType == 1 {
		return frame
	}
	etherType := binary.BigEndian.Uint16(frame[12:14])
	payload := frame[14:]
	switch linkType {
	case 101, 12, 14, 228, 229: // raw IP
		return payload
	case 113: // Linux SLL
		h := binary.BigEndian.AppendUint16(nil, 0) // packet type: to us
		h = binary.BigEndian.AppendUint16(h, 1)    // ARPHRD_ETHER
		h = binary.BigEndian.AppendUint16(h, 6)
		h = append(h, frame[6:12]...)
		h = append(h, 0, 0)
		h = binary.BigEndian.AppendUint16(h, etherType)
		return append(h, payload...)
	case 276: // Linux SLL2
		h := binary.BigEndian.AppendUint16(nil, etherType)
		h = append(h, 0, 0)
		h = binary.BigEndian.AppendUint32(h, 2) // ifindex
		h = binary.BigEndian.AppendUint16(h, 1) // ARPHRD_ETHER
		h = append(h, 0, 6)
		h = append(h, frame[6:12]...)
		h = append(h, 0, 0)
		return append(h, payload...)
	case 0, 108: // BSD null (host order) and loop (network order)
		family := uint32(2)
		if etherType == 0x86dd {
			family = 24
		}
		var h []byte
		if linkType == 0 {
			h = binary.NativeEndian.AppendUint32(nil, family)
		} else {
			h = binary.BigEndian.AppendUint32(nil, family)
		}
		return append(h, payload...)
	}
	panic(fmt.Sprintf("no writer for link type %d", linkType))
}

// TestTallyMatchesTcpdump writes the shared corpus and the mixed set in every
// link type portwatch reads and checks, port by port, that the tally
// (portwatch analyze's port_tally) equals what `tcpdump -nn -r FILE 'udp
// port P'` counts: same bytes, libpcap's reading against ours.
func TestTallyMatchesTcpdump(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		if privtest.Required() {
			t.Fatal("tcpdump is not installed (make deps installs it)")
		}
		t.Skip("tcpdump is not installed")
	}
	var frames [][]byte
	for _, c := range packets.Corpus() {
		frames = append(frames, c.Frames...)
	}
	frames = append(frames, packets.MixedRound()...)
	var untagged [][]byte
	for _, f := range frames {
		if len(f) >= 14 {
			if et := binary.BigEndian.Uint16(f[12:14]); et == 0x0800 || et == 0x86dd {
				untagged = append(untagged, f)
			}
		}
	}
	for _, lt := range []uint32{1, 101, 228, 229, 113, 276, 0, 108} {
		t.Run(fmt.Sprintf("linktype-%d", lt), func(t *testing.T) {
			src := frames
			if lt != 1 {
				src = untagged // only Ethernet carries the VLAN tags of the corpus
			}
			var recs []pcapRecord
			for i, f := range src {
				if lt == 228 && binary.BigEndian.Uint16(f[12:14]) != 0x0800 ||
					lt == 229 && binary.BigEndian.Uint16(f[12:14]) != 0x86dd {
					continue
				}
				recs = append(recs, rec(1700000000, uint32(i), linkFrame(lt, f)))
			}
			path := filepath.Join(t.TempDir(), "capture.pcap")
			if err := os.WriteFile(path, pcapFile(binary.LittleEndian, false, 65535, lt, recs...), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var tally Tally
			for {
				p, err := s.Next()
				if err != nil {
					break
				}
				tally.Add(p)
			}
			s.Close()
			counts := tally.Counts()
			if len(counts) == 0 {
				t.Fatal("nothing tallied")
			}
			for _, pc := range counts {
				want := uint64(tcpdumpCount(t, path, fmt.Sprintf("%s port %d", pc.Proto, pc.Port)))
				if lt == 1 {
					want += uint64(tcpdumpCount(t, path, fmt.Sprintf("vlan and %s port %d", pc.Proto, pc.Port)) +
						tcpdumpCount(t, path, fmt.Sprintf("vlan and vlan and %s port %d", pc.Proto, pc.Port)))
				}
				if pc.Packets != want {
					t.Errorf("%s/%d: tally %d, tcpdump %d", pc.Proto, pc.Port, pc.Packets, want)
				}
			}
		})
	}
}
