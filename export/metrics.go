package export

import (
	"cmp"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/classify"
)

// DefaultTopUnexpected is how many unexpected ports portwatch_unexpected_open
// names by default; the rest are summed under port="other".
const DefaultTopUnexpected = 10

// MetricsSources are what the Prometheus collector reads at each scrape. A
// nil function leaves its metrics out. The collector calls them from one
// scrape at a time, never concurrently.
type MetricsSources struct {
	// Snapshot reads the counters now: the kernel maps, or the Go twin of
	// a capture. Its counters are cumulative; the collector never resets them.
	Snapshot func() (bpf.Snapshot, error)
	// Catalog returns the current catalog. It changes while portwatch runs
	// (mountd's port is learned), and it is the only source of the
	// service, proto and port labels.
	Catalog func() *catalog.Catalog
	// Verdicts returns the services blocked now (Classifier.Blocked).
	Verdicts func() []classify.ServiceVerdict
	// Sinks returns the counters of the --output sinks (Set.Stats).
	Sinks func() []Stats
	// Attachments describes where the observer is attached.
	Attachments func() []Attachment
	// MapStats returns the fill of the kernel maps (or the twin's tables).
	MapStats func() []MapStat
	// PerNode adds per-exchange series labelled with client and server
	// addresses (--metrics-per-node); see NewCollector for the cost.
	PerNode bool
	// TopUnexpected is how many unexpected ports are named in
	// portwatch_unexpected_open: 0 means DefaultTopUnexpected, a negative
	// value names none (all are summed under port="other").
	TopUnexpected int
	// Version is portwatch's version for portwatch_build_info; empty means
	// the module version the binary was built from.
	Version string
	// SnapshotFailed, when set, is told why a Snapshot call failed, so
	// that the error can be logged; the scrape itself only counts it.
	SnapshotFailed func(error)
}

// Attachment is one place the observer watches: an interface with its XDP
// attach mode and egress hook, or a capture.
type Attachment struct {
	// Interface is the network interface ("eth1"), or the capture source.
	Interface string
	// Mode is the XDP attach mode, "native" or "generic", or "capture"
	// for the capture backend.
	Mode string
	// Egress is how outgoing packets are seen: "tcx", "clsact" or
	// "afpacket".
	Egress string
}

// MapStat is the fill of one bounded table: a kernel map, or the Go twin's
// copy of it.
type MapStat struct {
	Name string
	// Entries is the number of entries in use; it is reported only when
	// EntriesKnown is set (counting a hash map's entries means walking it).
	Entries      int
	EntriesKnown bool
	// Capacity is the table's max_entries.
	Capacity int
}

// Collector is a prometheus.Collector that reads its MetricsSources at each
// scrape and reports what they hold as constant metrics, in the manner of
// cloudflare's ebpf_exporter: the kernel's counters stay cumulative and the
// collector keeps no copy of them.
//
// Labels come only from the catalog (service, proto, port), from the small
// fixed sets of reasons, parse outcomes and sink specs, and from the top-N
// unexpected ports, so the number of series is bounded by the catalog and
// the configuration: traffic itself cannot add series. The one exception
// is MetricsSources.PerNode.
type Collector struct {
	src       MetricsSources
	top       int
	goVersion string
	now       func() time.Time // time.Now; tests fix it

	// mu makes scrapes take turns: the sources need not be safe for
	// concurrent calls, and the fields below change at each scrape.
	mu           sync.Mutex
	scrapeErrors uint64
	// evicted is the highest portwatch_exchanges_evicted_total reported:
	// the estimate can dip (see collectSnapshot), a counter must not.
	evicted uint64

	d metricDescs
}

// metricDescs are the collector's descriptors, one per metric family.
type metricDescs struct {
	packets, bytes, requests, replies, syn, synAck, resets, icmpUnreachable *prometheus.Desc
	noncatalogPackets, noncatalogBytes                                      *prometheus.Desc
	verdict, blockedExchanges, unexpectedOpen                               *prometheus.Desc
	parse, lost, evicted, mapEntries, mapCapacity                           *prometheus.Desc
	drainDuration, snapshotUp, scrapeErrors                                 *prometheus.Desc
	sinkEmitted, sinkDelivered, sinkDropped, sinkRetries                    *prometheus.Desc
	sinkConnected, sinkQueueLength, sinkQueueCapacity                       *prometheus.Desc
	buildInfo, attachInfo                                                   *prometheus.Desc
	exchangeAttempts, exchangeAnswers                                       *prometheus.Desc
}

