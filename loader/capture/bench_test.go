package capture

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

const benchPackets = 1_000_000

// benchMix is the traffic of a provisioning burst: DHCP, TFTP RRQ, DATA and
// ACK, TCP handshakes and data on xcatd (3001, 3002), ssh, rsync and http,
// SNMP, IPMI, ICMP unreachable, and traffic on ports the catalog does not
// name.
func benchMix(b *testing.B) [][]byte {
	ether := func(t layers.EthernetType) *layers.Ethernet { return eth(t) }
	u := func(src, dst uint16, n int) [][]byte {
		return [][]byte{frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(src, dst), gopacket.Payload(make([]byte, n)))}
	}
	handshake := func(port uint16, data int) [][]byte {
		return [][]byte{
			frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, port, "S")),
			frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(port, 50123, "SA")),
			frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, port, "A")),
			frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, port, "PA"), gopacket.Payload(make([]byte, data))),
			frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(port, 50123, "PA"), gopacket.Payload(make([]byte, data*4))),
		}
	}
	var mix [][]byte
	mix = append(mix, u(68, 67, 300)...)       // DHCP discover
	mix = append(mix, u(67, 68, 300)...)       // DHCP offer
	mix = append(mix, u(50000, 69, 30)...)     // TFTP RRQ
	mix = append(mix, u(40000, 50000, 516)...) // TFTP DATA from the ephemeral port
	mix = append(mix, u(50000, 40000, 4)...)   // TFTP ACK
	mix = append(mix, u(40000, 50000, 516)...)
	mix = append(mix, u(50000, 40000, 4)...)
	for _, port := range []uint16{3001, 3002, 22, 873, 80} {
		mix = append(mix, handshake(port, 100)...)
	}
	mix = append(mix, u(50001, 161, 40)...) // SNMP get
	mix = append(mix, u(161, 50001, 60)...)
	mix = append(mix, u(50002, 623, 23)...) // IPMI / RMCP
	mix = append(mix, frame(b, ether(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(make([]byte, 28))))
	mix = append(mix, handshake(45000, 1000)...) // not in the catalog
	mix = append(mix, u(50003, 5353, 80)...)
	return mix
}

// writeBenchFile writes benchPackets packets of the mix as pcap or pcapng.
func writeBenchFile(b *testing.B, ng bool) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	mix := benchMix(b)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if ng {
		w, err := pcapgo.NewNgWriter(bw, layers.LinkTypeEthernet)
		if err != nil {
			b.Fatal(err)
		}
		for i := range benchPackets {
			d := mix[i%len(mix)]
			ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * 3 * time.Microsecond), CaptureLength: len(d), Length: len(d)}
			if err := w.WritePacket(ci, d); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	} else {
		w := pcapgo.NewWriterNanos(bw)
		if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
			b.Fatal(err)
		}
		for i := range benchPackets {
			d := mix[i%len(mix)]
			ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * 3 * time.Microsecond), CaptureLength: len(d), Length: len(d)}
			if err := w.WritePacket(ci, d); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchRead reads the file once per iteration with read, which returns the
// packets it read, and reports packets per second and allocations per packet.
func benchRead(b *testing.B, path string, read func(path string) int) {
	read(path) // into the page cache
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		if n := read(path); n != benchPackets {
			b.Fatalf("read %d packets, want %d", n, benchPackets)
		}
		total += benchPackets
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "packets/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(total), "allocs/packet")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/packet")
}

func readWithSource(b *testing.B) func(string) int {
	return func(path string) int {
		src, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		n := 0
		var sum int
		for {
			p, err := src.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			sum += len(p.Data) // touch the packet as a consumer would
			n++
		}
		if sum == 0 {
			b.Fatal("no data")
		}
		return n
	}
}

func BenchmarkReadPcap(b *testing.B) {
	benchRead(b, writeBenchFile(b, false), readWithSource(b))
}

func BenchmarkReadPcapng(b *testing.B) {
	benchRead(b, writeBenchFile(b, true), readWithSource(b))
}

// BenchmarkPcapgoReader measures gopacket's readers on the same files: the
// reason this package has readers of its own.
func BenchmarkPcapgoReader(b *testing.B) {
	for _, ng := range []bool{false, true} {
		name := "pcap"
		if ng {
			name = "pcapng"
		}
		b.Run(name, func(b *testing.B) {
			benchRead(b, writeBenchFile(b, ng), func(path string) int {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				br := bufio.NewReaderSize(f, fileBufferSize)
				var next func() ([]byte, gopacket.CaptureInfo, error)
				if ng {
					r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
					if err != nil {
						b.Fatal(err)
					}
					next = r.ZeroCopyReadPacketData
				} else {
					r, err := pcapgo.NewReader(br)
					if err != nil {
						b.Fatal(err)
					}
					next = r.ZeroCopyReadPacketData
				}
				n := 0
				for {
					_, _, err := next()
					if err == io.EOF {
						return n
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
			})
		})
	}
}
