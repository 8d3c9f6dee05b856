package export

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/classify"
)

const metricsDoc = "../docs/metrics.md"

// Catalog ids of the built-in table that the fixtures use.
const (
	idXcatdTCP catalog.ServiceID = 1
	idXcatiUDP catalog.ServiceID = 4
	idBootps   catalog.ServiceID = 13
	idTFTPUDP  catalog.ServiceID = 18
	idMountUDP catalog.ServiceID = 37
	// idNoRow is a slot the built-in catalog has no row for.
	idNoRow catalog.ServiceID = 700
)

// metricsCatalog is the built-in catalog with mountd's UDP port learned, so
// that the fixtures show a learned port's label.
func metricsCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err = cat.WithLearnedPort("mount-udp/udp", 20048)
	if err != nil {
		t.Fatal(err)
	}
	for id, name := range map[catalog.ServiceID]string{
		idXcatdTCP: "xcatdport/tcp", idXcatiUDP: "xcatiport/udp", idBootps: "bootps/udp",
		idTFTPUDP: "tftp-udp/udp", idMountUDP: "mount-udp/udp",
	} {
		if e := cat.Entry(id); e == nil || e.Key() != name {
			t.Fatalf("the built-in catalog's row %d is not %s any more: update the fixture ids", id, name)
		}
	}
	if cat.Entry(idNoRow) != nil {
		t.Fatalf("the built-in catalog has a row %d: pick another unused id", idNoRow)
	}
	return cat
}

var (
	mn01    = netip.MustParseAddr("10.1.0.1")
	mn02    = netip.MustParseAddr("10.1.0.2")
	cn21    = netip.MustParseAddr("10.1.0.21")
	cn22    = netip.MustParseAddr("10.1.0.22")
	cn22v6  = netip.MustParseAddr("::ffff:10.1.0.22") // cn22 as an IPv4-mapped address
	cn23    = netip.MustParseAddr("10.1.0.23")
	cnMAC   = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	t0Snaps = time.Date(2026, 3, 2, 9, 15, 30, 0, time.UTC)
)

// metricsSnapshot is a provisioning burst seen halfway: xcatd rejects with
// resets, xcatiport answers ICMP port unreachable, TFTP works, DHCP is
// pending, and two servers run something on tcp/8080.
func metricsSnapshot() bpf.Snapshot {
	services := make([]bpf.ServiceCounters, catalog.MaxServiceID+1)
	services[0] = bpf.ServiceCounters{Packets: 40, Bytes: 4000, Requests: 30, Replies: 10}
	services[idXcatdTCP] = bpf.ServiceCounters{Packets: 12, Bytes: 720, Requests: 6, Replies: 6, SYN: 6, RST: 6}
	services[idXcatiUDP] = bpf.ServiceCounters{Packets: 8, Bytes: 800, Requests: 4, ICMPClosed: 4}
	services[idBootps] = bpf.ServiceCounters{Packets: 3, Bytes: 1026, Requests: 3}
	services[idTFTPUDP] = bpf.ServiceCounters{Packets: 30, Bytes: 15360, Requests: 10, Replies: 20, ICMPOther: 1}
	services[idMountUDP] = bpf.ServiceCounters{Packets: 2, Bytes: 180, Requests: 1, Replies: 1}
	// A slot the catalog has no row for: its traffic must not become a label.
	services[idNoRow] = bpf.ServiceCounters{Packets: 5, Bytes: 500, Requests: 5}

	parse := make([]uint64, bpf.NumParseCounters)
	parse[bpf.ParsePackets] = 103
	parse[bpf.ParseNonIP] = 3
	parse[bpf.ParseVLAN] = 10
	parse[bpf.ParseNonCatalog] = 45
	parse[bpf.ParseExchangeNew] = 9
	parse[bpf.ParseUnexpectedNew] = 3

	return bpf.Snapshot{
		Time:     t0Snaps,
		Services: services,
		Exchanges: bpf.ExchangeEntries(map[bpf.ExchangeKey]bpf.ExchangeCounters{
			{Service: idXcatdTCP, Client: cn22, Server: mn01}:   {Attempts: 3, Resets: 3},
			{Service: idXcatiUDP, Client: cn23, Server: mn01}:   {Attempts: 4, ICMPClosed: 4},
			{Service: idTFTPUDP, Client: cn21, Server: mn01}:    {Attempts: 10, Answers: 10},
			{Service: idBootps, ClientMAC: cnMAC}:               {Attempts: 3},
			{Service: idNoRow, Client: cn21, Server: mn02}:      {Attempts: 5},
			{Service: idXcatdTCP, Client: cn22v6, Server: mn01}: {Attempts: 1},
			{Service: idMountUDP, Client: cn21, Server: mn01}:   {Attempts: 1, Answers: 1},
		}),
		Unexpected: map[bpf.UnexpectedKey]bpf.UnexpectedCounters{
			{Proto: catalog.TCP, Server: mn01, Port: 8080}: {Answers: 4, Client: cn21},
			{Proto: catalog.TCP, Server: mn02, Port: 8080}: {Answers: 1, Client: cn21},
			{Proto: catalog.UDP, Server: mn02, Port: 5353}: {Answers: 2, Client: cn22},
			// Answered before mountd's port was learned: expected now.
			{Proto: catalog.UDP, Server: mn01, Port: 20048}: {Answers: 1, Client: cn21},
		},
		Parse: parse,
		Lost:  2,
	}
}

