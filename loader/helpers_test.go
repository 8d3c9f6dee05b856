package loader

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/internal/privtest"
)

// requirePrivileged skips a test that needs root and BPF, unless
// PORTWATCH_REQUIRE_PRIV=1 says the environment must have them.
func requirePrivileged(tb testing.TB) {
	tb.Helper()
	privtest.RequireRoot(tb, "needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
}

// testCatalog is the built-in table with its default profiles.
func testCatalog(tb testing.TB) *catalog.Catalog {
	tb.Helper()
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return cat
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// loadForTest loads the programs without attaching them; a load that the
// kernel refuses for lack of privileges skips (or fails, see
// requirePrivileged).
func loadForTest(tb testing.TB, cfg Config) *Loader {
	tb.Helper()
	requirePrivileged(tb)
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog(tb)
	}
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	l, err := Load(cfg)
	var pe *PrivilegeError
	if errors.As(err, &pe) {
		privtest.SkipOrFail(tb, err.Error())
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

func mustSnapshot(tb testing.TB, l *Loader) bpf.Snapshot {
	tb.Helper()
	s, err := l.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// delta is what changed between two snapshots of one loader, with service
// and table keys rendered as text so that a failure reads plainly.
type delta struct {
	services   map[string]bpf.ServiceCounters
	parse      map[bpf.ParseCounter]uint64
	exchanges  map[string]bpf.ExchangeCounters
	unexpected map[string]bpf.UnexpectedCounters
}

func serviceName(cat *catalog.Catalog, id int) string {
	if id == 0 {
		return "none"
	}
	if e := cat.Entry(catalog.ServiceID(id)); e != nil {
		return e.Key()
	}
	return fmt.Sprintf("id-%d", id)
}

func exchangeName(cat *catalog.Catalog, k bpf.ExchangeKey) string {
	if k.IsDHCP() {
		return fmt.Sprintf("%s dhcp %x", serviceName(cat, int(k.Service)), k.ClientMAC)
	}
	return fmt.Sprintf("%s %s->%s", serviceName(cat, int(k.Service)), k.Client, k.Server)
}

func unexpectedName(k bpf.UnexpectedKey) string {
	return fmt.Sprintf("%s %s", k.Proto, netip.AddrPortFrom(k.Server, k.Port))
}

func subServices(a, b bpf.ServiceCounters) bpf.ServiceCounters {
	return bpf.ServiceCounters{
		Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes, Requests: a.Requests - b.Requests,
		Replies: a.Replies - b.Replies, SYN: a.SYN - b.SYN, SYNACK: a.SYNACK - b.SYNACK, RST: a.RST - b.RST,
		ICMPClosed: a.ICMPClosed - b.ICMPClosed, ICMPFiltered: a.ICMPFiltered - b.ICMPFiltered,
		ICMPOther: a.ICMPOther - b.ICMPOther,
	}
}

func subExchange(a, b bpf.ExchangeCounters) bpf.ExchangeCounters {
	return bpf.ExchangeCounters{
		Attempts: a.Attempts - b.Attempts, Retransmits: a.Retransmits - b.Retransmits, Answers: a.Answers - b.Answers,
		Resets: a.Resets - b.Resets, ICMPClosed: a.ICMPClosed - b.ICMPClosed, ICMPFiltered: a.ICMPFiltered - b.ICMPFiltered,
		ICMPOther: a.ICMPOther - b.ICMPOther, ReturnBlocked: a.ReturnBlocked - b.ReturnBlocked,
		Followups: a.Followups - b.Followups,
	}
}

// diff computes after - before. Timestamps are dropped from the table
// entries (they are checked apart); an entry that is new or changed counts.
func diff(cat *catalog.Catalog, before, after bpf.Snapshot) delta {
	d := delta{
		services:   map[string]bpf.ServiceCounters{},
		parse:      map[bpf.ParseCounter]uint64{},
		exchanges:  map[string]bpf.ExchangeCounters{},
		unexpected: map[string]bpf.UnexpectedCounters{},
	}
	for i := range after.Services {
		s := subServices(after.Services[i], before.Services[i])
		if s != (bpf.ServiceCounters{}) {
			d.services[serviceName(cat, i)] = s
		}
	}
	for i := range after.Parse {
		if n := after.Parse[i] - before.Parse[i]; n != 0 {
			d.parse[bpf.ParseCounter(i)] = n
		}
	}
	beforeExchanges := before.ExchangeMap()
	for k, v := range after.ExchangeMap() {
		e := subExchange(v, beforeExchanges[k])
		if e != (bpf.ExchangeCounters{}) {
			d.exchanges[exchangeName(cat, k)] = e
		}
	}
	for k, v := range after.Unexpected {
		old := before.Unexpected[k]
		if v.Answers != old.Answers {
			d.unexpected[unexpectedName(k)] = bpf.UnexpectedCounters{Answers: v.Answers - old.Answers, Client: v.Client}
		}
	}
	return d
}

func sortedKeys[K comparable, V any](m map[K]V, name func(K) string) []string {
	var out []string
	for k := range m {
		out = append(out, name(k))
	}
	slices.Sort(out)
	return out
}

// compareDelta reports every difference between got and want, by table.
func compareDelta(got, want delta) []string {
	var out []string
	add := func(table, key string, g, w any) {
		out = append(out, fmt.Sprintf("%s %s: got %+v, want %+v", table, key, g, w))
	}
	for _, k := range sortedKeys(union(got.services, want.services), func(s string) string { return s }) {
		g, w := got.services[k], want.services[k]
		g.Bytes, w.Bytes = 0, 0 // checked by TestBytesCounted
		if g != w {
			add("service", k, g, w)
		}
	}
	for c := range bpf.NumParseCounters {
		if got.parse[c] != want.parse[c] {
			add("parse", c.String(), got.parse[c], want.parse[c])
		}
	}
	for _, k := range sortedKeys(union(got.exchanges, want.exchanges), func(s string) string { return s }) {
		if got.exchanges[k] != want.exchanges[k] {
			add("exchange", k, fmtExchange(got.exchanges[k]), fmtExchange(want.exchanges[k]))
		}
	}
	for _, k := range sortedKeys(union(got.unexpected, want.unexpected), func(s string) string { return s }) {
		g, w := got.unexpected[k], want.unexpected[k]
		if g.Answers != w.Answers || g.Client != w.Client {
			add("unexpected", k, g, w)
		}
	}
	return out
}

func union[K comparable, V any](a, b map[K]V) map[K]bool {
	out := map[K]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// fmtExchange prints only the counters that are not zero.
func fmtExchange(c bpf.ExchangeCounters) string {
	var parts []string
	for _, f := range []struct {
		name string
		n    uint64
	}{
		{"attempts", c.Attempts}, {"retransmits", c.Retransmits}, {"answers", c.Answers}, {"resets", c.Resets},
		{"icmp_closed", c.ICMPClosed}, {"icmp_filtered", c.ICMPFiltered}, {"icmp_other", c.ICMPOther},
		{"return_blocked", c.ReturnBlocked}, {"followups", c.Followups},
	} {
		if f.n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, f.n))
		}
	}
	if len(parts) == 0 {
		return "{absent}"
	}
	return "{" + strings.Join(parts, " ") + "}"
}
