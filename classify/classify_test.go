package classify

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"portwatch/bpf"
	"portwatch/catalog"
)

const (
	node1 = "10.0.1.11"
	node2 = "10.0.1.12"
	mn    = "10.0.0.1"
	mac1  = "aa:bb:cc:00:00:01"
)

// TestVerdicts runs hand-built windows through a classifier and compares
// each window's events, then lines of the summary.
func TestVerdicts(t *testing.T) {
	tests := []struct {
		name     string
		profiles []string // default: the catalog's defaults (linux, ipmi)
		mgmtNets []string
		windows  []win
		// want holds each window's events, rendered by short.
		want [][]string
		// summary maps a row to its summary line (shortSummary); "" means
		// the row is not in the summary.
		summary map[string]string
	}{
		{
			name: "no reply: 3 attempts over 6s",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3}}},
			},
			want:    [][]string{{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp blocked no-reply [10.0.1.11->10.0.0.1] +0"},
		},
		{
			name: "MinAttempts-1 unanswered attempts are not enough",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 9, attempts: 2}}},
				{at: 20, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 9, attempts: 2}}},
			},
			want:    [][]string{{}, {}},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp unconfirmed"},
		},
		{
			name: "span just under MinSpan",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 3.999, attempts: 5}}},
			},
			want: [][]string{{}},
		},
		{
			name: "span exactly MinSpan",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 4, attempts: 3}}},
			},
			want: [][]string{{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}},
		},
		{
			name: "span just over MinSpan",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 4.001, attempts: 3}}},
			},
			want: [][]string{{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}},
		},
		{
			name: "SYN retransmits are one attempt",
			windows: []win{
				{at: 10, ex: []xc{{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 8, attempts: 1, retransmits: 3}}},
				{at: 40, ex: []xc{{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 32, attempts: 1, retransmits: 5}}},
			},
			want: [][]string{{}, {}},
		},
		{
			name: "slow retries add up across windows",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 9, last: 9, attempts: 1}}},
				{at: 20, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 9, last: 15, attempts: 2}}},
				{at: 30, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 9, last: 21, attempts: 3}}},
			},
			want: [][]string{{}, {}, {"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}},
		},
		{
			// Three parallel attempts at the end of a window, answered just
			// after the boundary: the estimate of the first attempt's time
			// (LastSeen, not the previous snapshot) keeps them from looking
			// like retries spread over the window.
			name: "parallel attempts at a window boundary are not retries",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 1.1, attempts: 1, answers: 1}}},
				{at: 20, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 19.9, attempts: 4, answers: 1}}},
				{at: 30, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 20.1, attempts: 4, answers: 4}}},
			},
			want: [][]string{{}, {}, {}},
		},
		{
			name: "each reason, and the preference between them",
			windows: []win{
				{at: 10, ex: []xc{
					{svc: "xcatdport/tcp", client: node1, server: mn, first: 1, last: 1, attempts: 1, filtered: 1},
					{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 1, attempts: 1, closed: 1},
					{svc: "rsync/tcp", client: node1, server: mn, first: 1, last: 1, attempts: 1, resets: 1},
					{svc: "conserver/tcp", client: node1, server: mn, first: 1, last: 5, attempts: 1, resets: 1, closed: 1, filtered: 1},
					{svc: "ssh-tcp/tcp", client: node1, server: mn, first: 1, last: 5, attempts: 2, resets: 2, closed: 1},
					{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 9, attempts: 4, resets: 1},
				}},
			},
			want: [][]string{{
				"required_port_blocked xcatdport/tcp 10.0.1.11->10.0.0.1 icmp-admin-prohibited",
				"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 icmp-port-unreachable",
				"required_port_blocked ssh-tcp/tcp 10.0.1.11->10.0.0.1 icmp-port-unreachable",
				"required_port_blocked rsync/tcp 10.0.1.11->10.0.0.1 reset",
				"required_port_blocked www-tcp/tcp 10.0.1.11->10.0.0.1 reset",
				"required_port_blocked conserver/tcp 10.0.1.11->10.0.0.1 icmp-admin-prohibited",
			}},
		},
		{
			name: "an ICMP error in a window that also answers is no block",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/udp", client: node1, server: mn, first: 1, last: 5, attempts: 3, answers: 2, closed: 1}}},
			},
			want:    [][]string{{}},
			summary: map[string]string{"xcatiport/udp": "xcatiport/udp ok"},
		},
		{
			name: "a reset that answers no attempt closes a connection",
			windows: []win{
				{at: 10, ex: []xc{{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 2, attempts: 1, answers: 1}}},
				{at: 20, ex: []xc{{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 15, attempts: 1, answers: 1, resets: 1}}},
			},
			want:    [][]string{{}, {}},
			summary: map[string]string{"www-tcp/tcp": "www-tcp/tcp ok"},
		},
		{
			name: "cleared when answered again, once",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3}}},
				{at: 20, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 17, attempts: 5}}},
				{at: 30, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 21, attempts: 6, answers: 1}}},
				{at: 40, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 31, attempts: 7, answers: 2}}},
			},
			want: [][]string{
				{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"},
				{},
				{"cleared xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"},
				{},
			},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp ok"},
		},
		{
			name: "a stronger reason while blocked is no new event",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3}}},
				{at: 20, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 17, attempts: 4, filtered: 1}}},
			},
			want:    [][]string{{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}, {}},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp blocked icmp-admin-prohibited [10.0.1.11->10.0.0.1] +0"},
		},
		{
			name: "one-way service: silence is no verdict",
			windows: []win{
				{at: 10, ex: []xc{{svc: "rsyslogd/udp", client: node1, server: mn, first: 1, last: 9, attempts: 40}}},
				{at: 20, ex: []xc{{svc: "rsyslogd/udp", client: node1, server: mn, first: 1, last: 19, attempts: 80}}},
			},
			want:    [][]string{{}, {}},
			summary: map[string]string{"rsyslogd/udp": "rsyslogd/udp ok"},
		},
		{
			name: "one-way service: ICMP blocks, quiet requests clear",
			windows: []win{
				{at: 10, ex: []xc{{svc: "rsyslogd/udp", client: node1, server: mn, first: 1, last: 9, attempts: 40, closed: 9}}},
				{at: 20, ex: []xc{{svc: "rsyslogd/udp", client: node1, server: mn, first: 1, last: 19, attempts: 80, closed: 18}}},
				// Two quiet requests: not enough to clear.
				{at: 30, ex: []xc{{svc: "rsyslogd/udp", client: node1, server: mn, first: 1, last: 25, attempts: 82, closed: 18}}},
				{at: 40, ex: []xc{{svc: "rsyslogd/udp", client: node1, server: mn, first: 1, last: 39, attempts: 90, closed: 18}}},
			},
			want: [][]string{
				{"required_port_blocked rsyslogd/udp 10.0.1.11->10.0.0.1 icmp-port-unreachable"},
				{},
				{},
				{"cleared rsyslogd/udp 10.0.1.11->10.0.0.1 icmp-port-unreachable"},
			},
		},
		{
			name: "a row never on the wire never alarms",
			windows: []win{
				{at: 10, ex: []xc{{svc: "www-udp/udp", client: node1, server: mn, first: 1, last: 9, attempts: 5}}},
			},
			want:    [][]string{{}},
			summary: map[string]string{"www-udp/udp": "www-udp/udp never-on-wire", "ssh-udp/udp": "ssh-udp/udp never-on-wire"},
		},
		{
			name: "optional, obsolete and not-in-profile rows: no event, summary says blocked",
			windows: []win{
				{at: 10, ex: []xc{
					{svc: "domain-udp/udp", client: node1, server: mn, first: 1, last: 9, attempts: 5},
					{svc: "kerberos/udp", client: node1, server: mn, first: 1, last: 1, attempts: 1, closed: 1},
					{svc: "nfsd-tcp/tcp", client: node1, server: mn, first: 1, last: 1, attempts: 1, resets: 1},
				}},
			},
			want: [][]string{{}},
			summary: map[string]string{
				"domain-udp/udp": "domain-udp/udp blocked no-reply [10.0.1.11->10.0.0.1] +0",
				"kerberos/udp":   "kerberos/udp blocked icmp-port-unreachable [10.0.1.11->10.0.0.1] +0",
				"nfsd-tcp/tcp":   "nfsd-tcp/tcp blocked reset [10.0.1.11->10.0.0.1] +0",
				"nfsd-udp/udp":   "", // not required, no traffic
				"ipmi/udp":       "ipmi/udp not-seen",
			},
		},
		{
			name:     "the same row required by an active profile alarms",
			profiles: []string{"linux", "statelite"},
			windows: []win{
				{at: 10, ex: []xc{{svc: "nfsd-tcp/tcp", client: node1, server: mn, first: 1, last: 1, attempts: 1, resets: 1}}},
			},
			want: [][]string{{"required_port_blocked nfsd-tcp/tcp 10.0.1.11->10.0.0.1 reset"}},
		},
		{
			name:     "servers outside the management network do not count",
			mgmtNets: []string{"10.0.0.0/24"},
			windows: []win{
				{at: 10,
					ex: []xc{
						{svc: "xcatiport/tcp", client: node1, server: "192.168.7.1", first: 1, last: 7, attempts: 3},
						{svc: "xcatdport/tcp", client: node1, server: "192.168.7.1", first: 1, last: 1, attempts: 1, filtered: 1},
						{svc: "bootps/udp", client: mac1, first: 1, last: 9, attempts: 3},
					},
					unexpected: []uc{
						{proto: catalog.TCP, server: "192.168.7.1", port: 8080, client: node1, first: 2, last: 2, answers: 1},
						{proto: catalog.TCP, server: "10.0.0.9", port: 8080, client: node1, first: 2, last: 2, answers: 1},
					}},
			},
			want: [][]string{{
				"required_port_blocked bootps/udp aa:bb:cc:00:00:01-> no-reply",
				"unexpected_port_open tcp/8080 10.0.0.9",
			}},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp unconfirmed"},
		},
		{
			name: "eviction is quiet; a blocked exchange that comes back answered clears",
			windows: []win{
				{at: 10, ex: []xc{
					{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3},
					{svc: "xcatiport/tcp", client: node2, server: mn, first: 1, last: 2, attempts: 1, answers: 1},
				}},
				{at: 20},
				{at: 30, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 25, last: 25, attempts: 1, answers: 1}}},
			},
			want: [][]string{
				{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"},
				{},
				{"cleared xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"},
			},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp ok"},
		},
		{
			name: "an evicted blocked exchange stays in the summary",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3}}},
				{at: 20},
			},
			want:    [][]string{{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}, {}},
			summary: map[string]string{"xcatiport/tcp": "xcatiport/tcp blocked no-reply [10.0.1.11->10.0.0.1] +0"},
		},
		{
			// Counters that go down mean evicted and created again: the
			// current counters are the window's delta (3 new attempts),
			// not a huge difference of unsigned numbers.
			name: "re-created exchange: its counters are the delta",
			windows: []win{
				{at: 10, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 2, attempts: 5, answers: 5}}},
				{at: 20, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 12, last: 14, attempts: 2}}},
				{at: 30, ex: []xc{{svc: "xcatiport/tcp", client: node1, server: mn, first: 12, last: 16, attempts: 3}}},
			},
			want: [][]string{{}, {}, {"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}},
		},
		{
			name: "TFTP: answers never followed up while the client retries",
			windows: []win{
				{at: 10, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 7, attempts: 4, answers: 4}}},
			},
			want:    [][]string{{"required_port_blocked tftp-udp/udp 10.0.1.11->10.0.0.1 no-reply return-path"}},
			summary: map[string]string{"tftp-udp/udp": "tftp-udp/udp blocked no-reply [10.0.1.11->10.0.0.1] +0"},
		},
		{
			name: "TFTP: an ERROR answer is not followed up and not retried",
			windows: []win{
				{at: 10, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 1, attempts: 1, answers: 1}}},
				{at: 20, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 1, attempts: 1, answers: 1}}},
			},
			want: [][]string{{}, {}},
		},
		{
			name: "TFTP: a transfer that is followed up is fine",
			windows: []win{
				{at: 10, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 9, attempts: 3, answers: 900, followups: 898}}},
			},
			want:    [][]string{{}},
			summary: map[string]string{"tftp-udp/udp": "tftp-udp/udp ok"},
		},
		{
			name: "TFTP: no answer at all",
			windows: []win{
				{at: 10, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 7, attempts: 4}}},
			},
			want: [][]string{{"required_port_blocked tftp-udp/udp 10.0.1.11->10.0.0.1 no-reply"}},
		},
		{
			name: "TFTP: an ICMP error quoting the answer",
			windows: []win{
				{at: 10, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 1, attempts: 1, answers: 1, returnBlocked: 1}}},
			},
			want: [][]string{{"required_port_blocked tftp-udp/udp 10.0.1.11->10.0.0.1 no-reply return-path"}},
		},
		{
			name:     "DHCP by hardware address, in scope without a server",
			mgmtNets: []string{"10.0.0.0/24"},
			windows: []win{
				{at: 10, ex: []xc{
					{svc: "bootps/udp", client: mac1, first: 1, last: 9, attempts: 3},
					{svc: "bootps/udp", client: "aa:bb:cc:00:00:02", first: 1, last: 9, attempts: 2, answers: 2},
				}},
				{at: 20, ex: []xc{
					{svc: "bootps/udp", client: mac1, first: 1, last: 13, attempts: 4, answers: 1},
					{svc: "bootps/udp", client: "aa:bb:cc:00:00:02", first: 1, last: 9, attempts: 2, answers: 2},
				}},
			},
			want: [][]string{
				{"required_port_blocked bootps/udp aa:bb:cc:00:00:01-> no-reply"},
				{"cleared bootps/udp aa:bb:cc:00:00:01-> no-reply"},
			},
			summary: map[string]string{"bootps/udp": "bootps/udp ok", "bootpc/udp": "bootpc/udp ok"},
		},
		{
			name: "unexpected port: once per protocol, server and port",
			windows: []win{
				{at: 10, unexpected: []uc{{proto: catalog.UDP, server: mn, port: 5353, client: node1, first: 3, last: 3, answers: 1}}},
				{at: 20, unexpected: []uc{{proto: catalog.UDP, server: mn, port: 5353, client: node2, first: 3, last: 13, answers: 4}}},
			},
			want: [][]string{{"unexpected_port_open udp/5353 10.0.0.1"}, {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := mustCatalog(t, tt.profiles...)
			var nets []netip.Prefix
			for _, n := range tt.mgmtNets {
				nets = append(nets, netip.MustParsePrefix(n))
			}
			c := newClassifier(t, Config{Catalog: cat, MgmtNets: nets})
			if len(tt.want) != len(tt.windows) {
				t.Fatalf("test has %d windows and %d wants", len(tt.windows), len(tt.want))
			}
			for i, w := range tt.windows {
				got := shorts(c.Update(snapshot(t, cat, w)))
				if !slices.Equal(got, tt.want[i]) {
					t.Errorf("window %d (at %gs):\n got  %q\n want %q", i, w.at, got, tt.want[i])
				}
			}
			sum := c.Summary()
			for key, want := range tt.summary {
				if got := summaryLine(sum, key); got != want {
					t.Errorf("summary of %s:\n got  %q\n want %q", key, got, want)
				}
			}
		})
	}
}

