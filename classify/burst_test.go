package classify

import (
	"fmt"
	"slices"
	"testing"

	"portwatch/bpf"
	"portwatch/catalog"
)

// nodeAddr is the address of compute node i (0-based) of a burst.
func nodeAddr(i int) string { return fmt.Sprintf("10.0.%d.%d", 1+i/250, 1+i%250) }

// nodeMAC is the hardware address of compute node i.
func nodeMAC(i int) string { return fmt.Sprintf("aa:bb:cc:00:%02x:%02x", i/256, i%256) }

// burst describes how each node of a provisioning burst fares with each
// service, at the end of window w (1-based, 10 s each): the exchanges it
// shows, cumulative.
type burst struct {
	nodes int
	// dropped services get attempts and no answer.
	dropped map[string]bool
	// unacknowledged services get answers the clients never follow up.
	unacknowledged map[string]bool
	// synLost makes each TCP exchange lose its first SYN: one attempt, one
	// retransmit, one answer.
	synLost bool
	// oneSided shows only the nodes' packets: no answer anywhere, TFTP
	// follow-ups and TCP data from the clients.
	oneSided bool
}

var burstServices = []string{"bootps/udp", "tftp-udp/udp", "www-tcp/tcp", "xcatdport/tcp", "xcatiport/tcp"}

func (b burst) window(w int) win {
	end := float64(10 * w)
	out := win{at: end, services: map[string]bpf.ServiceCounters{}}
	for i := 0; i < b.nodes; i++ {
		first := 0.5 + float64(i%100)*0.05 // nodes start within 5 s
		last := end - 1
		for _, svc := range burstServices {
			x := xc{svc: svc, client: nodeAddr(i), server: mn, first: first, last: last}
			if svc == "bootps/udp" {
				x.client, x.server = nodeMAC(i), ""
			}
			switch {
			case b.dropped[svc], b.oneSided:
				// Clients retry every ~3 s.
				x.attempts = uint64(1 + (last-first)/3)
				if b.unacknowledged[svc] {
					x.answers = x.attempts
				}
				if svc == "tftp-udp/udp" && b.oneSided {
					x.followups = 100 * uint64(w)
				}
			case b.synLost && svc != "bootps/udp" && svc != "tftp-udp/udp":
				x.attempts, x.retransmits, x.answers = 1, 1, 1
			default:
				x.attempts = uint64(w)
				x.answers = uint64(w)
				if svc == "tftp-udp/udp" {
					x.answers = 300 * uint64(w)
					x.followups = 300 * uint64(w)
				}
			}
			out.ex = append(out.ex, x)
		}
	}
	if b.oneSided {
		// The clients completed handshakes the capture did not show.
		for _, svc := range []string{"www-tcp/tcp", "xcatdport/tcp", "xcatiport/tcp"} {
			out.services[svc] = bpf.ServiceCounters{Requests: uint64(b.nodes * 20 * w)}
		}
	}
	return out
}