// Label names.
var (
	serviceLabels  = []string{"service", "proto", "port"}
	exchangeLabels = []string{"service", "proto", "port", "client", "server"}
)

// Values of the reason label of portwatch_icmp_unreachable_total.
const (
	icmpPortUnreachable = "port-unreachable"
	icmpAdminProhibited = "admin-prohibited"
	icmpOther           = "other"
)

// otherPort is the port label under which unexpected ports beyond the top N
// are summed.
const otherPort = "other"

func newMetricDescs() metricDescs {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("portwatch_"+name, help, labels, nil)
	}
	return metricDescs{
		packets: desc("packets_total",
			"Packets seen to or from the service's port (both directions), per catalog row.", serviceLabels...),
		bytes: desc("bytes_total",
			"Bytes of the packets in portwatch_packets_total, link-layer headers included.", serviceLabels...),
		requests: desc("requests_total",
			"Packets sent to the service's port (client to server).", serviceLabels...),
		replies: desc("replies_total",
			"Packets sent back from the service's port (server to client; for TFTP, from the server's new port).", serviceLabels...),
		syn: desc("syn_total",
			"TCP connection attempts (SYN without ACK, retransmits included) to the service's port.", serviceLabels...),
		synAck: desc("syn_ack_total",
			"TCP connection attempts the server accepted (SYN-ACK from the service's port).", serviceLabels...),
		resets: desc("resets_total",
			"TCP resets sent from the service's port: the port is closed or a firewall rejects with a reset.", serviceLabels...),
		icmpUnreachable: desc("icmp_unreachable_total",
			"ICMP destination-unreachable errors answering a request to the service: port-unreachable means "+
				"nothing listens, admin-prohibited means a firewall rejects it, other is any other code (host, network).",
			"service", "proto", "port", "reason"),
		noncatalogPackets: desc("noncatalog_packets_total",
			"TCP and UDP packets on ports in no catalog row (not counted in portwatch_packets_total)."),
		noncatalogBytes: desc("noncatalog_bytes_total",
			"Bytes of the packets in portwatch_noncatalog_packets_total."),
		verdict: desc("verdict",
			"1 while some exchange of the service is blocked, with the strongest reason (reset, "+
				"icmp-admin-prohibited, icmp-port-unreachable, no-reply); 0 for every other catalog row. "+
				"status is required when the active profiles require the row.",
			"service", "proto", "port", "status", "reason"),
		blockedExchanges: desc("blocked_exchanges",
			"Client/server pairs whose exchange with the service is blocked now.", serviceLabels...),
		unexpectedOpen: desc("unexpected_open",
			"Servers seen answering on a port that no catalog row names (while the bounded table remembers them), "+
				"per port; the ports with the most servers are named, the others are summed under port=\"other\".",
			"proto", "port"),
		parse: desc("parse_total",
			"What the packet parser made of the packets, by outcome (packets counts them all; "+
				"a packet can add to several outcomes, such as vlan and fragment_first).",
			"outcome"),
		lost: desc("lost_packets_total",
			"Packets the capture dropped before portwatch saw them (AF_PACKET drops, a damaged capture file); "+
				"always 0 for the XDP and TC hooks."),
		evicted: desc("exchanges_evicted_total",
			"Estimated exchanges pushed out of the bounded exchange table to make room: exchanges created minus "+
				"exchanges held now. When it grows, verdicts can miss blocked exchanges; raise the table size."),
		mapEntries: desc("map_entries",
			"Entries in use in a bounded table of the packet program.", "map"),
		mapCapacity: desc("map_capacity",
			"Entries a bounded table of the packet program can hold.", "map"),
		drainDuration: desc("drain_duration_seconds",
			"How long reading the counters (the kernel maps, or the capture's tables) took in this scrape."),
		snapshotUp: desc("snapshot_up",
			"1 when this scrape could read the counters, 0 when it failed (see portwatch_scrape_errors_total and the log)."),
		scrapeErrors: desc("scrape_errors_total",
			"Scrapes in which reading the counters failed; the other metrics were still served."),
		sinkEmitted: desc("events_emitted_total",
			"Verdict events given to the --output sink.", "sink"),
		sinkDelivered: desc("events_delivered_total",
			"Verdict events written whole to the sink's file or socket (for UDP: handed to the kernel).", "sink"),
		sinkDropped: desc("events_dropped_total",
			"Verdict events the sink discarded: its queue was full (the destination is down or too slow) or it was closing.", "sink"),
		sinkRetries: desc("sink_retries_total",
			"Failed connects or writes after which the sink waited and tried again.", "sink"),
		sinkConnected: desc("sink_connected",
			"1 while the sink holds an open file or connection to its destination.", "sink"),
		sinkQueueLength: desc("sink_queue_length",
			"Verdict events waiting in the sink's queue, the one being written included.", "sink"),
		sinkQueueCapacity: desc("sink_queue_capacity",
			"Verdict events the sink's queue can hold before it drops new ones.", "sink"),
		buildInfo: desc("build_info",
			"Always 1; the labels give portwatch's version and the Go version it was built with.",
			"version", "goversion"),
		attachInfo: desc("attach_info",
			"Always 1 per watched interface: the XDP attach mode (native, generic) or capture, "+
				"and how egress is seen (tcx, clsact, afpacket).",
			"interface", "mode", "egress"),
		exchangeAttempts: desc("exchange_attempts_total",
			"Requests from one client to one server's service (distinct SYNs, UDP requests, DHCP DISCOVER/REQUEST); "+
				"only with --metrics-per-node.", exchangeLabels...),
		exchangeAnswers: desc("exchange_answers_total",
			"Answers from one server's service to one client (SYN-ACKs, UDP replies, DHCP replies); "+
				"only with --metrics-per-node.", exchangeLabels...),
	}
}