// TestEventEvidence checks every evidence field of a blocked event and of
// its cleared event, over an exchange that was evicted and created again.
func TestEventEvidence(t *testing.T) {
	cat := mustCatalog(t)
	obs := Observer{Host: "mn1", Interface: "eth1", Backend: "xdp", Mode: "native"}
	c := newClassifier(t, Config{Catalog: cat, Observer: obs})
	run := []win{
		{at: 10, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 2, attempts: 2, answers: 30, followups: 29}}},
		// Created again: 4 requests from 12s to 18s, never answered.
		{at: 20, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 12, last: 18, attempts: 4, closed: 0}}},
		{at: 30, ex: []xc{{svc: "tftp-udp/udp", client: node1, server: mn, first: 12, last: 22, attempts: 5, answers: 1, followups: 1}}},
	}
	var events []Event
	for _, w := range run {
		events = append(events, c.Update(snapshot(t, cat, w))...)
	}
	if len(events) != 2 {
		t.Fatalf("got %d events, want blocked and cleared: %q", len(events), shorts(events))
	}
	blocked := events[0]
	want := Event{
		Time:      at(20),
		Verdict:   RequiredPortBlocked,
		Service:   "tftp-udp",
		ServiceID: uint16(mustEntry(t, cat, "tftp-udp/udp").ID),
		Proto:     "udp",
		Port:      69,
		Reason:    ReasonNoReply,
		Required:  true,
		Client:    node1,
		Server:    mn,
		Attempts:  6,
		Answers:   30,
		FirstSeen: at(1),
		LastSeen:  at(18),
		Observer:  obs,
		Message:   "tftp-udp (udp/69) from 10.0.1.11 to 10.0.0.1: 4 requests over 6s, no reply",
	}
	if blocked != want {
		t.Errorf("blocked event:\n got  %+v\n want %+v", blocked, want)
	}
	cleared := events[1]
	if cleared.Verdict != Cleared || cleared.Attempts != 7 || cleared.Answers != 31 ||
		!cleared.LastSeen.Equal(at(22)) || cleared.Reason != ReasonNoReply || cleared.Observer != obs {
		t.Errorf("cleared event: %+v", cleared)
	}
	if cleared.Message != "tftp-udp (udp/69) from 10.0.1.11 to 10.0.0.1: answered again after it was blocked (no-reply)" {
		t.Errorf("cleared message: %q", cleared.Message)
	}
}

