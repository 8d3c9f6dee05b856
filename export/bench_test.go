package export

import (
	"testing"
	"time"
)

// BenchmarkEmit is the cost a packet-processing goroutine pays per event:
// the sink's destination is dead and its queue full, the worst case.
func BenchmarkEmit(b *testing.B) {
	spec, err := ParseSpec("syslog+tcp://127.0.0.1:9?queue=16") // port 9 (discard): nobody listens
	if err != nil {
		b.Fatal(err)
	}
	opts := testOptions()
	opts.MinBackoff, opts.MaxBackoff = time.Second, time.Second
	sink, err := Open(spec, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = closeWithin(sink, 10*time.Millisecond) })
	ev := fixtureEvents()[0]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sink.Emit(ev)
		}
	})
}

// BenchmarkEncode is the writer's cost per event in each format.
func BenchmarkEncode(b *testing.B) {
	ev := fixtureEvents()[0]
	for _, f := range goldenFormats {
		enc, err := newEncoder(f.spec, testOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f.file, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = enc.encode(buf[:0], &ev)
			}
		})
	}
}