// NewCollector returns a collector reading src at each scrape.
//
// With src.PerNode, portwatch_exchange_attempts_total and
// portwatch_exchange_answers_total carry client and server addresses as
// labels: two series per tracked exchange, so up to twice the exchange
// table's capacity (65536 entries by default). A burst of 1000 nodes each
// talking to 10 services of 2 service nodes is 20000 exchanges, 40000
// series, and each evicted or new exchange starts a series. Leave it off
// unless the Prometheus server is sized for it; the verdict events carry
// the same addresses at no cost to Prometheus.
func NewCollector(src MetricsSources) *Collector {
	top := src.TopUnexpected
	switch {
	case top == 0:
		top = DefaultTopUnexpected
	case top < 0:
		top = 0
	}
	return &Collector{
		src:       src,
		top:       top,
		goVersion: runtime.Version(),
		now:       time.Now,
		d:         newMetricDescs(),
	}
}

// Describe sends every descriptor the collector can emit, so that a
// registry can check it.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, desc := range []*prometheus.Desc{
		d.packets, d.bytes, d.requests, d.replies, d.syn, d.synAck, d.resets, d.icmpUnreachable,
		d.noncatalogPackets, d.noncatalogBytes,
		d.verdict, d.blockedExchanges, d.unexpectedOpen,
		d.parse, d.lost, d.evicted, d.mapEntries, d.mapCapacity,
		d.drainDuration, d.snapshotUp, d.scrapeErrors,
		d.sinkEmitted, d.sinkDelivered, d.sinkDropped, d.sinkRetries,
		d.sinkConnected, d.sinkQueueLength, d.sinkQueueCapacity,
		d.buildInfo, d.attachInfo,
	} {
		ch <- desc
	}
	if c.src.PerNode {
		ch <- d.exchangeAttempts
		ch <- d.exchangeAnswers
	}
}

// Collect reads the sources and sends their metrics. A failing Snapshot
// leaves out the metrics that come from it, sets portwatch_snapshot_up to 0
// and counts the failure in portwatch_scrape_errors_total; everything else
// is still sent. It sends no invalid metric: the registry would fail the
// whole scrape for it (promhttp answers 500 by default), and the verdicts
// and sink metrics matter most when something is wrong.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.collectBuild(ch)
	c.collectAttachments(ch)
	c.collectSinks(ch)
	c.collectMaps(ch)
	var cat *catalog.Catalog
	if c.src.Catalog != nil {
		cat = c.src.Catalog()
	}
	c.collectVerdicts(ch, cat)
	c.collectSnapshot(ch, cat)
	ch <- prometheus.MustNewConstMetric(c.d.scrapeErrors, prometheus.CounterValue, float64(c.scrapeErrors))
}