// TestMessages pins the sentence of each kind of event.
func TestMessages(t *testing.T) {
	tests := []struct {
		name string
		x    xc
		want string
	}{
		{"no reply tcp", xc{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 8.04, attempts: 3},
			"xcatiport (tcp/3002) from 10.0.1.11 to 10.0.0.1: 3 connection attempts over 7s, no reply"},
		{"admin prohibited", xc{svc: "xcatiport/udp", client: node1, server: mn, first: 1, last: 2, attempts: 2, filtered: 2},
			"xcatiport (udp/3002) from 10.0.1.11 to 10.0.0.1: refused by a firewall (2 ICMP administratively prohibited errors), no answer"},
		{"port unreachable", xc{svc: "xcatiport/udp", client: node1, server: mn, first: 1, last: 2, attempts: 1, closed: 1},
			"xcatiport (udp/3002) from 10.0.1.11 to 10.0.0.1: nothing listens on the port (1 ICMP port unreachable), no answer"},
		{"reset", xc{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 2, attempts: 1, resets: 1},
			"www-tcp (tcp/80) from 10.0.1.11 to 10.0.0.1: connection refused (1 TCP reset), no answer"},
		{"return path", xc{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 6.5, attempts: 5, answers: 9},
			"tftp-udp (udp/69) from 10.0.1.11 to 10.0.0.1: the server answered 5 requests over 5.5s, but the client never followed up: the answers never reach it (typical of a stateful firewall without a TFTP helper)"},
		{"return path by ICMP", xc{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 2, attempts: 1, answers: 2, returnBlocked: 2},
			"tftp-udp (udp/69) from 10.0.1.11 to 10.0.0.1: the server answered, but 2 ICMP errors quoting its answers show them refused on their way back to the client"},
		{"dhcp", xc{svc: "bootps/udp", client: mac1, first: 1, last: 9, attempts: 3},
			"bootps (udp/67) from aa:bb:cc:00:00:01 to any DHCP server: 3 requests over 8s, no reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := mustCatalog(t)
			c := newClassifier(t, Config{Catalog: cat})
			evs := c.Update(snapshot(t, cat, win{at: 10, ex: []xc{tt.x}}))
			if len(evs) != 1 {
				t.Fatalf("got %q, want one event", shorts(evs))
			}
			if evs[0].Message != tt.want {
				t.Errorf("message:\n got  %q\n want %q", evs[0].Message, tt.want)
			}
		})
	}
}