func metricsVerdicts() []classify.ServiceVerdict {
	return []classify.ServiceVerdict{
		{ServiceID: idXcatdTCP, Service: "xcatdport", Proto: "tcp", Port: "3001", Required: true,
			Status: "required", Reason: classify.ReasonReset, Exchanges: 1},
		{ServiceID: idXcatiUDP, Service: "xcatiport", Proto: "udp", Port: "3002", Required: true,
			Status: "required", Reason: classify.ReasonICMPPortUnreachable, Exchanges: 1},
		// A verdict about a row the catalog does not have is left out.
		{ServiceID: idNoRow, Service: "bogus", Proto: "tcp", Port: "1", Reason: classify.ReasonNoReply, Exchanges: 7},
	}
}

func metricsSinks() []Stats {
	return []Stats{
		{Name: "jsonl:-", Emitted: 5, Delivered: 5, Queued: 0, QueueSize: 4096, Connected: true},
		{Name: "syslog+tcp://siem.example.net:514", Emitted: 5, Delivered: 2, Dropped: 1, Retries: 4,
			Queued: 2, QueueSize: 4096, LastError: "connection refused"},
		// The same spec twice: two sinks, two series.
		{Name: "jsonl:-", Emitted: 5, Delivered: 5, QueueSize: 16, Connected: true},
	}
}

// metricsSources wires the fixtures; PerNode is off.
func metricsSources(t testing.TB) MetricsSources {
	cat := metricsCatalog(t)
	return MetricsSources{
		Snapshot:    func() (bpf.Snapshot, error) { return metricsSnapshot(), nil },
		Catalog:     func() *catalog.Catalog { return cat },
		Verdicts:    metricsVerdicts,
		Sinks:       metricsSinks,
		Attachments: func() []Attachment { return []Attachment{{Interface: "eth1", Mode: "native", Egress: "tcx"}} },
		MapStats: func() []MapStat {
			return []MapStat{
				{Name: "exchanges", Entries: 7, EntriesKnown: true, Capacity: 65536},
				{Name: "unexpected", Capacity: 4096},
			}
		},
		Version: "1.2.3",
	}
}

// newTestCollector fixes what differs between machines and runs: the Go
// version, and a clock that makes every Snapshot call take 125ms.
func newTestCollector(src MetricsSources) *Collector {
	c := NewCollector(src)
	c.goVersion = "go1.26-test"
	var mu sync.Mutex
	now := t0Snaps
	c.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(125 * time.Millisecond)
		return now
	}
	return c
}

// TestMetricsGolden compares a whole scrape of the fixtures with
// testdata/metrics.golden, the exposition an administrator reads; -update
// rewrites it.
func TestMetricsGolden(t *testing.T) {
	path := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(path, exposition(t, newTestCollector(metricsSources(t))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run go test ./export -update to create it)", err)
	}
	defer want.Close()
	if err := testutil.CollectAndCompare(newTestCollector(metricsSources(t)), want); err != nil {
		t.Errorf("scrape differs from %s (go test ./export -update rewrites it after review):\n%v", path, err)
	}
}

