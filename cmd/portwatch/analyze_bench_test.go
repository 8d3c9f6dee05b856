package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"portwatch/bpf/packets"
)

// mixedCapture writes n packets of the mixed management set to a pcap (or
// pcapng), one round after another, a microsecond apart.
func mixedCapture(b *testing.B, n int, ng bool) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "mixed.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	round := packets.MixedRound()
	frames := make([][]byte, 0, n)
	for len(frames) < n {
		frames = append(frames, round[len(frames)%len(round)])
	}
	start := time.Unix(1700000000, 0)
	if ng {
		ngw, err := pcapgo.NewNgWriter(w, layers.LinkTypeEthernet)
		if err != nil {
			b.Fatal(err)
		}
		for i, fr := range frames {
			ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Microsecond), CaptureLength: len(fr), Length: len(fr)}
			if err := ngw.WritePacket(ci, fr); err != nil {
				b.Fatal(err)
			}
		}
		if err := ngw.Flush(); err != nil {
			b.Fatal(err)
		}
	} else {
		writePcap(b, w, frames, start, time.Microsecond)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkAnalyze runs `portwatch analyze` (the Go twin, the classifier
// every window, the summary) over a 1,000,000-packet pcap of the mixed set,
// and in the same run tcpdump over the same file: printing its matches, and
// reading and filtering only. Reported: packets per second, and ns per
// packet of each.
func BenchmarkAnalyze(b *testing.B) {
	const n = 1_000_000
	path := mixedCapture(b, n, false)
	// Warm the page cache.
	if data, err := os.ReadFile(path); err != nil || len(data) == 0 {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		code := run([]string{"analyze", "-q", path}, &env{stdin: nil, stdout: io.Discard, stderr: io.Discard})
		if code != exitOK {
			b.Fatalf("analyze exited %d", code)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	perPacket := float64(elapsed.Nanoseconds()) / float64(b.N*n)
	b.ReportMetric(perPacket, "ns/packet")
	b.ReportMetric(1e3/perPacket, "Mpackets/s")

	if _, err := exec.LookPath("tcpdump"); err != nil {
		return
	}
	tcpdump := func(args ...string) float64 {
		best := time.Duration(1 << 62)
		for range 3 {
			t0 := time.Now()
			cmd := exec.Command("tcpdump", args...)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			if err := cmd.Run(); err != nil {
				b.Fatalf("tcpdump %v: %v", args, err)
			}
			best = min(best, time.Since(t0))
		}
		return float64(best.Nanoseconds()) / n
	}
	printing := tcpdump("-nn", "-r", path, "udp port 69")
	filtering := tcpdump("-r", path, "-w", "/dev/null", "udp port 69")
	b.ReportMetric(printing, "tcpdump-print-ns/packet")
	b.ReportMetric(filtering, "tcpdump-filter-ns/packet")
	b.ReportMetric(perPacket/filtering, "x-tcpdump-filter")
}

// BenchmarkAnalyzePcapng is BenchmarkAnalyze on the same packets in a pcapng
// file (target: at least 5 M packets/s).
func BenchmarkAnalyzePcapng(b *testing.B) {
	const n = 1_000_000
	path := mixedCapture(b, n, true)
	if data, err := os.ReadFile(path); err != nil || len(data) == 0 {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if code := run([]string{"analyze", "-q", path}, &env{stdout: io.Discard, stderr: io.Discard}); code != exitOK {
			b.Fatalf("analyze exited %d", code)
		}
	}
	perPacket := float64(time.Since(start).Nanoseconds()) / float64(b.N*n)
	b.StopTimer()
	b.ReportMetric(perPacket, "ns/packet")
	b.ReportMetric(1e3/perPacket, "Mpackets/s")
}
