package bpf_test

import (
	"net/netip"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/bpf/packets"
	"portwatch/catalog"
)

// Service ids of the built-in catalog used below.
const (
	xcatd     catalog.ServiceID = 1
	xcati     catalog.ServiceID = 3
	ssh       catalog.ServiceID = 7
	rsyncTCP  catalog.ServiceID = 9
	bootps    catalog.ServiceID = 13
	tftpUDP   catalog.ServiceID = 18
	wwwTCP    catalog.ServiceID = 19
	sunrpc    catalog.ServiceID = 23
	shell     catalog.ServiceID = 24
	syslogTCP catalog.ServiceID = 25
	syslogUDP catalog.ServiceID = 26
	ipmiUDP   catalog.ServiceID = 40
	snmpUDP   catalog.ServiceID = 42
)

// exchange is the part of an exchange that a case checks: everything but
// the times.
type exchange struct {
	key bpf.ExchangeKey
	bpf.ExchangeCounters
}

type want struct {
	services   map[catalog.ServiceID]bpf.ServiceCounters
	parse      map[bpf.ParseCounter]uint64 // ParsePackets is implied
	exchanges  []exchange
	unexpected []bpf.UnexpectedKey
	learned    int // rpcbind datagrams handed to the learner
}

func ex(service catalog.ServiceID, client, server netip.Addr, c bpf.ExchangeCounters) exchange {
	return exchange{bpf.ExchangeKey{Service: service, Client: client, Server: server}, c}
}

func dhcpEx(c bpf.ExchangeCounters) exchange {
	k := bpf.ExchangeKey{Service: bootps}
	copy(k.ClientMAC[:], packets.NodeMAC)
	return exchange{k, c}
}

func loadCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

var (
	node, mn    = packets.Node, packets.MN
	node6, mn6  = packets.Node6, packets.MN6
	bmc         = netip.MustParseAddr("10.0.2.5")
	nonCatalog  = bpf.ParseNonCatalog
	exchangeNew = bpf.ParseExchangeNew
	wantCases   map[string]want
)

func pc(c bpf.ParseCounter, n uint64) map[bpf.ParseCounter]uint64 {
	return map[bpf.ParseCounter]uint64{c: n}
}