// TestMetricsFamilies checks the metrics that do not depend on the catalog
// against expositions written by hand.
func TestMetricsFamilies(t *testing.T) {
	c := newTestCollector(metricsSources(t))
	const want = `
# HELP portwatch_attach_info Always 1 per watched interface: the XDP attach mode (native, generic) or capture, and how egress is seen (tcx, clsact, afpacket).
# TYPE portwatch_attach_info gauge
portwatch_attach_info{egress="tcx",interface="eth1",mode="native"} 1
# HELP portwatch_build_info Always 1; the labels give portwatch's version and the Go version it was built with.
# TYPE portwatch_build_info gauge
portwatch_build_info{goversion="go1.26-test",version="1.2.3"} 1
# HELP portwatch_events_dropped_total Verdict events the sink discarded: its queue was full (the destination is down or too slow) or it was closing.
# TYPE portwatch_events_dropped_total counter
portwatch_events_dropped_total{sink="jsonl:-"} 0
portwatch_events_dropped_total{sink="jsonl:- #2"} 0
portwatch_events_dropped_total{sink="syslog+tcp://siem.example.net:514"} 1
# HELP portwatch_sink_connected 1 while the sink holds an open file or connection to its destination.
# TYPE portwatch_sink_connected gauge
portwatch_sink_connected{sink="jsonl:-"} 1
portwatch_sink_connected{sink="jsonl:- #2"} 1
portwatch_sink_connected{sink="syslog+tcp://siem.example.net:514"} 0
# HELP portwatch_sink_queue_length Verdict events waiting in the sink's queue, the one being written included.
# TYPE portwatch_sink_queue_length gauge
portwatch_sink_queue_length{sink="jsonl:-"} 0
portwatch_sink_queue_length{sink="jsonl:- #2"} 0
portwatch_sink_queue_length{sink="syslog+tcp://siem.example.net:514"} 2
# HELP portwatch_map_entries Entries in use in a bounded table of the packet program.
# TYPE portwatch_map_entries gauge
portwatch_map_entries{map="exchanges"} 7
# HELP portwatch_map_capacity Entries a bounded table of the packet program can hold.
# TYPE portwatch_map_capacity gauge
portwatch_map_capacity{map="exchanges"} 65536
portwatch_map_capacity{map="unexpected"} 4096
# HELP portwatch_noncatalog_packets_total TCP and UDP packets on ports in no catalog row (not counted in portwatch_packets_total).
# TYPE portwatch_noncatalog_packets_total counter
portwatch_noncatalog_packets_total 45
# HELP portwatch_lost_packets_total Packets the capture dropped before portwatch saw them (AF_PACKET drops, a damaged capture file); always 0 for the XDP and TC hooks.
# TYPE portwatch_lost_packets_total counter
portwatch_lost_packets_total 2
# HELP portwatch_exchanges_evicted_total Estimated exchanges pushed out of the bounded exchange table to make room: exchanges created minus exchanges held now. When it grows, verdicts can miss blocked exchanges; raise the table size.
# TYPE portwatch_exchanges_evicted_total counter
portwatch_exchanges_evicted_total 2
# HELP portwatch_drain_duration_seconds How long reading the counters (the kernel maps, or the capture's tables) took in this scrape.
# TYPE portwatch_drain_duration_seconds gauge
portwatch_drain_duration_seconds 0.125
# HELP portwatch_snapshot_up 1 when this scrape could read the counters, 0 when it failed (see portwatch_scrape_errors_total and the log).
# TYPE portwatch_snapshot_up gauge
portwatch_snapshot_up 1
# HELP portwatch_scrape_errors_total Scrapes in which reading the counters failed; the other metrics were still served.
# TYPE portwatch_scrape_errors_total counter
portwatch_scrape_errors_total 0
`
	err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"portwatch_attach_info", "portwatch_build_info", "portwatch_events_dropped_total",
		"portwatch_sink_connected", "portwatch_sink_queue_length", "portwatch_map_entries",
		"portwatch_map_capacity", "portwatch_noncatalog_packets_total", "portwatch_lost_packets_total",
		"portwatch_exchanges_evicted_total", "portwatch_drain_duration_seconds", "portwatch_snapshot_up",
		"portwatch_scrape_errors_total")
	if err != nil {
		t.Error(err)
	}
}

