package classify

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// benchExchanges is the size of a busy management network's exchange table.
const benchExchanges = 100_000

// benchSnapshot builds a snapshot of n exchanges: clients 10.1.0.0/16 and
// up, each with four services of one management node, every exchange
// answered once.
func benchSnapshot(b *testing.B, cat *catalog.Catalog, n int) bpf.Snapshot {
	services := []catalog.ServiceID{
		mustEntry(b, cat, "www-tcp/tcp").ID,
		mustEntry(b, cat, "xcatdport/tcp").ID,
		mustEntry(b, cat, "xcatiport/tcp").ID,
		mustEntry(b, cat, "tftp-udp/udp").ID,
	}
	server := netip.MustParseAddr(mn)
	s := bpf.Snapshot{
		Time:     t0.Add(10 * time.Second),
		Services: make([]bpf.ServiceCounters, catalog.MaxServiceID+1),
	}
	exchanges := make(map[bpf.ExchangeKey]bpf.ExchangeCounters, n)
	for i := 0; i < n; i++ {
		client := i / len(services)
		k := bpf.ExchangeKey{
			Service: services[i%len(services)],
			Client:  netip.AddrFrom4([4]byte{10, byte(1 + client>>16), byte(client >> 8), byte(client)}),
			Server:  server,
		}
		exchanges[k] = bpf.ExchangeCounters{
			FirstSeen: t0.Add(time.Second), LastSeen: t0.Add(2 * time.Second),
			Attempts: 1, Answers: 1, Followups: 1,
		}
	}
	s.Exchanges = bpf.ExchangeEntries(exchanges)
	return s
}

// advance moves the snapshot one window on: every share-th exchange gets a
// new attempt, and an answer unless unanswered.
func advance(s *bpf.Snapshot, share int, unanswered bool) {
	s.Time = s.Time.Add(10 * time.Second)
	for i := range s.Exchanges {
		if (i+1)%share != 0 {
			continue
		}
		v := &s.Exchanges[i].Counters
		v.Attempts++
		if !unanswered {
			v.Answers++
			v.Followups++
		}
		v.LastSeen = s.Time.Add(-time.Second)
	}
}

// BenchmarkUpdate measures one window over 100,000 tracked exchanges and
// reports the classifier's live heap once its state is built.
func BenchmarkUpdate(b *testing.B) {
	cases := []struct {
		name       string
		share      int  // every share-th exchange changes in each window
		unanswered bool // the changes are unanswered attempts
	}{
		{"all-changed", 1, false},
		{"1pct-changed", 100, false},
		{"all-unanswered", 1, true},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			cat := mustCatalog(b)
			s := benchSnapshot(b, cat, benchExchanges)

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := newClassifier(b, Config{Catalog: cat})
			c.Update(s)
			// Past the window in which unanswered exchanges become blocked
			// (BenchmarkBlockedBurst measures that one).
			for range 3 {
				advance(&s, bc.share, bc.unanswered)
				c.Update(s)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			state := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)

			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				advance(&s, bc.share, bc.unanswered)
				b.StartTimer()
				c.Update(s)
			}
			b.StopTimer()
			// After ResetTimer, which clears reported metrics.
			b.ReportMetric(state, "MiB-state")
			if got := c.exchanges.len(); got != benchExchanges {
				b.Fatalf("tracking %d exchanges, want %d", got, benchExchanges)
			}
			runtime.KeepAlive(s)
		})
	}
}

// BenchmarkBlockedBurst measures the rare window in which all 100,000
// exchanges become blocked at once, each with its event.
func BenchmarkBlockedBurst(b *testing.B) {
	cat := mustCatalog(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := newClassifier(b, Config{Catalog: cat})
		s := benchSnapshot(b, cat, benchExchanges)
		c.Update(s)
		for range 2 {
			advance(&s, 1, true)
			c.Update(s)
		}
		advance(&s, 1, true)
		b.StartTimer()
		if evs := c.Update(s); len(evs) != benchExchanges {
			b.Fatalf("%d events, want %d", len(evs), benchExchanges)
		}
	}
}