// TestSetCatalog keeps state across a catalog change and announces the
// blocks of rows that become required.
func TestSetCatalog(t *testing.T) {
	linux := mustCatalog(t, "linux")
	c := newClassifier(t, Config{Catalog: linux})
	w := win{at: 10, ex: []xc{
		{svc: "nfsd-tcp/tcp", client: node1, server: mn, first: 1, last: 1, attempts: 1, resets: 1},
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3},
	}}
	if got := shorts(c.Update(snapshot(t, linux, w))); !slices.Equal(got, []string{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}) {
		t.Fatalf("first window: %q", got)
	}

	statelite := mustCatalog(t, "linux", "statelite")
	learned, err := statelite.WithLearnedPort("mount-udp/udp", 20048)
	if err != nil {
		t.Fatal(err)
	}
	c.SetCatalog(learned)
	w.at = 20
	got := shorts(c.Update(snapshot(t, learned, w)))
	want := []string{"required_port_blocked nfsd-tcp/tcp 10.0.1.11->10.0.0.1 reset"}
	if !slices.Equal(got, want) {
		t.Errorf("after the catalog change:\n got  %q\n want %q", got, want)
	}
	w.at = 30
	if got := shorts(c.Update(snapshot(t, learned, w))); len(got) != 0 {
		t.Errorf("blocks announced twice: %q", got)
	}

	// The learned port shows in a mount-udp block.
	w = win{at: 40, ex: []xc{{svc: "mount-udp/udp", client: node1, server: mn, first: 31, last: 31, attempts: 1, closed: 1}}}
	evs := c.Update(snapshot(t, learned, w))
	if len(evs) != 1 || evs[0].Port != 20048 || !strings.Contains(evs[0].Message, "(udp/20048)") {
		t.Errorf("mount-udp block with a learned port: %+v", evs)
	}
}