// TestMetricsServiceRows checks single series of the catalog-labelled
// families: the blocked rows, a learned port, and a row without traffic.
func TestMetricsServiceRows(t *testing.T) {
	families := gather(t, newTestCollector(metricsSources(t)))
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"portwatch_verdict", map[string]string{"service": "xcatdport", "proto": "tcp", "port": "3001", "status": "required", "reason": "reset"}, 1},
		{"portwatch_verdict", map[string]string{"service": "xcatiport", "proto": "udp", "port": "3002", "status": "required", "reason": "icmp-port-unreachable"}, 1},
		{"portwatch_verdict", map[string]string{"service": "tftp-udp", "proto": "udp", "port": "69", "status": "required", "reason": ""}, 0},
		{"portwatch_verdict", map[string]string{"service": "kerberos", "proto": "tcp", "port": "88", "status": "obsolete", "reason": ""}, 0},
		{"portwatch_blocked_exchanges", map[string]string{"service": "xcatdport", "proto": "tcp", "port": "3001"}, 1},
		{"portwatch_blocked_exchanges", map[string]string{"service": "tftp-udp", "proto": "udp", "port": "69"}, 0},
		{"portwatch_resets_total", map[string]string{"service": "xcatdport", "proto": "tcp", "port": "3001"}, 6},
		{"portwatch_syn_total", map[string]string{"service": "xcatdport", "proto": "tcp", "port": "3001"}, 6},
		{"portwatch_icmp_unreachable_total", map[string]string{"service": "xcatiport", "proto": "udp", "port": "3002", "reason": "port-unreachable"}, 4},
		{"portwatch_icmp_unreachable_total", map[string]string{"service": "tftp-udp", "proto": "udp", "port": "69", "reason": "other"}, 1},
		{"portwatch_replies_total", map[string]string{"service": "tftp-udp", "proto": "udp", "port": "69"}, 20},
		{"portwatch_packets_total", map[string]string{"service": "mount-udp", "proto": "udp", "port": "20048 (learned)"}, 2},
		{"portwatch_bytes_total", map[string]string{"service": "ssh-tcp", "proto": "tcp", "port": "22"}, 0},
		{"portwatch_parse_total", map[string]string{"outcome": "exchange_new"}, 9},
		{"portwatch_parse_total", map[string]string{"outcome": "map_update_failed"}, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.family, tt.labels), func(t *testing.T) {
			got, ok := value(families[tt.family], tt.labels)
			if !ok {
				t.Fatalf("no series %s%v", tt.family, tt.labels)
			}
			if got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.family, tt.labels, got, tt.want)
			}
		})
	}
	if n := len(families["portwatch_parse_total"].GetMetric()); n != int(bpf.NumParseCounters) {
		t.Errorf("portwatch_parse_total has %d outcomes, want %d", n, bpf.NumParseCounters)
	}
}

// TestMetricsLint runs promlint over a scrape, with and without the
// per-node series.
func TestMetricsLint(t *testing.T) {
	for _, perNode := range []bool{false, true} {
		t.Run(fmt.Sprintf("per-node=%v", perNode), func(t *testing.T) {
			src := metricsSources(t)
			src.PerNode = perNode
			problems, err := testutil.CollectAndLint(newTestCollector(src))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
		})
	}
}

// unexpectedOn says that servers answered on proto/port, each with answers
// answers.
func unexpectedOn(m map[bpf.UnexpectedKey]bpf.UnexpectedCounters, proto catalog.Proto, port uint16, servers int, answers uint64) {
	for i := range servers {
		server := netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
		m[bpf.UnexpectedKey{Proto: proto, Server: server, Port: port}] = bpf.UnexpectedCounters{Answers: answers, Client: cn21}
	}
}