// TestBurst: 1,000 nodes provisioning at once.
func TestBurst(t *testing.T) {
	tests := []struct {
		name string
		b    burst
		// blocked is the service whose every node must get exactly one
		// required_port_blocked event.
		blocked    string
		returnPath bool // ... on the return path
		summary    map[string]string
		oneSided   bool
	}{
		{
			name: "every first SYN lost: retransmits are one attempt, answered",
			b:    burst{nodes: 1000, synLost: true},
			summary: map[string]string{
				"www-tcp/tcp":   "www-tcp/tcp ok",
				"xcatiport/tcp": "xcatiport/tcp ok",
				"tftp-udp/udp":  "tftp-udp/udp ok",
			},
		},
		{
			name:    "xcatiport dropped for every node",
			b:       burst{nodes: 1000, dropped: map[string]bool{"xcatiport/tcp": true}},
			blocked: "xcatiport/tcp",
			summary: map[string]string{
				"xcatiport/tcp": "xcatiport/tcp blocked no-reply [10.0.1.1->10.0.0.1 10.0.1.2->10.0.0.1 10.0.1.3->10.0.0.1 10.0.1.4->10.0.0.1 10.0.1.5->10.0.0.1 10.0.1.6->10.0.0.1 10.0.1.7->10.0.0.1 10.0.1.8->10.0.0.1 10.0.1.9->10.0.0.1 10.0.1.10->10.0.0.1] +990",
				"www-tcp/tcp":   "www-tcp/tcp ok",
				"bootps/udp":    "bootps/udp ok",
			},
		},
		{
			name: "TFTP dropped on the way back for every node",
			b: burst{nodes: 1000, dropped: map[string]bool{"tftp-udp/udp": true},
				unacknowledged: map[string]bool{"tftp-udp/udp": true}},
			blocked:    "tftp-udp/udp",
			returnPath: true,
		},
		{
			// A new firewall with no rules: every service silent, and the
			// clients send nothing but SYNs and repeats. Not one-sided.
			name: "every service dropped by a firewall",
			b: burst{nodes: 50, dropped: map[string]bool{
				"bootps/udp": true, "tftp-udp/udp": true, "www-tcp/tcp": true, "xcatdport/tcp": true, "xcatiport/tcp": true}},
			blocked: "www-tcp/tcp",
			summary: map[string]string{"www-tcp/tcp": "www-tcp/tcp blocked no-reply [10.0.1.1->10.0.0.1 10.0.1.2->10.0.0.1 10.0.1.3->10.0.0.1 10.0.1.4->10.0.0.1 10.0.1.5->10.0.0.1 10.0.1.6->10.0.0.1 10.0.1.7->10.0.0.1 10.0.1.8->10.0.0.1 10.0.1.9->10.0.0.1 10.0.1.10->10.0.0.1] +40"},
		},
		{
			name:     "a capture that sees the nodes' packets only",
			b:        burst{nodes: 1000, oneSided: true},
			oneSided: true,
			summary: map[string]string{
				"www-tcp/tcp":  "www-tcp/tcp unconfirmed",
				"tftp-udp/udp": "tftp-udp/udp ok",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := mustCatalog(t)
			c := newClassifier(t, Config{Catalog: cat})
			perExchange := map[string]int{}
			oneSidedEvents := 0
			for w := 1; w <= 4; w++ {
				for _, e := range c.Update(snapshot(t, cat, tt.b.window(w))) {
					switch {
					case e.Verdict == CaptureOneSided:
						oneSidedEvents++
					case e.Verdict == RequiredPortBlocked && e.Service+"/"+e.Proto == tt.blocked:
						perExchange[e.Client]++
						if e.ReturnPath != tt.returnPath || e.Reason != ReasonNoReply {
							t.Errorf("window %d: %s, want reason no-reply, return path %v", w, short(e), tt.returnPath)
						}
					case e.Verdict == RequiredPortBlocked && tt.b.dropped[e.Service+"/"+e.Proto]:
					default:
						t.Errorf("window %d: unexpected event %s", w, short(e))
					}
				}
			}
			if tt.blocked != "" {
				if len(perExchange) != tt.b.nodes {
					t.Errorf("%d exchanges of %s got a blocked event, want %d", len(perExchange), tt.blocked, tt.b.nodes)
				}
				for client, n := range perExchange {
					if n != 1 {
						t.Errorf("%s: %d blocked events, want 1", client, n)
					}
				}
			}
			if want := map[bool]int{true: 1}[tt.oneSided]; oneSidedEvents != want {
				t.Errorf("%d capture_one_sided events, want %d", oneSidedEvents, want)
			}
			sum := c.Summary()
			if sum.OneSided != tt.oneSided {
				t.Errorf("summary one-sided %v, want %v", sum.OneSided, tt.oneSided)
			}
			for key, want := range tt.summary {
				if got := summaryLine(sum, key); got != want {
					t.Errorf("summary of %s:\n got  %q\n want %q", key, got, want)
				}
			}
		})
	}
}