func init() {
	wantCases = map[string]want{
		"tcp-syn": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 1, Requests: 1, SYN: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1})},
		},
		"tcp-syn-retransmit": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 3, Requests: 3, SYN: 3}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 2, Retransmits: 1})},
		},
		"tcp-handshake": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 3, Requests: 2, Replies: 1, SYN: 1, SYNACK: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1, Answers: 1})},
		},
		"tcp-reset": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 2, Requests: 1, Replies: 1, SYN: 1, RST: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1, Resets: 1})},
		},
		"tcp-reset-other-connection": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 4, Requests: 1, Replies: 3, SYN: 1, RST: 3}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1})},
		},
		"tcp-reset-syn-with-data": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 2, Requests: 1, Replies: 1, SYN: 1, RST: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1, Resets: 1})},
		},
		"tcp-reset-of-no-exchange": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 1, Replies: 1, RST: 1}},
		},
		"tcp-reset-from-client": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 1, Requests: 1, RST: 1}},
		},
		"tcp-established-data": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{wwwTCP: {Packets: 2, Requests: 1, Replies: 1}},
		},
		"tcp-ipv6-handshake": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcati: {Packets: 2, Requests: 1, Replies: 1, SYN: 1, SYNACK: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcati, node6, mn6, bpf.ExchangeCounters{Attempts: 1, Answers: 1})},
		},
		"tcp-ssh-rsync-http": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{
				ssh:      {Packets: 2, Requests: 1, Replies: 1, SYN: 1, SYNACK: 1},
				rsyncTCP: {Packets: 2, Requests: 1, Replies: 1, SYN: 1, SYNACK: 1},
				wwwTCP:   {Packets: 2, Requests: 1, Replies: 1, SYN: 1, RST: 1},
			},
			parse: pc(exchangeNew, 3),
			exchanges: []exchange{
				ex(ssh, node, mn, bpf.ExchangeCounters{Attempts: 1, Answers: 1}),
				ex(rsyncTCP, node, mn, bpf.ExchangeCounters{Attempts: 1, Answers: 1}),
				ex(wwwTCP, node, mn, bpf.ExchangeCounters{Attempts: 1, Resets: 1}),
			},
		},
		"rsh-vs-syslog": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{
				shell:     {Packets: 1, Requests: 1, SYN: 1},
				syslogTCP: {Packets: 1, Requests: 1, SYN: 1},
			},
			parse: pc(exchangeNew, 2),
			exchanges: []exchange{
				ex(shell, node, mn, bpf.ExchangeCounters{Attempts: 1}),
				ex(syslogTCP, node, mn, bpf.ExchangeCounters{Attempts: 1}),
			},
		},
		"udp-request-reply": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{ipmiUDP: {Packets: 2, Requests: 1, Replies: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(ipmiUDP, mn, bmc, bpf.ExchangeCounters{Attempts: 1, Answers: 1})},
		},
		"udp-one-way-syslog": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{syslogUDP: {Packets: 2, Requests: 2}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(syslogUDP, node, mn, bpf.ExchangeCounters{Attempts: 2})},
		},
		"tftp-ephemeral": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 3, Requests: 1, Replies: 1}},
			parse:    map[bpf.ParseCounter]uint64{exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{
				ex(tftpUDP, node, mn, bpf.ExchangeCounters{Attempts: 1, Answers: 1, Followups: 1}),
			},
		},
		"tftp-ipv6-no-answer": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 2, Requests: 2}},
			parse:     map[bpf.ParseCounter]uint64{exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{ex(tftpUDP, node6, mn6, bpf.ExchangeCounters{Attempts: 2})},
		},
		// No request was seen: the transfer is traffic on no catalog
		// port, and shows no port open.
		"tftp-orphaned-transfer": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{0: {Packets: 3}},
			parse:    pc(nonCatalog, 3),
		},
		"tftp-answer-refused": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 2, Requests: 1, Replies: 1}},
			parse:     map[bpf.ParseCounter]uint64{exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{ex(tftpUDP, node, mn, bpf.ExchangeCounters{Attempts: 1, Answers: 1, ReturnBlocked: 1})},
		},
		"dhcp-discover-offer": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{bootps: {Packets: 3, Requests: 1, Replies: 2}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{dhcpEx(bpf.ExchangeCounters{Attempts: 1, Answers: 1})},
		},
		"dhcp-relay": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{bootps: {Packets: 2, Requests: 1, Replies: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{dhcpEx(bpf.ExchangeCounters{Attempts: 1, Answers: 1})},
		},
		"dhcp-answer-unreachable": {parse: pc(bpf.ParseICMPUnmatched, 1)},
		"dhcp-truncated": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{bootps: {Packets: 1, Requests: 1}},
			parse:    pc(bpf.ParseTruncDHCP, 1),
		},
		"dhcp-pair-prefix": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{bootps: {Packets: 2, Requests: 2}},
			parse:     map[bpf.ParseCounter]uint64{exchangeNew: 1, bpf.ParseTruncDHCP: 1},
			exchanges: []exchange{dhcpEx(bpf.ExchangeCounters{Attempts: 1})},
		},
		"icmp-port-unreachable": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{snmpUDP: {Packets: 1, Requests: 1, ICMPClosed: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(snmpUDP, node, mn, bpf.ExchangeCounters{Attempts: 1, ICMPClosed: 1})},
		},
		"icmp-admin-prohibited": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcati: {Packets: 1, Requests: 1, SYN: 1, ICMPFiltered: 3}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcati, node, mn, bpf.ExchangeCounters{Attempts: 1, ICMPFiltered: 3})},
		},
		"icmp-host-unreachable": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcati: {Packets: 1, Requests: 1, SYN: 1, ICMPOther: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcati, node, mn, bpf.ExchangeCounters{Attempts: 1, ICMPOther: 1})},
		},
		"icmp-quoting-answer": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 1, Replies: 1, SYNACK: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Answers: 1, ReturnBlocked: 1})},
		},
		"icmp-unmatched": {
			parse: pc(bpf.ParseICMPUnmatched, 1),
		},
		"icmp6-port-unreachable": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 1, Requests: 1, ICMPClosed: 1}},
			parse:     map[bpf.ParseCounter]uint64{exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{ex(tftpUDP, node6, mn6, bpf.ExchangeCounters{Attempts: 1, ICMPClosed: 1})},
		},
		"icmp6-admin-prohibited": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcati: {Packets: 1, Requests: 1, SYN: 1, ICMPFiltered: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcati, node6, mn6, bpf.ExchangeCounters{Attempts: 1, ICMPFiltered: 1})},
		},
		"icmp6-other": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcati: {Packets: 1, Requests: 1, SYN: 1, ICMPOther: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(xcati, node6, mn6, bpf.ExchangeCounters{Attempts: 1, ICMPOther: 1})},
		},
		"icmp-echo": {parse: pc(bpf.ParseICMPNotUnreachable, 1)},
		"vlan": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 1, Requests: 1, SYN: 1}},
			parse:     map[bpf.ParseCounter]uint64{bpf.ParseVLAN: 1, exchangeNew: 1},
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1})},
		},
		"qinq": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 1, Requests: 1, SYN: 1}},
			parse:     map[bpf.ParseCounter]uint64{bpf.ParseQinQ: 1, exchangeNew: 1},
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 1})},
		},
		"vlan-too-deep": {parse: map[bpf.ParseCounter]uint64{bpf.ParseQinQ: 1, bpf.ParseVLANTooDeep: 1}},
		"ipv4-options": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{xcatd: {Packets: 2, Requests: 2, SYN: 2}},
			parse:     map[bpf.ParseCounter]uint64{bpf.ParseIPv4Options: 2, exchangeNew: 1},
			exchanges: []exchange{ex(xcatd, node, mn, bpf.ExchangeCounters{Attempts: 2})},
		},
		"ipv4-fragments": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 1, Requests: 1}},
			parse:     map[bpf.ParseCounter]uint64{bpf.ParseFragFirst: 1, bpf.ParseFragLater: 1, exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{ex(tftpUDP, node, mn, bpf.ExchangeCounters{Attempts: 1})},
		},
		"ipv6-fragments": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 1, Requests: 1}},
			parse:     map[bpf.ParseCounter]uint64{bpf.ParseFragFirst: 1, bpf.ParseFragLater: 1, bpf.ParseIPv6ExtHeaders: 2, exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{ex(tftpUDP, node6, mn6, bpf.ExchangeCounters{Attempts: 1})},
		},
		"ipv6-ext-chain": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{tftpUDP: {Packets: 1, Requests: 1}},
			parse:     map[bpf.ParseCounter]uint64{bpf.ParseFragFirst: 1, bpf.ParseIPv6ExtHeaders: 1, exchangeNew: 1, bpf.ParseEphemeralNew: 1},
			exchanges: []exchange{ex(tftpUDP, node6, mn6, bpf.ExchangeCounters{Attempts: 1})},
		},
		"ipv6-ext-too-deep": {parse: map[bpf.ParseCounter]uint64{bpf.ParseIPv6ExtHeaders: 1, bpf.ParseIPv6ExtTooDeep: 1}},
		"non-catalog-tcp-answer": {
			services:   map[catalog.ServiceID]bpf.ServiceCounters{0: {Packets: 2, SYN: 1, SYNACK: 1}},
			parse:      map[bpf.ParseCounter]uint64{nonCatalog: 2, bpf.ParseUnexpectedNew: 1},
			unexpected: []bpf.UnexpectedKey{{Proto: catalog.TCP, Server: mn, Port: 8080}},
		},
		"non-catalog-udp-answer": {
			services:   map[catalog.ServiceID]bpf.ServiceCounters{0: {Packets: 2}},
			parse:      map[bpf.ParseCounter]uint64{nonCatalog: 2, bpf.ParseFlowNew: 1, bpf.ParseUnexpectedNew: 1},
			unexpected: []bpf.UnexpectedKey{{Proto: catalog.UDP, Server: mn, Port: 5353}},
		},
		"non-catalog-udp-both-ways": {
			services:   map[catalog.ServiceID]bpf.ServiceCounters{0: {Packets: 4}},
			parse:      map[bpf.ParseCounter]uint64{nonCatalog: 4, bpf.ParseFlowNew: 1, bpf.ParseUnexpectedNew: 1},
			unexpected: []bpf.UnexpectedKey{{Proto: catalog.UDP, Server: node, Port: 40000}},
		},
		"non-catalog-udp-to-itself": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{0: {Packets: 4}},
			parse:    map[bpf.ParseCounter]uint64{nonCatalog: 4, bpf.ParseFlowNew: 2, bpf.ParseUnexpectedNew: 2},
			unexpected: []bpf.UnexpectedKey{
				{Proto: catalog.UDP, Server: node, Port: 7001}, {Proto: catalog.UDP, Server: node, Port: 7002},
			},
		},
		"non-catalog-closed": {
			services: map[catalog.ServiceID]bpf.ServiceCounters{0: {Packets: 2, SYN: 1, RST: 1}},
			parse:    map[bpf.ParseCounter]uint64{nonCatalog: 2},
		},
		"rpcbind-getport": {
			services:  map[catalog.ServiceID]bpf.ServiceCounters{sunrpc: {Packets: 2, Requests: 1, Replies: 1}},
			parse:     pc(exchangeNew, 1),
			exchanges: []exchange{ex(sunrpc, node, mn, bpf.ExchangeCounters{Attempts: 1, Answers: 1})},
			learned:   2,
		},
		"not-ip":               {parse: map[bpf.ParseCounter]uint64{bpf.ParseNonIP: 1, bpf.ParseOtherL4: 1}},
		"runt":                 {parse: pc(bpf.ParseTruncEthernet, 2)},
		"truncated-vlan":       {parse: pc(bpf.ParseTruncVLAN, 1)},
		"truncated-ipv4":       {parse: map[bpf.ParseCounter]uint64{bpf.ParseTruncIPv4: 2, bpf.ParseIPv4Options: 1}},
		"truncated-ipv6":       {parse: pc(bpf.ParseTruncIPv6, 1)},
		"truncated-ipv6-ext":   {parse: pc(bpf.ParseTruncIPv6Ext, 1)},
		"truncated-tcp":        {parse: pc(bpf.ParseTruncTCP, 1)},
		"truncated-udp":        {parse: pc(bpf.ParseTruncUDP, 1)},
		"truncated-icmp":       {parse: pc(bpf.ParseTruncICMP, 1)},
		"truncated-icmp-inner": {parse: pc(bpf.ParseTruncICMPInner, 2)},
		"bad-ihl":              {parse: pc(bpf.ParseBadIPv4Header, 2)},
		"bad-tcp-data-offset":  {parse: pc(bpf.ParseBadTCPHeader, 1)},
		"bad-udp-length":       {parse: pc(bpf.ParseBadUDPLength, 1)},
	}
}

