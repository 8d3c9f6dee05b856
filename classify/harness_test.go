package classify

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// The tests build snapshots by hand: a run is a list of windows, each the
// cumulative counters of the exchanges present at its end.

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// at is t0 plus sec seconds, to the millisecond.
func at(sec float64) time.Time {
	return t0.Add(time.Duration(math.Round(sec*1000)) * time.Millisecond)
}

// xc is one exchange in a window: its catalog row ("name/proto"), client
// (an IP, or a MAC for DHCP), server (empty for DHCP) and cumulative counters.
type xc struct {
	svc            string
	client, server string
	first, last    float64 // seconds after t0
	attempts       uint64
	retransmits    uint64
	answers        uint64
	resets         uint64
	closed         uint64 // ICMP port unreachable
	filtered       uint64 // ICMP administratively prohibited
	returnBlocked  uint64
	followups      uint64
}

// uc is an answered port in no catalog row.
type uc struct {
	proto          catalog.Proto
	server, client string
	port           uint16
	first, last    float64
	answers        uint64
}

// win is one window: the snapshot taken at `at` seconds.
type win struct {
	at         float64
	ex         []xc
	unexpected []uc
	// services adds to the per-service counters derived from the
	// exchanges (TCP client packets beyond the SYNs, say).
	services map[string]bpf.ServiceCounters
}

func mustCatalog(t testing.TB, profiles ...string) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(catalog.Options{Profiles: profiles})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func mustEntry(t testing.TB, cat *catalog.Catalog, key string) *catalog.Entry {
	t.Helper()
	e := cat.ByKey(key)
	if e == nil {
		t.Fatalf("no catalog row %s", key)
	}
	return e
}

func exchangeKey(t testing.TB, cat *catalog.Catalog, svc, client, server string) bpf.ExchangeKey {
	t.Helper()
	k := bpf.ExchangeKey{Service: mustEntry(t, cat, svc).ID}
	if mac, err := net.ParseMAC(client); err == nil {
		copy(k.ClientMAC[:], mac)
	} else {
		k.Client = netip.MustParseAddr(client)
	}
	if server != "" {
		k.Server = netip.MustParseAddr(server)
	}
	return k
}

// snapshot builds the snapshot of a window.
func snapshot(t testing.TB, cat *catalog.Catalog, w win) bpf.Snapshot {
	t.Helper()
	s := bpf.Snapshot{
		Time:       at(w.at),
		Services:   make([]bpf.ServiceCounters, catalog.MaxServiceID+1),
		Unexpected: make(map[bpf.UnexpectedKey]bpf.UnexpectedCounters, len(w.unexpected)),
	}
	exchanges := make(map[bpf.ExchangeKey]bpf.ExchangeCounters, len(w.ex))
	for _, x := range w.ex {
		k := exchangeKey(t, cat, x.svc, x.client, x.server)
		if _, dup := exchanges[k]; dup {
			t.Fatalf("window at %gs: exchange %s %s->%s listed twice", w.at, x.svc, x.client, x.server)
		}
		exchanges[k] = bpf.ExchangeCounters{
			FirstSeen:     at(x.first),
			LastSeen:      at(x.last),
			Attempts:      x.attempts,
			Retransmits:   x.retransmits,
			Answers:       x.answers,
			Resets:        x.resets,
			ICMPClosed:    x.closed,
			ICMPFiltered:  x.filtered,
			ReturnBlocked: x.returnBlocked,
			Followups:     x.followups,
		}
		sc := &s.Services[k.Service]
		sc.Requests += x.attempts + x.retransmits
		sc.Replies += x.answers
		if mustEntry(t, cat, x.svc).Proto == catalog.TCP {
			sc.SYN += x.attempts + x.retransmits
			sc.SYNACK += x.answers
			sc.RST += x.resets
		}
		sc.ICMPClosed += x.closed
		sc.ICMPFiltered += x.filtered
	}
	s.Exchanges = bpf.ExchangeEntries(exchanges)
	for name, add := range w.services {
		sc := &s.Services[mustEntry(t, cat, name).ID]
		sc.Requests += add.Requests
		sc.Replies += add.Replies
		sc.SYN += add.SYN
	}
	for _, u := range w.unexpected {
		k := bpf.UnexpectedKey{Proto: u.proto, Server: netip.MustParseAddr(u.server), Port: u.port}
		s.Unexpected[k] = bpf.UnexpectedCounters{
			FirstSeen: at(u.first), LastSeen: at(u.last), Answers: u.answers, Client: netip.MustParseAddr(u.client),
		}
	}
	return s
}

// short renders an event for comparison:
// "required_port_blocked xcatiport/tcp 10.0.1.1->10.0.0.1 no-reply".
func short(e Event) string {
	switch e.Verdict {
	case CaptureOneSided:
		return string(e.Verdict)
	case UnexpectedPortOpen:
		return fmt.Sprintf("%s %s/%d %s", e.Verdict, e.Proto, e.Port, e.Server)
	}
	s := fmt.Sprintf("%s %s/%s %s->%s", e.Verdict, e.Service, e.Proto, e.Client, e.Server)
	if e.Reason != "" {
		s += " " + string(e.Reason)
	}
	if e.ReturnPath {
		s += " return-path"
	}
	return s
}

func shorts(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = short(e)
	}
	return out
}

// shortSummary renders a summary line: "tftp-udp/udp blocked no-reply 2 pairs +0".
func shortSummary(s ServiceSummary) string {
	out := fmt.Sprintf("%s/%s %s", s.Service, s.Proto, s.State)
	if s.Reason != "" {
		out += " " + string(s.Reason)
	}
	if len(s.Affected) > 0 || s.MoreAffected > 0 {
		var pairs []string
		for _, p := range s.Affected {
			pairs = append(pairs, p.Client+"->"+p.Server)
		}
		out += fmt.Sprintf(" [%s] +%d", strings.Join(pairs, " "), s.MoreAffected)
	}
	return out
}

// summaryLine returns the summary's line for the row "name/proto", or "".
func summaryLine(sum Summary, key string) string {
	for _, s := range sum.Services {
		if s.Service+"/"+s.Proto == key {
			return shortSummary(s)
		}
	}
	return ""
}

func newClassifier(t testing.TB, cfg Config) *Classifier {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