func (c *Collector) collectBuild(ch chan<- prometheus.Metric) {
	version := c.src.Version
	if version == "" {
		version = buildVersion()
	}
	ch <- prometheus.MustNewConstMetric(c.d.buildInfo, prometheus.GaugeValue, 1,
		labelValue(version), c.goVersion)
}

func (c *Collector) collectAttachments(ch chan<- prometheus.Metric) {
	if c.src.Attachments == nil {
		return
	}
	seen := map[Attachment]bool{}
	for _, a := range c.src.Attachments() {
		a = Attachment{Interface: labelValue(a.Interface), Mode: labelValue(a.Mode), Egress: labelValue(a.Egress)}
		if seen[a] {
			continue
		}
		seen[a] = true
		ch <- prometheus.MustNewConstMetric(c.d.attachInfo, prometheus.GaugeValue, 1, a.Interface, a.Mode, a.Egress)
	}
}

func (c *Collector) collectSinks(ch chan<- prometheus.Metric) {
	if c.src.Sinks == nil {
		return
	}
	stats := c.src.Sinks()
	names := sinkLabels(stats)
	for i, s := range stats {
		name := names[i]
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		counter(c.d.sinkEmitted, s.Emitted)
		counter(c.d.sinkDelivered, s.Delivered)
		counter(c.d.sinkDropped, s.Dropped)
		counter(c.d.sinkRetries, s.Retries)
		gauge(c.d.sinkConnected, boolValue(s.Connected))
		gauge(c.d.sinkQueueLength, float64(s.Queued))
		gauge(c.d.sinkQueueCapacity, float64(s.QueueSize))
	}
}

// sinkLabels names each sink by its spec. The same spec given twice makes
// two sinks, which must not make two series with one label set: the later
// ones get " #2", " #3", in the order of the specs.
func sinkLabels(stats []Stats) []string {
	out := make([]string, len(stats))
	count := map[string]int{}
	for i, s := range stats {
		name := labelValue(s.Name)
		count[name]++
		if n := count[name]; n > 1 {
			name += " #" + strconv.Itoa(n)
		}
		out[i] = name
	}
	return out
}

