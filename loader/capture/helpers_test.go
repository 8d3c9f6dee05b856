package capture

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// tcpdumpTestCaptures returns the directory that PORTWATCH_TCPDUMP_TESTS
// names, of tcpdump's own test captures (its source tree's tests/), or
// skips: they are not part of portwatch, and the seed corpus keeps a few.
func tcpdumpTestCaptures(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("PORTWATCH_TCPDUMP_TESTS")
	if dir == "" {
		t.Skip("PORTWATCH_TCPDUMP_TESTS is not set (a directory of tcpdump's test captures)")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("PORTWATCH_TCPDUMP_TESTS: %v", err)
	}
	return dir
}

// readPacket is a Packet with its data copied, for comparisons.
type readPacket struct {
	Timestamp time.Time
	Data      []byte
	WireLen   int
	Network   bool
	EtherType uint16
	Interface int
	Number    uint64
}

// readAll reads a source to its end, copying every packet, and returns the
// final error (nil at a clean end).
func readAll(src Source) ([]readPacket, error) {
	var out []readPacket
	for {
		p, err := src.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, readPacket{p.Timestamp, append([]byte(nil), p.Data...), p.WireLen, p.Network, p.EtherType, p.Interface, p.Number})
	}
}

// readFile opens and reads a whole file.
func readFile(path string) ([]readPacket, error) {
	src, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return readAll(src)
}

// asInputError returns err as an *InputError, or fails.
func asInputError(t *testing.T, err error) *InputError {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InputError", err, err)
	}
	return ie
}

// decoded is a captured frame taken apart by gopacket.
type decoded struct {
	vlans   []*layers.Dot1Q
	outer   layers.EthernetType
	ip4     *layers.IPv4
	tcp     *layers.TCP
	udp     *layers.UDP
	icmp    *layers.ICMPv4
	payload []byte
}

func decode(data []byte) decoded {
	var d decoded
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	if e, ok := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
		d.outer = e.EthernetType
	}
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.Dot1Q:
			d.vlans = append(d.vlans, l)
		case *layers.IPv4:
			if d.ip4 == nil {
				d.ip4 = l
			}
		case *layers.TCP:
			if d.tcp == nil {
				d.tcp = l
				d.payload = l.Payload
			}
		case *layers.UDP:
			if d.udp == nil {
				d.udp = l
				d.payload = l.Payload
			}
		case *layers.ICMPv4:
			if d.icmp == nil {
				d.icmp = l
			}
		}
	}
	return d
}
