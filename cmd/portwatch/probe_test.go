package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/classify"
	"portwatch/export"
	"portwatch/probe"
)

// snapshotBackend is a backend whose counters are a fixed snapshot.
type snapshotBackend struct {
	s   bpf.Snapshot
	err error
}

func (b *snapshotBackend) Snapshot() (bpf.Snapshot, error)   { return b.s, b.err }
func (b *snapshotBackend) SetCatalog(*catalog.Catalog) error { return nil }
func (b *snapshotBackend) Attachments() []export.Attachment {
	return []export.Attachment{{Interface: "eth0", Mode: "native", Egress: "tcx"}}
}
func (b *snapshotBackend) MapStats() []export.MapStat { return nil }
func (b *snapshotBackend) Close() error               { return nil }

func TestObserverAPI(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{Ports: []string{"mount-udp=20048"}})
	if err != nil {
		t.Fatal(err)
	}
	node := netip.MustParseAddr("10.77.1.11")
	other := netip.MustParseAddr("10.77.1.12")
	mn := netip.MustParseAddr("10.77.0.10")
	mac := [6]byte{0x02, 0x70, 0x77, 0x01, 0x00, 0x0b}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	be := &snapshotBackend{s: bpf.Snapshot{Time: t0, Exchanges: bpf.ExchangeEntries(map[bpf.ExchangeKey]bpf.ExchangeCounters{
		{Service: 18, Client: node, Server: mn}:  {Attempts: 3, Answers: 3, FirstSeen: t0, LastSeen: t0},
		{Service: 1, Client: node, Server: mn}:   {Attempts: 1, Resets: 1},
		{Service: 37, Client: node, Server: mn}:  {Attempts: 1, Answers: 1},
		{Service: 1, Client: other, Server: mn}:  {Attempts: 9},
		{Service: 13, ClientMAC: mac}:            {Attempts: 2, Answers: 2},
		{Service: 13, ClientMAC: [6]byte{2, 9}}:  {Attempts: 7},
		{Service: 999, Client: node, Server: mn}: {Attempts: 1}, // a row since removed
	})}}
	srv := httptest.NewServer(http.HandlerFunc(observerAPI{be: be, v: &verdicts{cat: cat}}.ServeHTTP))
	defer srv.Close()
	client, err := probe.NewObserverClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := client.Exchanges(context.Background(), probe.ExchangeQuery{
		Clients: []netip.Addr{node}, ClientMACs: []net.HardwareAddr{mac[:]},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range doc.Exchanges {
		got = append(got, fmt.Sprintf("%s %s/%d %s%s>%s", x.Service, x.Proto, x.Port, x.Client, x.ClientMAC, x.Server))
	}
	// DHCP is keyed by hardware address and has no server; an exchange of
	// a row no longer in the catalog keeps its id and no name.
	want := "bootps udp/67 02:70:77:01:00:0b>|xcatdport tcp/3001 10.77.1.11>10.77.0.10|tftp-udp udp/69 10.77.1.11>10.77.0.10|" +
		"mount-udp udp/20048 10.77.1.11>10.77.0.10| /0 10.77.1.11>10.77.0.10"
	if strings.Join(got, "|") != want {
		t.Errorf("exchanges\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	if doc.Observer.Host == "" || doc.Observer.Backend != "xdp" || doc.Observer.Interfaces[0] != "eth0" || !doc.Time.Equal(t0) {
		t.Errorf("observer %+v at %v", doc.Observer, doc.Time)
	}
	tracked := map[string]bool{}
	for _, p := range doc.Ports {
		tracked[fmt.Sprintf("%s/%d", p.Proto, p.Port)] = true
	}
	if !tracked["udp/69"] || !tracked["udp/20048"] || tracked["tcp/8080"] {
		t.Errorf("tracked ports %v", doc.Ports)
	}

	for _, tc := range []struct {
		method, query string
		status        int
		body          string
	}{
		{"GET", "", http.StatusBadRequest, "name a client=ADDRESS"},
		{"GET", "?client=mn", http.StatusBadRequest, "not an IP address"},
		{"POST", "?client=10.77.1.11", http.StatusMethodNotAllowed, "read-only"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+probe.ExchangesPath+tc.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(body.String(), tc.body) {
			t.Errorf("%s %s: %d %q", tc.method, tc.query, resp.StatusCode, body.String())
		}
	}
	be.err = errors.New("map read failed")
	if _, err := client.Exchanges(context.Background(), probe.ExchangeQuery{Clients: []netip.Addr{node}}); err == nil ||
		!strings.Contains(err.Error(), "503 Service Unavailable: reading the counters: map read failed") {
		t.Errorf("failing backend: %v", err)
	}
}

// sampleReport is a run over two targets with a result in each state.
func sampleReport(t *testing.T) (probe.Config, *probe.Report) {
	t.Helper()
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mn := netip.MustParseAddr("10.77.0.10")
	src := netip.AddrPortFrom(netip.MustParseAddr("10.77.1.11"), 0)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	row := func(key string, state probe.State, reason probe.Reason, rtt time.Duration, evidence string) probe.Result {
		e := cat.ByKey(key)
		return probe.Result{Target: "mn.cluster.test", Address: mn, Source: src, Service: e.Name, ServiceID: e.ID,
			Proto: e.Proto, Port: e.Port, Required: cat.IsRequired(e), Status: cat.Status(e), State: state,
			Reason: reason, RTT: rtt, Evidence: evidence, Attempts: 1, Start: t0, End: t0.Add(time.Second)}
	}
	rep := &probe.Report{
		Start: t0, End: t0.Add(3 * time.Second),
		Results: []probe.Result{
			row("ssh-tcp/tcp", probe.StateOpen, probe.ReasonSYNACK, 310*time.Microsecond, "SYN-ACK: connected"),
			row("domain-udp/udp", probe.StateNoAnswer, probe.ReasonNoReply, 0, "no reply to 3 requests in 3s\nsecond line"),
			row("tftp-udp/udp", probe.StateBlockedReturn, probe.ReasonReplyLost, 0, "observer: 3 requests arrived, 3 answers; the answer never came back"),
			row("rsync/udp", probe.StateUntestable, probe.ReasonNoRequest, 0, "rsync has no datagram protocol"),
			row("xcatdport/tcp", probe.StateBlockedInbound, probe.ReasonNotArrived, 250*time.Microsecond, "the observer never saw the request arrive"),
			row("xcatiport/tcp", probe.StateFiltered, probe.ReasonICMPAdminProhibited, 1200*time.Microsecond,
				"ICMP administratively prohibited (type 3 code 13) from 10.77.1.1"),
			row("rsyslogd/udp", probe.StateNoAnswer, probe.ReasonOneWay, 0,
				"sent; this service never answers, so only an ICMP error or --observer can judge the path"),
		},
		Failed: []probe.TargetError{{Target: probe.Target{Name: "n999", Origin: "bmcs.txt:4"}, Err: errors.New("no such host")}},
	}
	rep.Results[4].ProbeReason = probe.ReasonReset
	rep.Results[2].Observer = &probe.ObserverDelta{Tracked: true, Attempts: 3, Answers: 3}
	return probe.Config{Catalog: cat, Role: catalog.RoleMN}, rep
}

func TestProbeTable(t *testing.T) {
	cfg, rep := sampleReport(t)
	sum := summarize(rep)
	var b bytes.Buffer
	if err := writeProbeTable(&b, cfg, rep, sum); err != nil {
		t.Fatal(err)
	}
	golden(t, "probe-table", b.String())
	// rsyslogd/udp, one-way and silent without an observer, is counted
	// apart and fails nothing.
	if sum.Passed || sum.Required != 6 || sum.RequiredOpen != 1 || sum.RequiredNotOpen != 3 || sum.RequiredUntestable != 1 ||
		sum.RequiredUnconfirmed != 1 || sum.Untestable != 1 || sum.TargetsFailed != 1 {
		t.Errorf("summary %+v", sum)
	}
	// Alone, it passes the gate.
	alone := &probe.Report{Results: []probe.Result{rep.Results[len(rep.Results)-1]}}
	if s := summarize(alone); !s.Passed || s.RequiredUnconfirmed != 1 {
		t.Errorf("a one-way row without an observer: %+v", s)
	}

	b.Reset()
	if err := writeProbeJSON(&b, cfg, rep, sum); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	first := doc["results"].([]any)[0].(map[string]any)
	for _, key := range []string{"target", "service", "proto", "port", "required", "state", "reason", "rtt_ms"} {
		if _, ok := first[key]; !ok {
			t.Errorf("a result has no %q: %v", key, first)
		}
	}
	if first["rtt_ms"] != 0.31 || doc["results"].([]any)[1].(map[string]any)["rtt_ms"] != nil {
		t.Errorf("rtt_ms %v, and null without an answer", first["rtt_ms"])
	}
	if errs := doc["errors"].([]any); len(errs) != 1 || errs[0].(map[string]any)["origin"] != "bmcs.txt:4" {
		t.Errorf("errors %v", doc["errors"])
	}
}

func TestProbeEvents(t *testing.T) {
	_, rep := sampleReport(t)
	var events []classify.Event
	for _, r := range rep.Results {
		if ev, ok := probeEvent(r, "node01", &probe.ObserverStatus{URL: "http://mn:9717"}); ok {
			events = append(events, ev)
		}
	}
	// Required and not open: tftp (answer lost), xcatdport (reset, never
	// arrived), xcatiport (prohibited). ssh is open, rsync/udp untestable,
	// DNS optional.
	want := []struct {
		service    string
		reason     classify.Reason
		returnPath bool
		mode       string
	}{
		{"tftp-udp", classify.ReasonNoReply, true, "active+observer"},
		{"xcatdport", classify.ReasonReset, false, "active"},
		{"xcatiport", classify.ReasonICMPAdminProhibited, false, "active"},
	}
	if len(events) != len(want) {
		t.Fatalf("%d events: %+v", len(events), events)
	}
	for i, w := range want {
		ev := events[i]
		if ev.Verdict != classify.RequiredPortBlocked || ev.Service != w.service || ev.Reason != w.reason ||
			ev.ReturnPath != w.returnPath || ev.Observer.Mode != w.mode || ev.Observer.Backend != "probe" ||
			ev.Client != "10.77.1.11" || ev.Server != "10.77.0.10" || !ev.Required {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if events[0].Answers != 3 || !strings.HasPrefix(events[0].Message, "probe from 10.77.1.11: tftp-udp (udp/69) on mn.cluster.test is blocked-return") {
		t.Errorf("tftp event: answers %d, %q", events[0].Answers, events[0].Message)
	}
	// Every sink takes them: one line of JSON each.
	var out bytes.Buffer
	set, err := export.OpenAll([]export.Spec{{Raw: "jsonl", Format: export.FormatJSONL, Transport: export.TransportStdout}}, export.Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		set.Emit(ev)
	}
	if err := set.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"backend":"probe"`); n != 3 {
		t.Errorf("%d events written:\n%s", n, out.String())
	}
}

func TestProbeUsage(t *testing.T) {
	checkUsageErrors(t, []usageCase{
		{[]string{"probe"}, "no target to probe: give addresses or host names, or --targets-file FILE"},
		{[]string{"probe", "--role", "printer", "10.0.0.1"}, `--role/--service: role "printer": want one of mn, cn, bmc, switch`},
		{[]string{"probe", "--format", "xml", "10.0.0.1"}, `--format "xml": want table or json`},
		{[]string{"probe", "--observer", "ftp://mn", "10.0.0.1"}, "want http://HOST[:PORT]"},
		{[]string{"probe", "--dhcp-unicast", "relay", "10.0.0.1"}, `--dhcp-unicast "relay": not an IP address`},
		{[]string{"probe", "--dhcp-mac", "zz", "10.0.0.1"}, `--dhcp-mac "zz": not a hardware address`},
		{[]string{"probe", "--dhcp-mac", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "10.0.0.1"}, "want an Ethernet address (6 bytes)"},
		{[]string{"probe", "--targets-file", "/nonexistent/bmcs.txt"}, "--targets-file: open /nonexistent/bmcs.txt: no such file or directory"},
		{[]string{"probe", "--rate", "-1", "10.0.0.1"}, "--rate -1: want 0 (no limit) or more"},
		{[]string{"probe", "--observer-settle", "-1s", "10.0.0.1"}, "--observer-settle -1s: want a positive duration"},
		{[]string{"probe", "--service", "dhcp", "10.0.0.1"}, "--service dhcp: nothing to send: dhcp/tcp: never carries traffic; bootps/udp carries its requirement"},
		{[]string{"probe", "--format", "json", "--output", "cef", "10.0.0.1"}, "--output cef writes to stdout, where --format json writes its document"},
		{[]string{"probe", "--profile", "solaris", "10.0.0.1"}, `unknown profile "solaris"`},
	})
	// Only bad lines: nothing to probe, each line said.
	code, _, stderr := portwatch(t, "not a host\n10.0.0.300\n", "probe", "--targets-file", "-")
	if code != exitUsage || strings.Count(stderr, "skipped") != 2 || !strings.Contains(stderr, "no target to probe") {
		t.Errorf("only bad lines: exit %d, %q", code, stderr)
	}
}