func TestUnexpectedTopN(t *testing.T) {
	open := map[bpf.UnexpectedKey]bpf.UnexpectedCounters{}
	unexpectedOn(open, catalog.TCP, 8080, 3, 1)  // 3 servers
	unexpectedOn(open, catalog.TCP, 9090, 2, 5)  // 2 servers, 10 answers
	unexpectedOn(open, catalog.UDP, 5353, 2, 2)  // 2 servers, 4 answers
	unexpectedOn(open, catalog.TCP, 6000, 1, 1)  // 1 server, 1 answer
	unexpectedOn(open, catalog.UDP, 6000, 1, 1)  // ties tcp/6000: tcp first
	unexpectedOn(open, catalog.UDP, 7777, 4, 0)  // never answered: not open
	unexpectedOn(open, catalog.UDP, 20048, 5, 3) // mountd, learned since: expected

	tests := []struct {
		name string
		top  int
		want string
	}{
		{"default names all", 0, `
portwatch_unexpected_open{port="8080",proto="tcp"} 3
portwatch_unexpected_open{port="9090",proto="tcp"} 2
portwatch_unexpected_open{port="5353",proto="udp"} 2
portwatch_unexpected_open{port="6000",proto="tcp"} 1
portwatch_unexpected_open{port="6000",proto="udp"} 1
portwatch_unexpected_open{port="other",proto="tcp"} 0
portwatch_unexpected_open{port="other",proto="udp"} 0
`},
		{"top 2: answers break the tie between 9090 and 5353", 2, `
portwatch_unexpected_open{port="8080",proto="tcp"} 3
portwatch_unexpected_open{port="9090",proto="tcp"} 2
portwatch_unexpected_open{port="other",proto="tcp"} 1
portwatch_unexpected_open{port="other",proto="udp"} 3
`},
		{"top 4: protocol breaks a full tie", 4, `
portwatch_unexpected_open{port="8080",proto="tcp"} 3
portwatch_unexpected_open{port="9090",proto="tcp"} 2
portwatch_unexpected_open{port="5353",proto="udp"} 2
portwatch_unexpected_open{port="6000",proto="tcp"} 1
portwatch_unexpected_open{port="other",proto="tcp"} 0
portwatch_unexpected_open{port="other",proto="udp"} 1
`},
		{"negative names none", -1, `
portwatch_unexpected_open{port="other",proto="tcp"} 6
portwatch_unexpected_open{port="other",proto="udp"} 3
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := metricsSources(t)
			src.TopUnexpected = tt.top
			src.Snapshot = func() (bpf.Snapshot, error) {
				snap := metricsSnapshot()
				snap.Unexpected = open
				return snap, nil
			}
			want := `# HELP portwatch_unexpected_open Servers seen answering on a port that no catalog row names (while the bounded table remembers them), per port; the ports with the most servers are named, the others are summed under port="other".
# TYPE portwatch_unexpected_open gauge` + tt.want
			if err := testutil.CollectAndCompare(newTestCollector(src), strings.NewReader(want), "portwatch_unexpected_open"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPerNode(t *testing.T) {
	const help = `
# HELP portwatch_exchange_attempts_total Requests from one client to one server's service (distinct SYNs, UDP requests, DHCP DISCOVER/REQUEST); only with --metrics-per-node.
# TYPE portwatch_exchange_attempts_total counter
# HELP portwatch_exchange_answers_total Answers from one server's service to one client (SYN-ACKs, UDP replies, DHCP replies); only with --metrics-per-node.
# TYPE portwatch_exchange_answers_total counter
`
	tests := []struct {
		perNode bool
		want    string
	}{
		{false, ""},
		// cn22 and its IPv4-mapped form are one client; the DHCP client is
		// its MAC, its server unknown; the exchange of a service the
		// catalog lacks is left out.
		{true, help + `
portwatch_exchange_attempts_total{client="10.1.0.21",port="69",proto="udp",server="10.1.0.1",service="tftp-udp"} 10
portwatch_exchange_attempts_total{client="10.1.0.21",port="20048 (learned)",proto="udp",server="10.1.0.1",service="mount-udp"} 1
portwatch_exchange_attempts_total{client="10.1.0.22",port="3001",proto="tcp",server="10.1.0.1",service="xcatdport"} 4
portwatch_exchange_attempts_total{client="10.1.0.23",port="3002",proto="udp",server="10.1.0.1",service="xcatiport"} 4
portwatch_exchange_attempts_total{client="52:54:00:12:34:56",port="67",proto="udp",server="",service="bootps"} 3
portwatch_exchange_answers_total{client="10.1.0.21",port="69",proto="udp",server="10.1.0.1",service="tftp-udp"} 10
portwatch_exchange_answers_total{client="10.1.0.21",port="20048 (learned)",proto="udp",server="10.1.0.1",service="mount-udp"} 1
portwatch_exchange_answers_total{client="10.1.0.22",port="3001",proto="tcp",server="10.1.0.1",service="xcatdport"} 0
portwatch_exchange_answers_total{client="10.1.0.23",port="3002",proto="udp",server="10.1.0.1",service="xcatiport"} 0
portwatch_exchange_answers_total{client="52:54:00:12:34:56",port="67",proto="udp",server="",service="bootps"} 0
`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("per-node=%v", tt.perNode), func(t *testing.T) {
			src := metricsSources(t)
			src.PerNode = tt.perNode
			c := newTestCollector(src)
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want),
				"portwatch_exchange_attempts_total", "portwatch_exchange_answers_total"); err != nil {
				t.Error(err)
			}
			descs := describe(c)
			for _, name := range []string{"portwatch_exchange_attempts_total", "portwatch_exchange_answers_total"} {
				if got := descs[name]; got != tt.perNode {
					t.Errorf("Describe sends %s: %v, want %v", name, got, tt.perNode)
				}
			}
		})
	}
}

// TestSnapshotFailure: a failing Snapshot drops only the metrics that come
// from it; the scrape succeeds, counts the error and reports it to the
// caller; the next good snapshot brings everything back.
func TestSnapshotFailure(t *testing.T) {
	src := metricsSources(t)
	failures := 2
	var reported []error
	errRead := errors.New("reading map exchanges: operation not permitted")
	src.Snapshot = func() (bpf.Snapshot, error) {
		if failures > 0 {
			failures--
			return bpf.Snapshot{}, errRead
		}
		return metricsSnapshot(), nil
	}
	src.SnapshotFailed = func(err error) { reported = append(reported, err) }
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(newTestCollector(src)); err != nil {
		t.Fatal(err)
	}

	fromSnapshot := []string{"portwatch_packets_total", "portwatch_noncatalog_packets_total",
		"portwatch_unexpected_open", "portwatch_parse_total", "portwatch_lost_packets_total",
		"portwatch_exchanges_evicted_total"}
	always := []string{"portwatch_verdict", "portwatch_blocked_exchanges", "portwatch_events_emitted_total",
		"portwatch_build_info", "portwatch_attach_info", "portwatch_map_capacity",
		"portwatch_drain_duration_seconds", "portwatch_scrape_errors_total", "portwatch_snapshot_up"}
	for scrape, want := range []struct {
		up, errors float64
		snapshot   bool
	}{
		{up: 0, errors: 1},
		{up: 0, errors: 2},
		{up: 1, errors: 2, snapshot: true},
	} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("scrape %d failed: %v", scrape, err)
		}
		families := map[string]*dto.MetricFamily{}
		for _, mf := range mfs {
			families[mf.GetName()] = mf
		}
		for _, name := range always {
			if families[name] == nil {
				t.Errorf("scrape %d: %s is missing", scrape, name)
			}
		}
		for _, name := range fromSnapshot {
			if got := families[name] != nil; got != want.snapshot {
				t.Errorf("scrape %d: %s present = %v, want %v", scrape, name, got, want.snapshot)
			}
		}
		if got, _ := value(families["portwatch_snapshot_up"], nil); got != want.up {
			t.Errorf("scrape %d: portwatch_snapshot_up = %v, want %v", scrape, got, want.up)
		}
		if got, _ := value(families["portwatch_scrape_errors_total"], nil); got != want.errors {
			t.Errorf("scrape %d: portwatch_scrape_errors_total = %v, want %v", scrape, got, want.errors)
		}
		if got, _ := value(families["portwatch_verdict"], map[string]string{"service": "xcatdport", "proto": "tcp"}); got != 1 {
			t.Errorf("scrape %d: the xcatdport/tcp verdict = %v, want 1", scrape, got)
		}
	}
	if len(reported) != 2 || !errors.Is(reported[0], errRead) {
		t.Errorf("SnapshotFailed got %v, want the error twice", reported)
	}
}