// TestBlocked is the per-service view for a gauge.
func TestBlocked(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	c.Update(snapshot(t, cat, win{at: 10, ex: []xc{
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 7, attempts: 3},
		{svc: "xcatiport/tcp", client: node2, server: mn, first: 1, last: 1, attempts: 1, filtered: 1},
		{svc: "domain-udp/udp", client: node2, server: mn, first: 1, last: 9, attempts: 4},
		{svc: "www-tcp/tcp", client: node2, server: mn, first: 1, last: 9, attempts: 4, answers: 4},
	}}))
	got := c.Blocked()
	want := []ServiceVerdict{
		{ServiceID: mustEntry(t, cat, "xcatiport/tcp").ID, Service: "xcatiport", Proto: "tcp", Port: "3002",
			Required: true, Status: "required", Reason: ReasonICMPAdminProhibited, Exchanges: 2},
		{ServiceID: mustEntry(t, cat, "domain-udp/udp").ID, Service: "domain-udp", Proto: "udp", Port: "53",
			Required: false, Status: "optional", Reason: ReasonNoReply, Exchanges: 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Blocked:\n got  %+v\n want %+v", got, want)
	}
	c.Update(snapshot(t, cat, win{at: 20, ex: []xc{
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: 17, attempts: 4, answers: 1},
		{svc: "xcatiport/tcp", client: node2, server: mn, first: 1, last: 17, attempts: 2, answers: 1, filtered: 1},
		{svc: "domain-udp/udp", client: node2, server: mn, first: 1, last: 19, attempts: 5, answers: 1},
	}}))
	if got := c.Blocked(); len(got) != 0 {
		t.Errorf("Blocked after every exchange was answered: %+v", got)
	}
}

