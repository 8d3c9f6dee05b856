package capture

import (
	"io"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/bpf/packets"
	"portwatch/catalog"
)

// packetList is a LiveSource that hands out fixed packets, then io.EOF.
type packetList struct {
	pkts []Packet
	next int
	// before runs just before packet i is handed out.
	before func(i int)
}

func (s *packetList) Next() (*Packet, error) {
	if s.next == len(s.pkts) {
		return nil, io.EOF
	}
	if s.before != nil {
		s.before(s.next)
	}
	s.next++
	return &s.pkts[s.next-1], nil
}
func (s *packetList) Close() error                      { return nil }
func (s *packetList) Stats() (uint64, uint64, error)    { return 0, 0, nil }
func (s *packetList) SetCatalog(*catalog.Catalog) error { return nil }

// TestBackendClockStepped: the wall clock stepped back a minute between two
// SYNs two seconds apart. Packet time stamps are the wall clock's, so the
// second read as a minute older than the first; on the backend's time line
// it is two seconds later, as the snapshot's time is.
func TestBackendClockStepped(t *testing.T) {
	cat := builtinCatalog(t)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var mono time.Duration
	step := time.Duration(0)
	b := &Backend{twin: bpf.NewTwin(cat, bpf.DefaultTwinConfig),
		now:     func() time.Time { return t0.Add(mono - step) },
		elapsed: func() time.Duration { return mono }}
	b.origin, b.originElapsed = b.now(), b.elapsed()
	syn := func(seq uint32) []byte {
		return packets.TCP(packets.Node, packets.MN, 40000, 3001, packets.SYN, packets.Options{Seq: seq})
	}
	src := &packetList{pkts: []Packet{
		{Timestamp: t0, Data: syn(1), WireLen: len(syn(1))},
		{Timestamp: t0.Add(2*time.Second - time.Minute), Data: syn(2), WireLen: len(syn(2))},
	}}
	src.before = func(i int) {
		if i == 1 { // the step, then the second SYN two seconds on
			mono, step = 2*time.Second, time.Minute
			b.shiftAge = 0 // as if shiftEvery packets had passed
		}
	}
	b.sources, b.names, b.fed = []LiveSource{src}, []string{"test0"}, make([]uint64, 1)
	b.wg.Add(1)
	b.read(0, src)
	s, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Exchanges) != 1 {
		t.Fatalf("%d exchanges, want 1", len(s.Exchanges))
	}
	c := s.Exchanges[0].Counters
	if !c.FirstSeen.Equal(t0) || !c.LastSeen.Equal(t0.Add(2*time.Second)) || !s.Time.Equal(t0.Add(2*time.Second)) {
		t.Errorf("first %v, last %v, snapshot %v; want %v, %v, %v", c.FirstSeen, c.LastSeen, s.Time, t0, t0.Add(2*time.Second), t0.Add(2*time.Second))
	}
}