// TestLabelsOnlyFromCatalog: traffic in every slot, catalog row or not, and
// exchanges of services the catalog lacks, yield exactly one series per
// catalog row; everything else is summed without a label.
func TestLabelsOnlyFromCatalog(t *testing.T) {
	cat := metricsCatalog(t)
	src := metricsSources(t)
	src.PerNode = true
	var wantNoncatalog float64
	src.Snapshot = func() (bpf.Snapshot, error) {
		snap := metricsSnapshot()
		snap.Exchanges = nil
		for id := range snap.Services {
			snap.Services[id] = bpf.ServiceCounters{Packets: 1, Bytes: 100, Requests: 1, SYN: 1}
			snap.Exchanges = append(snap.Exchanges, bpf.ExchangeEntry{Key: bpf.ExchangeKey{Service: catalog.ServiceID(id), Client: cn21, Server: mn01}, Counters: bpf.ExchangeCounters{Attempts: 1}})
		}
		return snap, nil
	}
	for id := range catalog.MaxServiceID + 1 {
		if id == 0 || cat.Entry(id) == nil {
			wantNoncatalog++
		}
	}

	type row struct{ service, proto, port string }
	rows := map[row]bool{}
	for _, e := range cat.Entries() {
		rows[row{e.Name, e.Proto.String(), e.PortString()}] = true
	}
	families := gather(t, newTestCollector(src))
	for name, mf := range families {
		perRow := map[row]int{}
		for _, m := range mf.GetMetric() {
			labels := labelMap(m)
			service, ok := labels["service"]
			if !ok {
				continue
			}
			r := row{service, labels["proto"], labels["port"]}
			if !rows[r] {
				t.Errorf("%s has a series for %v, which is no catalog row", name, r)
			}
			perRow[r]++
		}
		if len(perRow) > 0 && len(perRow) != len(rows) {
			t.Errorf("%s has series for %d rows, want the catalog's %d", name, len(perRow), len(rows))
		}
	}
	if got, _ := value(families["portwatch_noncatalog_packets_total"], nil); got != wantNoncatalog {
		t.Errorf("portwatch_noncatalog_packets_total = %v, want %v (slot 0 and every slot without a row)", got, wantNoncatalog)
	}
}