// TestTwinCorpus runs every case of the shared corpus through a fresh twin
// and checks every counter: services, parse outcomes, exchanges, unexpected
// ports. The kernel program must give the same (the differential test).
func TestTwinCorpus(t *testing.T) {
	cat := loadCatalog(t)
	seen := map[string]bool{}
	for _, c := range packets.Corpus() {
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			w, ok := wantCases[c.Name]
			if !ok {
				t.Fatalf("no expectation for corpus case %q", c.Name)
			}
			twin := bpf.NewTwin(cat, bpf.DefaultTwinConfig)
			learned := 0
			twin.OnLearn(func(_, _ netip.Addr, _, _ uint16, _ []byte) { learned++ })
			ts := time.Unix(1700000000, 0)
			for i, f := range c.Frames {
				twin.Ethernet(f, len(f), ts.Add(time.Duration(i)*time.Millisecond))
			}
			checkSnapshot(t, twin.Snapshot(), w, c.Frames)
			if learned != w.learned {
				t.Errorf("learner got %d datagrams, want %d", learned, w.learned)
			}
		})
	}
	for name := range wantCases {
		if !seen[name] {
			t.Errorf("expectation %q has no corpus case", name)
		}
	}
}

func checkSnapshot(t *testing.T, s bpf.Snapshot, w want, frames [][]byte) {
	t.Helper()
	var packets, bytes uint64
	for id := range s.Services {
		got := s.Services[id]
		packets += got.Packets
		bytes += got.Bytes
		got.Bytes = 0
		if got != w.services[catalog.ServiceID(id)] {
			t.Errorf("service %d: got %+v, want %+v", id, got, w.services[catalog.ServiceID(id)])
		}
	}
	// Each counted packet adds its length to one service.
	if packets == uint64(len(frames)) {
		var sum uint64
		for _, f := range frames {
			sum += uint64(len(f))
		}
		if bytes != sum {
			t.Errorf("services count %d bytes, the frames have %d", bytes, sum)
		}
	}
	for c := bpf.ParseCounter(0); c < bpf.NumParseCounters; c++ {
		want := w.parse[c]
		if c == bpf.ParsePackets {
			want = uint64(len(frames))
		}
		if s.Parse[c] != want {
			t.Errorf("parse counter %s: got %d, want %d", c, s.Parse[c], want)
		}
	}
	if len(s.Exchanges) != len(w.exchanges) {
		t.Errorf("got %d exchanges, want %d: %+v", len(s.Exchanges), len(w.exchanges), s.Exchanges)
	}
	exchanges := s.ExchangeMap()
	for _, e := range w.exchanges {
		got, ok := exchanges[e.key]
		if !ok {
			t.Errorf("missing exchange %+v", e.key)
			continue
		}
		got.FirstSeen, got.LastSeen = time.Time{}, time.Time{}
		if got != e.ExchangeCounters {
			t.Errorf("exchange %+v: got %+v, want %+v", e.key, got, e.ExchangeCounters)
		}
	}
	if len(s.Unexpected) != len(w.unexpected) {
		t.Errorf("got %d unexpected ports, want %d: %+v", len(s.Unexpected), len(w.unexpected), s.Unexpected)
	}
	for _, k := range w.unexpected {
		if u, ok := s.Unexpected[k]; !ok || u.Answers == 0 {
			t.Errorf("unexpected port %+v: got %+v", k, u)
		}
	}
}