// TestSummaryShape checks what the summary lists besides service states.
func TestSummaryShape(t *testing.T) {
	cat := mustCatalog(t)
	obs := Observer{Host: "mn1", Backend: "pcap", Mode: "file"}
	c := newClassifier(t, Config{Catalog: cat, Observer: obs})
	c.Update(snapshot(t, cat, win{at: 10,
		ex: []xc{{svc: "www-tcp/tcp", client: node1, server: mn, first: 2, last: 3, attempts: 1, answers: 1}},
		unexpected: []uc{
			{proto: catalog.TCP, server: mn, port: 8443, client: node1, first: 4, last: 4, answers: 1},
			{proto: catalog.UDP, server: mn, port: 5353, client: node1, first: 5, last: 5, answers: 1},
		}}))
	c.Update(snapshot(t, cat, win{at: 20,
		ex: []xc{{svc: "www-tcp/tcp", client: node1, server: mn, first: 2, last: 3, attempts: 1, answers: 1}},
		unexpected: []uc{
			{proto: catalog.TCP, server: mn, port: 8443, client: node2, first: 4, last: 14, answers: 3},
		}}))
	sum := c.Summary()
	if !slices.Equal(sum.Profiles, []string{"linux", "ipmi"}) || sum.Observer != obs ||
		!sum.Start.Equal(at(2)) || !sum.End.Equal(at(20)) || sum.OneSided {
		t.Errorf("summary header: profiles %v observer %+v start %v end %v one-sided %v",
			sum.Profiles, sum.Observer, sum.Start, sum.End, sum.OneSided)
	}
	var ids []uint16
	for _, s := range sum.Services {
		ids = append(ids, s.ServiceID)
		if !s.Required {
			t.Errorf("%s/%s is listed without being required or having traffic", s.Service, s.Proto)
		}
	}
	if !slices.IsSorted(ids) {
		t.Errorf("services not ordered by id: %v", ids)
	}
	if len(sum.Services) != len(cat.Required()) {
		t.Errorf("summary lists %d services, the profile requires %d", len(sum.Services), len(cat.Required()))
	}
	www := sum.Services[slices.IndexFunc(sum.Services, func(s ServiceSummary) bool { return s.Service == "www-tcp" })]
	if www.State != StateOK || www.Requests != 1 || www.Replies != 1 {
		t.Errorf("www-tcp: %+v", www)
	}
	want := []UnexpectedSummary{
		{Proto: "tcp", Port: 8443, Server: mn, Answers: 3, Clients: []string{node1, node2}, First: at(4), Last: at(14)},
		{Proto: "udp", Port: 5353, Server: mn, Answers: 1, Clients: []string{node1}, First: at(5), Last: at(5)},
	}
	if len(sum.Unexpected) != len(want) {
		t.Fatalf("unexpected ports: %+v", sum.Unexpected)
	}
	for i := range want {
		g, w := sum.Unexpected[i], want[i]
		if g.Proto != w.Proto || g.Port != w.Port || g.Server != w.Server || g.Answers != w.Answers ||
			!slices.Equal(g.Clients, w.Clients) || !g.First.Equal(w.First) || !g.Last.Equal(w.Last) {
			t.Errorf("unexpected port %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

// TestConcurrentReaders lets a metrics scrape read while Update runs.
func TestConcurrentReaders(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			c.Blocked()
			c.Summary()
		}
	}()
	for i := 1; i <= 200; i++ {
		c.Update(snapshot(t, cat, win{at: float64(10 * i), ex: []xc{
			{svc: "xcatiport/tcp", client: node1, server: mn, first: 1, last: float64(10*i - 1), attempts: uint64(i)},
		}}))
	}
	<-done
	if got := c.Blocked(); len(got) != 1 {
		t.Errorf("Blocked: %+v", got)
	}
}

// TestSnapshotOddities: rows outside the catalog, a missing Services slice.
func TestSnapshotOddities(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	s := bpf.Snapshot{
		Time: at(10),
		Exchanges: bpf.ExchangeEntries(map[bpf.ExchangeKey]bpf.ExchangeCounters{
			{Service: 0, Client: netip.MustParseAddr(node1), Server: netip.MustParseAddr(mn)}:                        {FirstSeen: at(1), LastSeen: at(9), Attempts: 9},
			{Service: catalog.MaxServiceID, Client: netip.MustParseAddr(node1), Server: netip.MustParseAddr(mn)}:     {FirstSeen: at(1), LastSeen: at(9), Attempts: 9},
			{Service: catalog.MaxServiceID + 7, Client: netip.MustParseAddr(node1), Server: netip.MustParseAddr(mn)}: {FirstSeen: at(1), LastSeen: at(9), Attempts: 9},
		}),
	}
	if evs := c.Update(s); len(evs) != 0 {
		t.Errorf("events for exchanges in no catalog row: %q", shorts(evs))
	}
	if sum := c.Summary(); len(sum.Services) != len(cat.Required()) {
		t.Errorf("summary lists %d services", len(sum.Services))
	}
}

// TestUnchangedAndVanished covers the bookkeeping that lets Update skip
// exchanges untouched since the previous snapshot: vanished exchanges are
// still forgotten, and one the snapshots had missed is still picked up.
func TestUnchangedAndVanished(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	a := xc{svc: "www-tcp/tcp", client: node1, server: mn, first: 1, last: 5, attempts: 1, answers: 1}
	b := xc{svc: "www-tcp/tcp", client: node2, server: mn, first: 1, last: 5, attempts: 1, answers: 1}
	tracked := func(want int) {
		t.Helper()
		if got := c.exchanges.len(); got != want {
			t.Errorf("tracking %d exchanges, want %d", got, want)
		}
	}
	c.Update(snapshot(t, cat, win{at: 10, ex: []xc{a, b}}))
	tracked(2)

	// a unchanged, b answered again: nothing vanished.
	b.last, b.attempts, b.answers = 15, 2, 2
	c.Update(snapshot(t, cat, win{at: 20, ex: []xc{a, b}}))
	tracked(2)

	// a evicted: seen by the count now, forgotten by the next full pass.
	b.last, b.attempts, b.answers = 25, 3, 3
	c.Update(snapshot(t, cat, win{at: 30, ex: []xc{b}}))
	b.last, b.attempts, b.answers = 35, 4, 4
	c.Update(snapshot(t, cat, win{at: 40, ex: []xc{b}}))
	tracked(1)

	// A snapshot that had missed an exchange: it shows up unchanged, with
	// an old LastSeen, and three unanswered attempts over 8s.
	missed := xc{svc: "xcatiport/tcp", client: node1, server: mn, first: 20, last: 28, attempts: 3}
	if evs := c.Update(snapshot(t, cat, win{at: 50, ex: []xc{b, missed}})); len(evs) != 0 {
		t.Errorf("window at 50s: %q", shorts(evs))
	}
	evs := c.Update(snapshot(t, cat, win{at: 60, ex: []xc{b, missed}}))
	want := []string{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}
	if got := shorts(evs); !slices.Equal(got, want) {
		t.Errorf("window at 60s:\n got  %q\n want %q", got, want)
	}
	tracked(2)

	// An exchange whose LastSeen is within the margin of the previous
	// snapshot's newest packet (b's, at 35s) is looked at: an attempt
	// counted just after the previous read still counts.
	missed.attempts, missed.last = 4, 34.5
	c.Update(snapshot(t, cat, win{at: 70, ex: []xc{b, missed}}))
	key := packKey(exchangeKey(t, cat, "xcatiport/tcp", node1, mn))
	if got := c.exchanges.get(&key).seen.attempts; got != 4 {
		t.Errorf("attempts %d, want 4", got)
	}
}

// TestFutureTimestamp: one exchange stamped far in the future (a damaged
// capture) must not make every other exchange look unchanged.
func TestFutureTimestamp(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	bogus := xc{svc: "www-tcp/tcp", client: node2, server: mn, first: 1, last: 1e6, attempts: 1, answers: 1}
	c.Update(snapshot(t, cat, win{at: 10, ex: []xc{bogus,
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 5, last: 5, attempts: 1}}}))
	evs := c.Update(snapshot(t, cat, win{at: 20, ex: []xc{bogus,
		{svc: "xcatiport/tcp", client: node1, server: mn, first: 5, last: 19, attempts: 3}}}))
	want := []string{"required_port_blocked xcatiport/tcp 10.0.1.11->10.0.0.1 no-reply"}
	if got := shorts(evs); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLateDuplicateAnswerRefused: a request answered, then a duplicate
// answer (to the retry) refused by the client's host after it left: no
// block, no return path; nothing was left unanswered.
func TestLateDuplicateAnswerRefused(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	x := xc{svc: "ipmi/udp", client: mn, server: node1, first: 1, last: 5, attempts: 2, answers: 1}
	if evs := c.Update(snapshot(t, cat, win{at: 10, ex: []xc{x}})); len(evs) != 0 {
		t.Errorf("window at 10s: %q", shorts(evs))
	}
	x.answers, x.returnBlocked, x.last = 2, 1, 12
	if evs := c.Update(snapshot(t, cat, win{at: 20, ex: []xc{x}})); len(evs) != 0 {
		t.Errorf("window at 20s: %q, want nothing", shorts(evs))
	}
}

// TestStrongerReasonOnTheWayIn: a block on the return path (TFTP answers
// never followed up), then an ICMP port unreachable for a request: the
// reason becomes the ICMP error's and the return-path mark goes.
func TestStrongerReasonOnTheWayIn(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat})
	x := xc{svc: "tftp-udp/udp", client: node1, server: mn, first: 1, last: 9, attempts: 4, answers: 4}
	c.Update(snapshot(t, cat, win{at: 10, ex: []xc{x}}))
	x.attempts, x.closed, x.last = 5, 1, 15
	c.Update(snapshot(t, cat, win{at: 20, ex: []xc{x}}))
	for _, line := range c.Summary().Services {
		if line.Service == "tftp-udp" && (line.State != StateBlocked || line.Reason != ReasonICMPPortUnreachable || line.ReturnPath) {
			t.Errorf("tftp-udp: %s %s return_path=%v, want blocked icmp-port-unreachable without return path", line.State, line.Reason, line.ReturnPath)
		}
	}
}

// bootpc (the client side of DHCP) has no traffic of its own: the answers
// that reach port 68 are counted under bootps. The summary gives it the
// state of bootps, answered or blocked.
func TestSummaryCarriedRows(t *testing.T) {
	cat := mustCatalog(t)
	for _, tt := range []struct {
		name    string
		answers uint64
		want    ServiceState
	}{
		{"answered", 1, StateOK},
		{"unanswered", 0, StateBlocked},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClassifier(t, Config{Catalog: cat})
			for _, at := range []float64{10, 20} {
				c.Update(snapshot(t, cat, win{at: at,
					ex: []xc{{svc: "bootps/udp", client: "52:54:00:aa:00:11", first: 1, last: 8, attempts: 5, answers: tt.answers}}}))
			}
			sum := c.Summary()
			state := map[string]ServiceState{}
			for _, s := range sum.Services {
				state[s.Service+"/"+s.Proto] = s.State
			}
			if state["bootps/udp"] != tt.want || state["bootpc/udp"] != tt.want {
				t.Errorf("bootps %s, bootpc %s, want both %s", state["bootps/udp"], state["bootpc/udp"], tt.want)
			}
		})
	}
}