// TestEvictedNeverDecreases: the eviction estimate is created minus held,
// and the counter holds its highest value when the estimate dips.
func TestEvictedNeverDecreases(t *testing.T) {
	steps := []struct {
		created uint64
		held    int
		want    float64
	}{
		{created: 0, held: 0, want: 0},
		{created: 10, held: 10, want: 0},
		{created: 20, held: 14, want: 6},
		{created: 21, held: 16, want: 6}, // read between an insert and its count: dips to 5
		{created: 30, held: 16, want: 14},
		{created: 30, held: 40, want: 14}, // more held than created: a walk that repeated entries
	}
	var step int
	src := metricsSources(t)
	src.Snapshot = func() (bpf.Snapshot, error) {
		s := steps[step]
		snap := metricsSnapshot()
		snap.Parse[bpf.ParseExchangeNew] = s.created
		snap.Exchanges = nil
		for i := range s.held {
			snap.Exchanges = append(snap.Exchanges, bpf.ExchangeEntry{Key: bpf.ExchangeKey{Service: idTFTPUDP, Client: netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), Server: mn01}, Counters: bpf.ExchangeCounters{}})
		}
		return snap, nil
	}
	c := newTestCollector(src)
	for step = range steps {
		got, ok := value(gather(t, c)["portwatch_exchanges_evicted_total"], nil)
		if !ok || got != steps[step].want {
			t.Errorf("step %d (created %d, held %d): portwatch_exchanges_evicted_total = %v, want %v",
				step, steps[step].created, steps[step].held, got, steps[step].want)
		}
	}
}

func TestSinkLabels(t *testing.T) {
	tests := []struct {
		names, want []string
	}{
		{nil, []string{}},
		{[]string{"jsonl:-", "cef:/var/log/pw.cef"}, []string{"jsonl:-", "cef:/var/log/pw.cef"}},
		{[]string{"jsonl:-", "syslog://siem:514", "jsonl:-", "jsonl:-"}, []string{"jsonl:-", "syslog://siem:514", "jsonl:- #2", "jsonl:- #3"}},
		// A path that is not UTF-8 would make the whole scrape fail.
		{[]string{"jsonl:/tmp/\xff.log"}, []string{"jsonl:/tmp/\uFFFD.log"}},
	}
	for _, tt := range tests {
		stats := make([]Stats, len(tt.names))
		for i, n := range tt.names {
			stats[i].Name = n
		}
		if got := sinkLabels(stats); !slices.Equal(got, tt.want) {
			t.Errorf("sinkLabels(%q) = %q, want %q", tt.names, got, tt.want)
		}
	}
}

// TestNilSources: a collector with no sources still reports build info and
// the error counter, and a nil catalog leaves out only the labelled rows.
func TestNilSources(t *testing.T) {
	families := gather(t, newTestCollector(MetricsSources{}))
	if got := slices.Sorted(maps.Keys(families)); !slices.Equal(got, []string{"portwatch_build_info", "portwatch_scrape_errors_total"}) {
		t.Errorf("with no sources the scrape holds %v", got)
	}

	src := metricsSources(t)
	src.Catalog = func() *catalog.Catalog { return nil }
	families = gather(t, newTestCollector(src))
	for _, name := range []string{"portwatch_packets_total", "portwatch_verdict", "portwatch_noncatalog_packets_total"} {
		if families[name] != nil {
			t.Errorf("without a catalog the scrape has %s", name)
		}
	}
	for _, name := range []string{"portwatch_parse_total", "portwatch_unexpected_open", "portwatch_events_emitted_total"} {
		if families[name] == nil {
			t.Errorf("without a catalog the scrape lacks %s", name)
		}
	}
}

