package probe

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"portwatch/catalog"
)

var (
	probeHost  = netip.MustParseAddr("10.77.1.11")
	serverHost = netip.MustParseAddr("10.77.0.10")
	probeMAC   = net.HardwareAddr{0x02, 0x70, 0x77, 0x01, 0x00, 0x0b}
)

func TestParseExchangeQuery(t *testing.T) {
	tests := []struct {
		query   string
		wantErr string
	}{
		{"client=10.77.1.11", ""},
		{"client=10.77.1.11&client=fd00::1&server=10.77.0.10", ""},
		{"client_mac=02:70:77:01:00:0b", ""},
		{"", "name a client=ADDRESS or a client_mac=MAC"},
		{"server=10.77.0.10", "name a client=ADDRESS or a client_mac=MAC"},
		{"client=n001", `client="n001": not an IP address`},
		{"client_mac=02:70:77", `client_mac="02:70:77": not an Ethernet address`},
		{"client=10.77.1.11&verbose=1", `unknown parameter "verbose"`},
		{"client=10.77.1.11" + strings.Repeat("&server=10.0.0.1", MaxQueryValues+1), "values of server: at most 256"},
	}
	for _, tt := range tests {
		v, _ := url.ParseQuery(tt.query)
		_, err := ParseExchangeQuery(v)
		if tt.wantErr == "" && err != nil {
			t.Errorf("%.60s: %v", tt.query, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%.60s: error %v, want %q", tt.query, err, tt.wantErr)
		}
	}
	q := ExchangeQuery{Clients: []netip.Addr{probeHost}, ClientMACs: []net.HardwareAddr{probeMAC}, Servers: []netip.Addr{serverHost}}
	back, err := ParseExchangeQuery(q.Values())
	if err != nil || back.Clients[0] != probeHost || back.ClientMACs[0].String() != probeMAC.String() || back.Servers[0] != serverHost {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if !q.Match(probeHost, nil, serverHost) || q.Match(serverHost, nil, serverHost) || q.Match(probeHost, nil, probeHost) {
		t.Error("Match by address")
	}
	if !q.Match(netip.Addr{}, probeMAC, netip.Addr{}) || q.Match(netip.Addr{}, net.HardwareAddr{2, 0, 0, 0, 0, 9}, netip.Addr{}) {
		t.Error("Match of a DHCP exchange by hardware address")
	}
}

// doc is an observer's answer with one exchange of the probe's host.
func doc(xs ...Exchange) *ExchangesDoc {
	return &ExchangesDoc{
		Ports:     []TrackedPort{{"udp", 69, "tftp-udp"}, {"udp", 514, "rsyslogd"}, {"tcp", 3001, "xcatdport"}, {"udp", 67, "bootps"}},
		Exchanges: xs,
	}
}

func x(service string, proto string, port uint16, attempts, answers uint64) Exchange {
	return Exchange{Service: service, Proto: proto, Port: port, Client: probeHost.String(), Server: serverHost.String(),
		Attempts: attempts, Answers: answers}
}

func result(service string, proto catalog.Proto, port uint16, request string, state State, reason Reason, attempts int) Result {
	return Result{Target: serverHost.String(), Address: serverHost, Source: netip.AddrPortFrom(probeHost, 40000),
		Service: service, Proto: proto, Port: port, Request: request, State: state, Reason: reason,
		Evidence: "probe evidence", Attempts: attempts}
}

func TestRefine(t *testing.T) {
	tftp := func(s State, r Reason) Result { return result("tftp-udp", catalog.UDP, 69, requestTFTP, s, r, 3) }
	xcatd := func(s State, r Reason) Result {
		return result("xcatdport", catalog.TCP, 3001, requestTCPConnect, s, r, 1)
	}
	tests := []struct {
		name          string
		r             Result
		before, after *ExchangesDoc
		state         State
		reason        Reason
		probeReason   Reason
		evidence      string
	}{
		{"dropped on the way in", tftp(StateNoAnswer, ReasonNoReply), doc(), doc(),
			StateBlockedInbound, ReasonNotArrived, ReasonNoReply, "the observer never saw the request arrive"},
		{"silent service", tftp(StateNoAnswer, ReasonNoReply), doc(), doc(x("tftp-udp", "udp", 69, 3, 0)),
			StateServiceSilent, ReasonNoReply, "", "the request arrived and the service did not answer"},
		{"TFTP without a helper", tftp(StateNoAnswer, ReasonNoReply), doc(x("tftp-udp", "udp", 69, 5, 5)),
			doc(x("tftp-udp", "udp", 69, 8, 8)),
			StateBlockedReturn, ReasonReplyLost, ReasonNoReply, "TFTP conntrack helper"},
		{"reset by a firewall on the way", xcatd(StateClosed, ReasonReset), doc(), doc(),
			StateBlockedInbound, ReasonNotArrived, ReasonReset, "the probe saw: probe evidence"},
		{"reset by the server", xcatd(StateClosed, ReasonReset), doc(), doc(Exchange{Service: "xcatdport", Proto: "tcp", Port: 3001,
			Client: probeHost.String(), Server: serverHost.String(), Attempts: 1, Resets: 1}),
			StateClosed, ReasonReset, "", "refused at the server itself"},
		{"refusal lost on the way back", xcatd(StateNoAnswer, ReasonNoReply), doc(), doc(Exchange{Service: "xcatdport", Proto: "tcp", Port: 3001,
			Client: probeHost.String(), Server: serverHost.String(), Attempts: 1, Resets: 1}),
			StateBlockedReturn, ReasonReplyLost, ReasonNoReply, "the server refused it (1 resets, 0 ICMP errors)"},
		{"confirmed open", xcatd(StateOpen, ReasonSYNACK), doc(), doc(x("xcatdport", "tcp", 3001, 1, 1)),
			StateOpen, ReasonSYNACK, "", "observer: 1 requests arrived, 1 answers"},
		{"open, observer elsewhere", xcatd(StateOpen, ReasonSYNACK), doc(), doc(),
			StateOpen, ReasonSYNACK, "", "not on this path, or NAT"},
		{"syslog arrived", result("rsyslogd", catalog.UDP, 514, requestSyslog, StateNoAnswer, ReasonOneWay, 1), doc(),
			doc(x("rsyslogd", "udp", 514, 1, 0)), StateOpen, ReasonArrived, ReasonOneWay, "arriving is all it needs"},
		{"port the observer does not track", result("xcatdport", catalog.TCP, 3011, requestTCPConnect, StateNoAnswer, ReasonNoReply, 1),
			doc(), doc(), StateNoAnswer, ReasonNoReply, "", "does not track tcp/3011"},
		{"other traffic mixed in", xcatd(StateOpen, ReasonSYNACK), doc(), doc(x("xcatdport", "tcp", 3001, 4, 4)),
			StateOpen, ReasonSYNACK, "", "3 of the requests were not this probe's"},
		{"evicted and seen again", tftp(StateNoAnswer, ReasonNoReply), doc(x("tftp-udp", "udp", 69, 50, 0)),
			doc(x("tftp-udp", "udp", 69, 3, 0)), StateServiceSilent, ReasonNoReply, "", "observer: 3 requests arrived"},
		{"untestable stays", result("rsync", catalog.UDP, 873, requestNone, StateUntestable, ReasonNoRequest, 0), doc(), doc(),
			StateUntestable, ReasonNoRequest, "", "probe evidence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := []Result{tt.r}
			Refine(rs, tt.before, tt.after, RefineOptions{})
			got := rs[0]
			if got.State != tt.state || got.Reason != tt.reason || got.ProbeReason != tt.probeReason {
				t.Errorf("%s %s (probe %s), want %s %s (probe %s)", got.State, got.Reason, got.ProbeReason, tt.state, tt.reason, tt.probeReason)
			}
			if !strings.Contains(got.Evidence, tt.evidence) {
				t.Errorf("evidence %q, want it to say %q", got.Evidence, tt.evidence)
			}
		})
	}
}

func TestRefineDHCPAndNAT(t *testing.T) {
	dhcp := result("bootps", catalog.UDP, 67, requestDHCP, StateNoAnswer, ReasonNoReply, 3)
	dhcp.Source = netip.MustParseAddrPort("0.0.0.0:68")
	dhcp.ClientMAC = probeMAC
	after := doc(Exchange{Service: "bootps", Proto: "udp", Port: 67, ClientMAC: probeMAC.String(), Attempts: 3, Answers: 3})
	rs := []Result{dhcp}
	Refine(rs, doc(), after, RefineOptions{})
	if rs[0].State != StateBlockedReturn || rs[0].Observer.Attempts != 3 {
		t.Errorf("DHCP answered, offers lost: %s %+v", rs[0].State, rs[0].Observer)
	}

	// Behind NAT the observer sees the probe as 192.0.2.7.
	nat := netip.MustParseAddr("192.0.2.7")
	r := result("xcatdport", catalog.TCP, 3001, requestTCPConnect, StateNoAnswer, ReasonNoReply, 1)
	seen := x("xcatdport", "tcp", 3001, 1, 0)
	seen.Client = nat.String()
	rs = []Result{r}
	Refine(rs, doc(), doc(seen), RefineOptions{Client: nat})
	if rs[0].State != StateServiceSilent {
		t.Errorf("with --observer-client: %s", rs[0].State)
	}
	rs = []Result{r}
	Refine(rs, doc(), doc(seen), RefineOptions{})
	if rs[0].State != StateBlockedInbound {
		t.Errorf("without it the observer's exchange is someone else's: %s", rs[0].State)
	}
}

func TestObserverClient(t *testing.T) {
	for raw, want := range map[string]string{
		"10.77.0.10":               "http://10.77.0.10:9717/api/v1/exchanges",
		"http://mn:9800/":          "http://mn:9800/api/v1/exchanges",
		"https://[fd00::1]":        "https://[fd00::1]:9717/api/v1/exchanges",
		"http://mn:9717/portwatch": "http://mn:9717/portwatch/api/v1/exchanges",
	} {
		c, err := NewObserverClient(raw)
		if err != nil || c.URL() != want {
			t.Errorf("%s: %v, %v, want %s", raw, c, err, want)
		}
	}
	for _, bad := range []string{"ftp://mn", "http://", "::"} {
		if _, err := NewObserverClient(bad); err == nil || !strings.Contains(err.Error(), "want http://HOST[:PORT]") {
			t.Errorf("%q: %v", bad, err)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc(ExchangesPath, func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseExchangeQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(doc(x("tftp-udp", "udp", 69, uint64(len(q.Clients)), 0)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	c, _ := NewObserverClient(srv.URL)
	got, err := c.Exchanges(ctx, ExchangeQuery{Clients: []netip.Addr{probeHost}})
	if err != nil || len(got.Exchanges) != 1 || got.Exchanges[0].Attempts != 1 {
		t.Errorf("exchanges: %+v, %v", got, err)
	}
	if _, err := c.Exchanges(ctx, ExchangeQuery{}); err == nil || !strings.Contains(err.Error(), "400 Bad Request: name a client") {
		t.Errorf("bad query: %v", err)
	}
	c, _ = NewObserverClient(srv.URL + "/elsewhere")
	if _, err := c.Exchanges(ctx, ExchangeQuery{Clients: []netip.Addr{probeHost}}); err == nil || !strings.Contains(err.Error(), "is not a portwatch observe") {
		t.Errorf("404: %v", err)
	}

	// A port on loopback where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ = NewObserverClient("http://" + addr)
	_, err = c.Exchanges(ctx, ExchangeQuery{Clients: []netip.Addr{probeHost}})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "is 'portwatch observe' running there") {
		t.Errorf("nobody there: %v", err)
	}
}

// TestRefineTargetsTheObserverCannotSee: one observer, two targets. The
// observer sees the requests to its own host; of the other target it sees
// nothing, not even the request that was answered, so it is not on that
// path: that target's silent row stays the probe's own no-answer instead
// of turning into blocked-inbound.
func TestRefineTargetsTheObserverCannotSee(t *testing.T) {
	other := netip.MustParseAddr("10.77.0.20")
	at := func(r Result, addr netip.Addr) Result {
		r.Target, r.Address = addr.String(), addr
		return r
	}
	results := []Result{
		result("xcatdport", catalog.TCP, 3001, requestTCPConnect, StateOpen, ReasonSYNACK, 1),
		result("tftp-udp", catalog.UDP, 69, requestTFTP, StateNoAnswer, ReasonNoReply, 3),
		at(result("xcatdport", catalog.TCP, 3001, requestTCPConnect, StateOpen, ReasonSYNACK, 1), other),
		at(result("tftp-udp", catalog.UDP, 69, requestTFTP, StateNoAnswer, ReasonNoReply, 3), other),
	}
	Refine(results, doc(), doc(x("xcatdport", "tcp", 3001, 1, 1)), RefineOptions{})
	if r := results[1]; r.State != StateBlockedInbound {
		t.Errorf("the observer's own host: tftp %s, want %s", r.State, StateBlockedInbound)
	}
	for _, r := range results[2:] {
		if r.State == StateBlockedInbound || !strings.Contains(r.Evidence, "saw none of the requests to 10.77.0.20") {
			t.Errorf("the other target: %s %s: %q", r.Key(), r.State, r.Evidence)
		}
	}
}
