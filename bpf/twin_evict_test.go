package bpf_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/bpf/packets"
	"portwatch/catalog"
)

// The twin's bounded tables stand in for the kernel's tables: when one is
// full, the eighth of its entries seen least recently goes. These tests pin
// which entries survive, so that the tables can change inside without the
// counts of a long capture changing.

func host(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }

type clock struct{ t time.Time }

func (c *clock) tick() time.Time {
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func send(twin *bpf.Twin, c *clock, f []byte) { twin.Ethernet(f, len(f), c.tick()) }

func TestTwinEvictsExchangesSeenLeast(t *testing.T) {
	twin := bpf.NewTwin(loadCatalog(t), bpf.TwinConfig{MaxExchanges: 16})
	c := &clock{t: time.Unix(1700000000, 0)}
	syn := func(i int) []byte { return packets.TCP(host(i), mn, 40000, 3001, packets.SYN, packets.Options{Seq: 1}) }
	for i := range 17 {
		send(twin, c, syn(i))
	}
	// Full at the 17th: hosts 0 and 1 (an eighth of 16) went. A
	// retransmit keeps host 2 fresh; of the next two new ones, the second
	// evicts hosts 3 and 4.
	send(twin, c, syn(2))
	send(twin, c, syn(17))
	send(twin, c, syn(18))

	s := twin.Snapshot()
	var got []int
	for _, e := range s.Exchanges {
		got = append(got, int(e.Key.Client.As4()[3]))
		if e.Key.Service != xcatd || e.Key.Server != mn {
			t.Errorf("exchange %+v: not xcatd on %v", e.Key, mn)
		}
	}
	slices.Sort(got)
	want := []int{2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}
	if !slices.Equal(got, want) {
		t.Errorf("surviving clients %v, want %v", got, want)
	}
	if n := s.Parse[bpf.ParseExchangeNew]; n != 19 {
		t.Errorf("exchange_new %d, want 19", n)
	}
	if n := s.Parse[bpf.ParseMapUpdateFailed]; n != 0 {
		t.Errorf("map_update_failed %d, want 0", n)
	}
}

func TestTwinEvictsUnexpectedSeenLeast(t *testing.T) {
	twin := bpf.NewTwin(loadCatalog(t), bpf.TwinConfig{MaxUnexpected: 8})
	c := &clock{t: time.Unix(1700000000, 0)}
	synack := func(i int) []byte {
		return packets.TCP(host(i), node, 8080, 40000, packets.SYNACK, packets.Options{})
	}
	for i := range 8 {
		send(twin, c, synack(i))
	}
	send(twin, c, synack(0)) // answers again: now the freshest
	send(twin, c, synack(8)) // full: host 1 goes

	s := twin.Snapshot()
	var got []int
	for k, u := range s.Unexpected {
		got = append(got, int(k.Server.As4()[3]))
		if k.Proto != catalog.TCP || k.Port != 8080 || u.Client != node {
			t.Errorf("unexpected %+v %+v", k, u)
		}
		if want := uint64(1); k.Server == host(0) {
			if u.Answers != 2 {
				t.Errorf("host 0 answered %d times, want 2", u.Answers)
			}
		} else if u.Answers != want {
			t.Errorf("%v answered %d times, want 1", k.Server, u.Answers)
		}
	}
	slices.Sort(got)
	if want := []int{0, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("surviving servers %v, want %v", got, want)
	}
	if n := s.Parse[bpf.ParseUnexpectedNew]; n != 9 {
		t.Errorf("unexpected_new %d, want 9", n)
	}
}

// A flow's age is its last packet: a query sent again, or an answer to it,
// keeps it.
func TestTwinEvictsFlowsLastSeen(t *testing.T) {
	twin := bpf.NewTwin(loadCatalog(t), bpf.TwinConfig{MaxFlows: 8})
	c := &clock{t: time.Unix(1700000000, 0)}
	query := func(i int) []byte { return packets.UDP(node, host(i), 40041, 5353, packets.Options{}) }
	answer := func(i int) []byte { return packets.UDP(host(i), node, 5353, 40041, packets.Options{}) }
	for i := range 8 {
		send(twin, c, query(i))
	}
	send(twin, c, query(0))  // seen again: host 1's flow is now the oldest
	send(twin, c, query(8))  // full: host 1's flow goes
	send(twin, c, answer(0)) // matches host 0's flow
	send(twin, c, answer(1)) // matches nothing: a flow of its own, host 2's goes

	s := twin.Snapshot()
	if _, ok := s.Unexpected[bpf.UnexpectedKey{Proto: catalog.UDP, Server: host(0), Port: 5353}]; !ok {
		t.Errorf("host 0 answered a remembered flow, but is no unexpected port: %+v", s.Unexpected)
	}
	if _, ok := s.Unexpected[bpf.UnexpectedKey{Proto: catalog.UDP, Server: host(1), Port: 5353}]; ok {
		t.Errorf("host 1 answered an evicted flow, yet counts as an unexpected port")
	}
	if n := s.Parse[bpf.ParseFlowNew]; n != 10 {
		t.Errorf("flow_new %d, want 10", n)
	}
	// Host 2's query was evicted: asked again, it is a new flow; host 0's,
	// refreshed by its answer, is not.
	send(twin, c, query(2))
	send(twin, c, query(0))
	if n := twin.Snapshot().Parse[bpf.ParseFlowNew]; n != 11 {
		t.Errorf("flow_new %d, want 11", n)
	}
}

// A remembered TFTP request's age is the last packet of the request or its
// transfer: of five when four fit, the one seen least recently goes.
func TestTwinEvictsEphemeral(t *testing.T) {
	twin := bpf.NewTwin(loadCatalog(t), bpf.TwinConfig{MaxEphemeral: 4})
	c := &clock{t: time.Unix(1700000000, 0)}
	for i := range 5 {
		send(twin, c, packets.UDP(host(i), mn, 40001, 69, packets.Options{Payload: []byte("\x00\x01f\x00octet\x00")}))
	}
	for i := range 5 {
		send(twin, c, packets.UDP(mn, host(i), 50000, 40001, packets.Options{Payload: []byte{0, 3, 0, 1}}))
	}
	s := twin.Snapshot()
	if n := s.Parse[bpf.ParseEphemeralNew]; n != 5 {
		t.Errorf("ephemeral_new %d, want 5", n)
	}
	if got := s.Services[tftpUDP]; got.Requests != 5 || got.Replies != 4 {
		t.Errorf("tftp %+v, want 5 requests and 4 replies", got)
	}
	if got := s.Services[0].Packets; got != 1 {
		t.Errorf("%d packets on no catalog port, want the one answer whose request was forgotten", got)
	}
	answered := 0
	for _, e := range s.Exchanges {
		answered += int(e.Counters.Answers)
	}
	if answered != 4 {
		t.Errorf("%d answers in exchanges, want 4", answered)
	}
	for _, e := range s.Exchanges {
		if e.Key.Client == host(0) && e.Counters.Answers != 0 {
			t.Errorf("host 0, whose request was the oldest, got an answer: %+v", e.Counters)
		}
	}
}