func (c *Collector) collectMaps(ch chan<- prometheus.Metric) {
	if c.src.MapStats == nil {
		return
	}
	seen := map[string]bool{}
	for _, m := range c.src.MapStats() {
		name := labelValue(m.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		if m.EntriesKnown {
			ch <- prometheus.MustNewConstMetric(c.d.mapEntries, prometheus.GaugeValue, float64(m.Entries), name)
		}
		ch <- prometheus.MustNewConstMetric(c.d.mapCapacity, prometheus.GaugeValue, float64(m.Capacity), name)
	}
}

// collectVerdicts reports every catalog row: 1 with its reason while it is
// blocked, 0 otherwise, so that "not blocked" reads differently from "not
// reported". A verdict about a row the catalog lacks is left out.
func (c *Collector) collectVerdicts(ch chan<- prometheus.Metric, cat *catalog.Catalog) {
	if c.src.Verdicts == nil || cat == nil {
		return
	}
	blocked := map[catalog.ServiceID]classify.ServiceVerdict{}
	for _, v := range c.src.Verdicts() {
		if cat.Entry(v.ServiceID) != nil {
			blocked[v.ServiceID] = v
		}
	}
	for _, e := range cat.Entries() {
		name, proto, port := e.Name, e.Proto.String(), e.PortString()
		status := string(cat.Status(e))
		v, isBlocked := blocked[e.ID]
		if isBlocked {
			ch <- prometheus.MustNewConstMetric(c.d.verdict, prometheus.GaugeValue, 1,
				name, proto, port, status, labelValue(string(v.Reason)))
		} else {
			ch <- prometheus.MustNewConstMetric(c.d.verdict, prometheus.GaugeValue, 0,
				name, proto, port, status, "")
		}
		ch <- prometheus.MustNewConstMetric(c.d.blockedExchanges, prometheus.GaugeValue,
			float64(v.Exchanges), name, proto, port)
	}
}

// collectSnapshot reads the counters and reports everything that comes
// from them.
func (c *Collector) collectSnapshot(ch chan<- prometheus.Metric, cat *catalog.Catalog) {
	if c.src.Snapshot == nil {
		return
	}
	start := c.now()
	snap, err := c.src.Snapshot()
	ch <- prometheus.MustNewConstMetric(c.d.drainDuration, prometheus.GaugeValue, c.now().Sub(start).Seconds())
	if err != nil {
		c.scrapeErrors++
		if c.src.SnapshotFailed != nil {
			c.src.SnapshotFailed(err)
		}
		ch <- prometheus.MustNewConstMetric(c.d.snapshotUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.d.snapshotUp, prometheus.GaugeValue, 1)

	if cat != nil {
		c.collectServices(ch, cat, snap.Services)
	}
	c.collectUnexpected(ch, cat, snap.Unexpected)

	for i, v := range snap.Parse {
		if i >= int(bpf.NumParseCounters) {
			break
		}
		ch <- prometheus.MustNewConstMetric(c.d.parse, prometheus.CounterValue, float64(v), bpf.ParseCounterNames[i])
	}
	ch <- prometheus.MustNewConstMetric(c.d.lost, prometheus.CounterValue, float64(snap.Lost))

	// The exchange table only loses entries to eviction (nothing deletes
	// them), so entries created minus entries held is the evictions. It is
	// an estimate: the counters and the table are not read at one instant,
	// so exchanges created between the two reads, or two CPUs inserting
	// one exchange at once (counted twice, held once), make it dip or
	// jump by a few. The collector reports the highest value so far, so
	// that Prometheus never sees the counter go down and take it for a
	// restart.
	if int(bpf.ParseExchangeNew) < len(snap.Parse) {
		created, held := snap.Parse[bpf.ParseExchangeNew], uint64(len(snap.Exchanges))
		if created > held {
			c.evicted = max(c.evicted, created-held)
		}
		ch <- prometheus.MustNewConstMetric(c.d.evicted, prometheus.CounterValue, float64(c.evicted))
	}

	if c.src.PerNode && cat != nil {
		c.collectExchanges(ch, cat, snap.Exchanges)
	}
}

// collectServices reports the per-service counters of every catalog row,
// zero for rows without traffic so that a rate exists from the first packet
// on. Traffic on no catalog row (slot 0), or on a slot the catalog has no
// row for, goes to the two noncatalog counters: a label never comes from
// the snapshot.
func (c *Collector) collectServices(ch chan<- prometheus.Metric, cat *catalog.Catalog, services []bpf.ServiceCounters) {
	for _, e := range cat.Entries() {
		var sc bpf.ServiceCounters
		if int(e.ID) < len(services) {
			sc = services[e.ID]
		}
		labels := []string{e.Name, e.Proto.String(), e.PortString()}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		counter(c.d.packets, sc.Packets)
		counter(c.d.bytes, sc.Bytes)
		counter(c.d.requests, sc.Requests)
		counter(c.d.replies, sc.Replies)
		counter(c.d.syn, sc.SYN)
		counter(c.d.synAck, sc.SYNACK)
		counter(c.d.resets, sc.RST)
		for _, r := range []struct {
			reason string
			v      uint64
		}{
			{icmpPortUnreachable, sc.ICMPClosed},
			{icmpAdminProhibited, sc.ICMPFiltered},
			{icmpOther, sc.ICMPOther},
		} {
			ch <- prometheus.MustNewConstMetric(c.d.icmpUnreachable, prometheus.CounterValue, float64(r.v),
				e.Name, e.Proto.String(), e.PortString(), r.reason)
		}
	}

	var packets, bytes uint64
	for id, sc := range services {
		if id == 0 || cat.Entry(catalog.ServiceID(id)) == nil {
			packets += sc.Packets
			bytes += sc.Bytes
		}
	}
	ch <- prometheus.MustNewConstMetric(c.d.noncatalogPackets, prometheus.CounterValue, float64(packets))
	ch <- prometheus.MustNewConstMetric(c.d.noncatalogBytes, prometheus.CounterValue, float64(bytes))
}

// unexpectedPort is one (proto, port) outside the catalog that answered.
type unexpectedPort struct {
	proto   catalog.Proto
	port    uint16
	servers int
	answers uint64
}

// collectUnexpected reports how many servers answered on each unexpected
// port. Ports are the one label that traffic decides, so only the top N
// (most servers, then most answers) are named and the rest are summed per
// protocol under port="other", which is always reported.
func (c *Collector) collectUnexpected(ch chan<- prometheus.Metric, cat *catalog.Catalog, unexpected map[bpf.UnexpectedKey]bpf.UnexpectedCounters) {
	type portKey struct {
		proto catalog.Proto
		port  uint16
	}
	byPort := map[portKey]*unexpectedPort{}
	for k, u := range unexpected {
		if u.Answers == 0 || (k.Proto != catalog.TCP && k.Proto != catalog.UDP) {
			continue
		}
		// A port learned since (mountd's) is expected now, though the
		// table still holds the answers seen before it was learned.
		if cat != nil && cat.Expected(k.Proto, k.Port) {
			continue
		}
		p := byPort[portKey{k.Proto, k.Port}]
		if p == nil {
			p = &unexpectedPort{proto: k.Proto, port: k.Port}
			byPort[portKey{k.Proto, k.Port}] = p
		}
		p.servers++
		p.answers += u.Answers
	}
	ports := make([]*unexpectedPort, 0, len(byPort))
	for _, p := range byPort {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, func(a, b *unexpectedPort) int {
		return cmp.Or(cmp.Compare(b.servers, a.servers), cmp.Compare(b.answers, a.answers),
			cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
	})
	other := map[catalog.Proto]int{catalog.TCP: 0, catalog.UDP: 0}
	for i, p := range ports {
		if i >= c.top {
			other[p.proto] += p.servers
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.d.unexpectedOpen, prometheus.GaugeValue, float64(p.servers),
			p.proto.String(), strconv.Itoa(int(p.port)))
	}
	for _, proto := range []catalog.Proto{catalog.TCP, catalog.UDP} {
		ch <- prometheus.MustNewConstMetric(c.d.unexpectedOpen, prometheus.GaugeValue, float64(other[proto]),
			proto.String(), otherPort)
	}
}

// collectExchanges reports attempts and answers per exchange. Exchanges of
// a service the catalog lacks are left out. Two keys can render alike (an
// IPv4 address and its IPv4-mapped IPv6 form), so the counts are summed per
// label set first.
func (c *Collector) collectExchanges(ch chan<- prometheus.Metric, cat *catalog.Catalog, exchanges []bpf.ExchangeEntry) {
	type labels struct {
		id             catalog.ServiceID
		client, server string
	}
	type counts struct{ attempts, answers uint64 }
	sums := make(map[labels]counts, len(exchanges))
	for _, e := range exchanges {
		k, x := e.Key, e.Counters
		if cat.Entry(k.Service) == nil {
			continue
		}
		l := labels{id: k.Service, client: exchangeClient(k), server: addrLabel(k.Server)}
		s := sums[l]
		s.attempts += x.Attempts
		s.answers += x.Answers
		sums[l] = s
	}
	for l, s := range sums {
		e := cat.Entry(l.id)
		name, proto, port := e.Name, e.Proto.String(), e.PortString()
		ch <- prometheus.MustNewConstMetric(c.d.exchangeAttempts, prometheus.CounterValue, float64(s.attempts),
			name, proto, port, l.client, l.server)
		ch <- prometheus.MustNewConstMetric(c.d.exchangeAnswers, prometheus.CounterValue, float64(s.answers),
			name, proto, port, l.client, l.server)
	}
}

// exchangeClient is the client label: the address, or for DHCP the
// hardware address, as in the verdict events.
func exchangeClient(k bpf.ExchangeKey) string {
	if k.IsDHCP() {
		return net.HardwareAddr(k.ClientMAC[:]).String()
	}
	return addrLabel(k.Client)
}

// addrLabel renders an address as the verdict events do: IPv4-mapped IPv6
// as plain IPv4, the zero Addr (a DHCP server not known yet) as "".
func addrLabel(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

// labelValue makes a string from outside the catalog (a file path in a
// sink spec, an interface name) a valid label value: Prometheus requires
// UTF-8, and a metric that breaks the rule would fail the whole scrape.
func labelValue(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// NewMetricsRegistry returns a registry holding c and the standard Go
// runtime and process collectors (go_*, process_*).
func NewMetricsRegistry(c *Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, coll := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		c,
	} {
		if err := reg.Register(coll); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// NewMetricsHandler serves reg's metrics for Prometheus to scrape, and
// counts the scrapes themselves in reg (promhttp_metric_handler_*). An
// error while gathering answers 500: the collector reports a failing
// snapshot as metrics rather than as an error, so an error here is a
// duplicate or malformed series, which must not pass unnoticed.
func NewMetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg,
	}))
}