// TestOneSided covers the rule's edges with small hand-built captures.
func TestOneSided(t *testing.T) {
	// unanswered returns n unanswered exchanges of svc, clients from 0.
	unanswered := func(svc string, n int, end float64) []xc {
		var out []xc
		for i := 0; i < n; i++ {
			out = append(out, xc{svc: svc, client: nodeAddr(i), server: mn, first: 1, last: end - 1, attempts: uint64(end / 3)})
		}
		return out
	}
	// answered returns n answered exchanges of svc, first seen in the
	// window that ends at end.
	answered := func(svc string, n int, end float64) []xc {
		var out []xc
		for i := 0; i < n; i++ {
			out = append(out, xc{svc: svc, client: nodeAddr(500 + i), server: mn, first: end - 9, last: end - 8, attempts: 1, answers: 1})
		}
		return out
	}
	clientsActOnAnswers := map[string]bpf.ServiceCounters{"www-tcp/tcp": {Requests: 5000}}
	tests := []struct {
		name    string
		windows []win
		// want holds each window's events that are not blocked events;
		// blocked counts the blocked events of the whole run.
		want    [][]string
		blocked int
	}{
		{
			name: "requests only: said once, silence suppressed, ICMP still counts",
			windows: []win{
				{at: 10, ex: append(unanswered("www-tcp/tcp", 15, 10), unanswered("xcatiport/tcp", 15, 10)...), services: clientsActOnAnswers},
				{at: 20, ex: append(append(unanswered("www-tcp/tcp", 15, 20), unanswered("xcatiport/tcp", 15, 20)...),
					xc{svc: "xcatdport/tcp", client: node1, server: mn, first: 11, last: 11, attempts: 1, filtered: 1}),
					services: clientsActOnAnswers},
			},
			want:    [][]string{{"capture_one_sided"}, {"required_port_blocked xcatdport/tcp 10.0.1.11->10.0.0.1 icmp-admin-prohibited"}},
			blocked: 1,
		},
		{
			name: "fewer exchanges than the minimum",
			windows: []win{
				{at: 10, ex: append(unanswered("www-tcp/tcp", 10, 10), unanswered("xcatiport/tcp", 9, 10)...), services: clientsActOnAnswers},
			},
			want:    [][]string{{}},
			blocked: 19,
		},
		{
			name: "one service only",
			windows: []win{
				{at: 10, ex: unanswered("www-tcp/tcp", 100, 10), services: clientsActOnAnswers},
			},
			want:    [][]string{{}},
			blocked: 100,
		},
		{
			name: "answers on one service: it sees both ways",
			windows: []win{
				{at: 10, ex: append(append(unanswered("www-tcp/tcp", 100, 10), unanswered("xcatiport/tcp", 100, 10)...), answered("xcatdport/tcp", 1, 10)...),
					services: clientsActOnAnswers},
			},
			want:    [][]string{{}},
			blocked: 200,
		},
		{
			name: "a stray answer within the tolerance",
			windows: []win{
				{at: 10, ex: append(append(unanswered("www-tcp/tcp", 100, 10), unanswered("xcatiport/tcp", 100, 10)...), answered("www-tcp/tcp", 5, 10)...),
					services: clientsActOnAnswers},
			},
			want: [][]string{{"capture_one_sided"}},
		},
		{
			name: "an answer beyond the tolerance",
			windows: []win{
				{at: 10, ex: append(append(unanswered("www-tcp/tcp", 100, 10), unanswered("xcatiport/tcp", 100, 10)...), answered("www-tcp/tcp", 6, 10)...),
					services: clientsActOnAnswers},
			},
			want:    [][]string{{}},
			blocked: 200,
		},
		{
			name: "no sign of unseen answers: a firewall dropping everything",
			windows: []win{
				{at: 10, ex: append(unanswered("www-tcp/tcp", 100, 10), unanswered("xcatiport/tcp", 100, 10)...)},
			},
			want:    [][]string{{}},
			blocked: 200,
		},
		{
			name: "answers only",
			windows: []win{
				{at: 10, ex: func() []xc {
					var out []xc
					for i := 0; i < 15; i++ {
						out = append(out,
							xc{svc: "www-tcp/tcp", client: nodeAddr(i), server: mn, first: 1, last: 2, answers: 1},
							xc{svc: "tftp-udp/udp", client: nodeAddr(i), server: mn, first: 1, last: 9, answers: 40})
					}
					return out
				}()},
				{at: 20},
			},
			want: [][]string{{"capture_one_sided"}, {}},
		},
		{
			name: "two-sided again: suppression ends, said only once",
			windows: []win{
				{at: 10, ex: append(unanswered("www-tcp/tcp", 15, 10), unanswered("xcatiport/tcp", 15, 10)...), services: clientsActOnAnswers},
				{at: 20, ex: append(append(unanswered("www-tcp/tcp", 15, 20), unanswered("xcatiport/tcp", 15, 20)...), answered("www-tcp/tcp", 30, 20)...),
					services: clientsActOnAnswers},
				{at: 30, ex: append(append(unanswered("www-tcp/tcp", 15, 30), unanswered("xcatiport/tcp", 15, 30)...), answered("www-tcp/tcp", 30, 20)...),
					services: clientsActOnAnswers},
			},
			want:    [][]string{{"capture_one_sided"}, {}, {}},
			blocked: 30,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := mustCatalog(t)
			c := newClassifier(t, Config{Catalog: cat})
			blocked := 0
			for i, w := range tt.windows {
				var got []string
				for _, e := range c.Update(snapshot(t, cat, w)) {
					if e.Verdict == RequiredPortBlocked && e.Reason == ReasonNoReply {
						blocked++
						continue
					}
					if e.Verdict == RequiredPortBlocked {
						blocked++
					}
					got = append(got, short(e))
				}
				if got == nil {
					got = []string{}
				}
				if !slices.Equal(got, tt.want[i]) {
					t.Errorf("window %d:\n got  %q\n want %q", i, got, tt.want[i])
				}
			}
			if blocked != tt.blocked {
				t.Errorf("%d blocked events, want %d", blocked, tt.blocked)
			}
		})
	}
}

// The burst's catalog rows must exist, or the tests above prove nothing.
func TestBurstRowsExist(t *testing.T) {
	cat := mustCatalog(t)
	for _, key := range burstServices {
		if e := mustEntry(t, cat, key); !cat.IsRequired(e) || !e.OnWire {
			t.Errorf("%s is not a required row on the wire", key)
		}
	}
	if e := mustEntry(t, cat, "tftp-udp/udp"); e.Pattern != catalog.PatternEphemeralReply {
		t.Errorf("tftp-udp/udp pattern %s", e.Pattern)
	}
}