// TestConcurrentScrapes: scrapes take turns, so a source that is not safe
// for concurrent calls is safe to use (the race detector checks).
func TestConcurrentScrapes(t *testing.T) {
	src := metricsSources(t)
	calls := 0
	src.Snapshot = func() (bpf.Snapshot, error) {
		calls++ // unsynchronised on purpose
		return metricsSnapshot(), nil
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(newTestCollector(src)); err != nil {
		t.Fatal(err)
	}
	const scrapers, scrapes = 4, 10
	var wg sync.WaitGroup
	for range scrapers {
		wg.Go(func() {
			for range scrapes {
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if calls != scrapers*scrapes {
		t.Errorf("Snapshot was called %d times, want %d", calls, scrapers*scrapes)
	}
}

// TestMetricsHandler serves the registry on loopback and parses the scrape
// as Prometheus would.
func TestMetricsHandler(t *testing.T) {
	src := metricsSources(t)
	var fail atomic.Bool
	src.Snapshot = func() (bpf.Snapshot, error) {
		if fail.Load() {
			return bpf.Snapshot{}, errors.New("map read failed")
		}
		return metricsSnapshot(), nil
	}
	reg, err := NewMetricsRegistry(newTestCollector(src))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewMetricsHandler(reg))
	t.Cleanup(srv.Close)

	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape answered %s", resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want the text exposition format", ct)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("parsing the scrape: %v", err)
		}
		return families
	}

	families := scrape()
	for _, name := range []string{"portwatch_packets_total", "portwatch_build_info", "go_goroutines",
		"process_cpu_seconds_total", "promhttp_metric_handler_requests_total"} {
		if families[name] == nil {
			t.Errorf("the scrape has no %s", name)
		}
	}
	if got, _ := value(families["portwatch_verdict"], map[string]string{"service": "xcatiport", "proto": "udp", "reason": "icmp-port-unreachable"}); got != 1 {
		t.Errorf("xcatiport/udp verdict = %v, want 1", got)
	}
	if mf := families["portwatch_packets_total"]; mf.GetType() != dto.MetricType_COUNTER {
		t.Errorf("portwatch_packets_total is a %v, want a counter", mf.GetType())
	}

	fail.Store(true)
	families = scrape()
	if got, _ := value(families["portwatch_scrape_errors_total"], nil); got != 1 {
		t.Errorf("after a failed snapshot portwatch_scrape_errors_total = %v, want 1", got)
	}
	if families["portwatch_verdict"] == nil {
		t.Error("a failed snapshot took the verdicts out of the scrape")
	}
}

// TestMetricsDoc keeps docs/metrics.md and the collector in step: every
// metric is documented, and the document names no metric that is gone.
func TestMetricsDoc(t *testing.T) {
	doc, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	src := metricsSources(t)
	src.PerNode = true
	described := describe(NewCollector(src))
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(portwatch_[a-z_]+)").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	for _, name := range slices.Sorted(maps.Keys(described)) {
		if !documented[name] {
			t.Errorf("%s does not document %s", metricsDoc, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(documented)) {
		if !described[name] {
			t.Errorf("%s documents %s, which the collector does not have", metricsDoc, name)
		}
	}
}

func BenchmarkCollect(b *testing.B) {
	snap := metricsSnapshot()
	snap.Exchanges = nil
	for i := range 65536 {
		client := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
		snap.Exchanges = append(snap.Exchanges, bpf.ExchangeEntry{Key: bpf.ExchangeKey{Service: idTFTPUDP, Client: client, Server: mn01}, Counters: bpf.ExchangeCounters{Attempts: 3, Answers: 3}})
	}
	for _, perNode := range []bool{false, true} {
		b.Run(fmt.Sprintf("exchanges=65536/per-node=%v", perNode), func(b *testing.B) {
			src := metricsSources(b)
			src.PerNode = perNode
			src.Snapshot = func() (bpf.Snapshot, error) { return snap, nil }
			c := NewCollector(src)
			ch := make(chan prometheus.Metric, 1024)
			done := make(chan struct{})
			go func() {
				for range ch {
				}
				close(done)
			}()
			for b.Loop() {
				c.Collect(ch)
			}
			close(ch)
			<-done
		})
	}
}

// gather collects c once into its metric families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// exposition is one scrape of c in the text format Prometheus reads.
// (testutil.CollectAndFormat keeps only the metrics it is given by name.)
func exposition(t *testing.T, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	enc := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// describe returns the names of the metrics c describes.
func describe(c prometheus.Collector) map[string]bool {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	out := map[string]bool{}
	for d := range ch {
		// A Desc prints as Desc{fqName: "NAME", ...}.
		s := d.String()
		s = s[strings.Index(s, `"`)+1:]
		out[s[:strings.Index(s, `"`)]] = true
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// value returns the value of the one series of mf whose labels include
// want; a label absent from a series reads as "".
func value(mf *dto.MetricFamily, want map[string]string) (float64, bool) {
	for _, m := range mf.GetMetric() {
		labels := labelMap(m)
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}
