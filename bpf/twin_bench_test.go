package bpf_test

import (
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/bpf/packets"
)

// BenchmarkTwinMixed runs the mixed management-traffic set through the twin:
// ns/op is the cost of one packet (target: at most 60 ns, 0 allocations).
func BenchmarkTwinMixed(b *testing.B) {
	twin := bpf.NewTwin(loadCatalog(b), bpf.DefaultTwinConfig)
	round := packets.MixedRound()
	ts := time.Unix(1700000000, 0)
	// Warm the tables: the steady state of a long capture.
	for _, f := range round {
		twin.Ethernet(f, len(f), ts)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := round[i%len(round)]
		twin.Ethernet(f, len(f), ts)
	}
}

// BenchmarkTwinClass measures each class of the mixed set alone.
func BenchmarkTwinClass(b *testing.B) {
	cat := loadCatalog(b)
	ts := time.Unix(1700000000, 0)
	for _, c := range packets.Mixed() {
		b.Run(c.Name, func(b *testing.B) {
			twin := bpf.NewTwin(cat, bpf.DefaultTwinConfig)
			for _, f := range packets.MixedRound() {
				twin.Ethernet(f, len(f), ts)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				twin.Ethernet(c.Frame, len(c.Frame), ts)
			}
		})
	}
}
