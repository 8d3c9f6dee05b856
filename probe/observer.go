package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ExchangesPath is the read-only endpoint of `portwatch observe` that a
// probe asks (docs/probe.md, "The observer's endpoint").
const ExchangesPath = "/api/v1/exchanges"

// MaxQueryValues bounds the addresses one query may name, so that a query
// cannot make the observer compare every exchange with an unbounded list.
const MaxQueryValues = 256

// ExchangesDoc is the endpoint's answer: the observer's cumulative
// counters, now, for the exchanges the query asked about.
type ExchangesDoc struct {
	Time     time.Time    `json:"time"`
	Observer ObserverInfo `json:"observer"`
	// Profiles are the observer's active profiles.
	Profiles []string `json:"profiles"`
	// Ports lists every protocol and port the observer's catalog tracks:
	// an exchange on any other port is never counted, and a probe must not
	// read its absence as "never arrived".
	Ports     []TrackedPort `json:"ports"`
	Exchanges []Exchange    `json:"exchanges"`
}

// ObserverInfo says who observes, and where.
type ObserverInfo struct {
	Host       string   `json:"host"`
	Interfaces []string `json:"interfaces"`
	Backend    string   `json:"backend"`
}

// TrackedPort is one (proto, port) of the observer's catalog.
type TrackedPort struct {
	Proto   string `json:"proto"`
	Port    uint16 `json:"port"`
	Service string `json:"service"`
}

// Exchange is one exchange's cumulative counters, as bpf.ExchangeCounters
// holds them: a client host with a server's service.
type Exchange struct {
	Service   string `json:"service"`
	ServiceID uint16 `json:"service_id"`
	Proto     string `json:"proto"`
	Port      uint16 `json:"port"`
	// Client is the client's address; for DHCP it is empty and ClientMAC
	// holds the client hardware address.
	Client    string `json:"client,omitempty"`
	ClientMAC string `json:"client_mac,omitempty"`
	// Server is empty for a DHCP exchange.
	Server string `json:"server,omitempty"`

	Attempts      uint64    `json:"attempts"`
	Retransmits   uint64    `json:"retransmits"`
	Answers       uint64    `json:"answers"`
	Followups     uint64    `json:"followups"`
	Resets        uint64    `json:"resets"`
	ICMPClosed    uint64    `json:"icmp_closed"`
	ICMPFiltered  uint64    `json:"icmp_filtered"`
	ICMPOther     uint64    `json:"icmp_other"`
	ReturnBlocked uint64    `json:"return_blocked"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
}

// ExchangeQuery selects exchanges by client address or client hardware
// address (at least one of them), and optionally by server address.
type ExchangeQuery struct {
	Clients    []netip.Addr
	ClientMACs []net.HardwareAddr
	Servers    []netip.Addr
}

// Values encodes the query: client=, client_mac=, server=, each repeatable.
func (q ExchangeQuery) Values() url.Values {
	v := url.Values{}
	for _, a := range q.Clients {
		v.Add("client", a.String())
	}
	for _, m := range q.ClientMACs {
		v.Add("client_mac", m.String())
	}
	for _, a := range q.Servers {
		v.Add("server", a.String())
	}
	return v
}

// ParseExchangeQuery reads a query; the error is the message a client gets
// with 400 Bad Request.
func ParseExchangeQuery(v url.Values) (ExchangeQuery, error) {
	var q ExchangeQuery
	for key, values := range v {
		if len(values) > MaxQueryValues {
			return q, fmt.Errorf("%d values of %s: at most %d", len(values), key, MaxQueryValues)
		}
		for _, s := range values {
			switch key {
			case "client", "server":
				a, err := netip.ParseAddr(s)
				if err != nil {
					return q, fmt.Errorf("%s=%q: not an IP address", key, s)
				}
				if key == "client" {
					q.Clients = append(q.Clients, a.Unmap())
				} else {
					q.Servers = append(q.Servers, a.Unmap())
				}
			case "client_mac":
				m, err := net.ParseMAC(s)
				if err != nil || len(m) != 6 {
					return q, fmt.Errorf("client_mac=%q: not an Ethernet address", s)
				}
				q.ClientMACs = append(q.ClientMACs, m)
			default:
				return q, fmt.Errorf("unknown parameter %q (want client, client_mac, server)", key)
			}
		}
	}
	if len(q.Clients) == 0 && len(q.ClientMACs) == 0 {
		return q, errors.New("name a client=ADDRESS or a client_mac=MAC: the endpoint answers for given clients only")
	}
	return q, nil
}

// Match reports whether an exchange of this client (address, or hardware
// address for DHCP) and server is selected.
func (q ExchangeQuery) Match(client netip.Addr, mac net.HardwareAddr, server netip.Addr) bool {
	if client.IsValid() {
		if !slices.Contains(q.Clients, client.Unmap()) {
			return false
		}
	} else if !slices.ContainsFunc(q.ClientMACs, func(m net.HardwareAddr) bool { return m.String() == mac.String() }) {
		return false
	}
	if len(q.Servers) == 0 || !server.IsValid() {
		return true
	}
	return slices.Contains(q.Servers, server.Unmap())
}

// ObserverClient asks a `portwatch observe` for its exchanges.
type ObserverClient struct {
	base *url.URL
	http *http.Client
}

// DefaultObserverPort is observe's --web.listen-address port.
const DefaultObserverPort = 9717

// NewObserverClient checks an observer's URL: http://HOST[:PORT], the port
// defaulting to observe's 9717.
func NewObserverClient(raw string) (*ObserverClient, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--observer %q: want http://HOST[:PORT], where 'portwatch observe' serves --web.listen-address", raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(DefaultObserverPort))
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + ExchangesPath
	return &ObserverClient{base: u, http: &http.Client{Timeout: 5 * time.Second}}, nil
}

// URL is the endpoint the client asks.
func (c *ObserverClient) URL() string { return c.base.String() }

// Exchanges asks for the exchanges the query selects.
func (c *ObserverClient) Exchanges(ctx context.Context, q ExchangeQuery) (*ExchangesDoc, error) {
	u := *c.base
	u.RawQuery = q.Values().Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("observer %s: %w (is 'portwatch observe' running there, serving --web.listen-address, and reachable from here?)", c.base.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("observer %s: reading the answer: %w", c.base.Host, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("observer %s has no %s: it is not a portwatch observe, or one older than this probe", c.base.Host, ExchangesPath)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("observer %s: %s: %s", c.base.Host, resp.Status, strings.TrimSpace(string(body)))
	}
	var doc ExchangesDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("observer %s: the answer is not an exchanges document: %w", c.base.Host, err)
	}
	return &doc, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ObserverDelta is what the observer counted for a probe's exchange between
// its reading before the probes and its reading after them.
type ObserverDelta struct {
	// Tracked is false when the observer's catalog has no row on the port:
	// it counts nothing there, so its silence proves nothing.
	Tracked       bool   `json:"tracked"`
	Attempts      uint64 `json:"attempts"`
	Answers       uint64 `json:"answers"`
	Followups     uint64 `json:"followups"`
	Resets        uint64 `json:"resets"`
	ICMPClosed    uint64 `json:"icmp_closed"`
	ICMPFiltered  uint64 `json:"icmp_filtered"`
	ICMPOther     uint64 `json:"icmp_other"`
	ReturnBlocked uint64 `json:"return_blocked"`
	// Foreign counts requests beyond those the probe sent: traffic of the
	// same client host to the same service during the probe, mixed in.
	Foreign uint64 `json:"foreign,omitempty"`
}

// RefineOptions say how the observer sees the probing host.
type RefineOptions struct {
	// Client is the probing host's address as the observer sees it, when
	// NAT between them changes it; invalid means each result's source.
	Client netip.Addr
}

// Refine turns each result's silence or answer into what happened on the
// far side, from the observer's counters before and after the probes.
func Refine(results []Result, before, after *ExchangesDoc, opts RefineOptions) {
	tracked := map[string]bool{}
	for _, p := range after.Ports {
		tracked[p.Proto+"/"+strconv.Itoa(int(p.Port))] = true
	}
	deltas := make([]*ObserverDelta, len(results))
	// Per target: did the probe get an answer, did the observer see any
	// of the requests to it. An observer that saw none, even of requests
	// that were answered, is not on the path to that target (one observer,
	// many targets): its silence says nothing there.
	answered, seen := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for i := range results {
		r := &results[i]
		if r.State == StateUntestable || r.State == StateError || r.Port == 0 {
			continue
		}
		if !tracked[r.Proto.String()+"/"+strconv.Itoa(int(r.Port))] {
			r.Observer = &ObserverDelta{}
			r.Evidence += fmt.Sprintf("; observer: its catalog does not track %s/%d (run observe with the same --port/--site), so it cannot confirm", r.Proto, r.Port)
			continue
		}
		client := r.Source.Addr()
		if opts.Client.IsValid() {
			client = opts.Client
		}
		d := delta(findExchange(before, r, client), findExchange(after, r, client))
		d.Tracked = true
		if sent := uint64(max(r.Attempts, 0)); d.Attempts > sent && sent > 0 {
			d.Foreign = d.Attempts - sent
		}
		deltas[i] = &d
		if len(r.ClientMAC) > 0 {
			continue // DHCP: one exchange per interface, not per target
		}
		answered[r.Address] = answered[r.Address] || r.State == StateOpen
		seen[r.Address] = seen[r.Address] || d.Attempts > 0 || d.Answers > 0
	}
	for i, d := range deltas {
		if d == nil {
			continue
		}
		r := &results[i]
		if answered[r.Address] && !seen[r.Address] {
			r.Observer = &ObserverDelta{}
			r.Evidence += fmt.Sprintf("; observer saw none of the requests to %s, even those answered (not on this path, or NAT: see --observer-client), so it cannot confirm any", r.Address)
			continue
		}
		r.Observer = d
		refineOne(r, *d)
	}
}

func findExchange(doc *ExchangesDoc, r *Result, client netip.Addr) Exchange {
	for _, x := range doc.Exchanges {
		if x.Proto != r.Proto.String() || x.Port != r.Port {
			continue
		}
		if len(r.ClientMAC) > 0 {
			if x.Client == "" && strings.EqualFold(x.ClientMAC, r.ClientMAC.String()) {
				return x
			}
			continue
		}
		if x.Client == client.String() && x.Server == r.Address.String() {
			return x
		}
	}
	return Exchange{}
}

// delta subtracts two readings. A counter that went down means the
// exchange was evicted from the observer's bounded table and seen again:
// the later reading alone is then the best count.
func delta(before, after Exchange) ObserverDelta {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return a
		}
		return a - b
	}
	if after.Attempts < before.Attempts || after.Answers < before.Answers {
		before = Exchange{}
	}
	return ObserverDelta{
		Attempts:      sub(after.Attempts, before.Attempts),
		Answers:       sub(after.Answers, before.Answers),
		Followups:     sub(after.Followups, before.Followups),
		Resets:        sub(after.Resets, before.Resets),
		ICMPClosed:    sub(after.ICMPClosed, before.ICMPClosed),
		ICMPFiltered:  sub(after.ICMPFiltered, before.ICMPFiltered),
		ICMPOther:     sub(after.ICMPOther, before.ICMPOther),
		ReturnBlocked: sub(after.ReturnBlocked, before.ReturnBlocked),
	}
}

// refineOne decides one result from the probe's view and the observer's.
func refineOne(r *Result, d ObserverDelta) {
	probeReason := r.Reason
	defer func() {
		if r.Reason != probeReason {
			r.ProbeReason = probeReason
		}
	}()
	arrived := d.Attempts > 0 || d.Answers > 0 || d.Resets > 0
	seen := fmt.Sprintf("observer: %d requests arrived, %d answers", d.Attempts, d.Answers)
	if d.Foreign > 0 {
		seen += fmt.Sprintf(" (%d of the requests were not this probe's: other traffic from this host)", d.Foreign)
	}
	switch {
	case !arrived && r.State == StateOpen:
		// The answer came, so the request got there: the observer is
		// not on this path, or sees this host under another address.
		r.Evidence += "; observer saw none of it (not on this path, or NAT: see --observer-client)"
	case !arrived:
		r.Evidence = "the observer never saw the request arrive; the probe saw: " + r.Evidence
		r.State, r.Reason = StateBlockedInbound, ReasonNotArrived
	case r.State == StateOpen:
		r.Evidence += "; " + seen
	case r.State == StateClosed || r.State == StateFiltered || r.State == StateUnreachable:
		// It arrived, so what refused it is at the server: nothing
		// listens, or the server's own firewall (the observer sees
		// packets before the host's netfilter does).
		r.Evidence += "; " + seen + ": refused at the server itself"
	case d.Answers > 0 || d.ReturnBlocked > 0 || d.Resets > 0 || d.ICMPClosed > 0 || d.ICMPFiltered > 0:
		r.State, r.Reason = StateBlockedReturn, ReasonReplyLost
		r.Evidence = seen + "; the server answered and no answer reached the probe"
		if d.Answers == 0 {
			r.Evidence = seen + fmt.Sprintf("; the server refused it (%d resets, %d ICMP errors) and the refusal never reached the probe",
				d.Resets, d.ICMPClosed+d.ICMPFiltered)
		}
		if r.Request == requestTFTP && d.Followups == 0 {
			r.Evidence += ": TFTP answers from a new server port, which a stateful firewall drops unless its TFTP conntrack helper relates it to the request"
		} else {
			r.Evidence += ": the return path drops it (an asymmetric rule, a route back elsewhere)"
		}
	case r.Reason == ReasonOneWay:
		r.State, r.Reason = StateOpen, ReasonArrived
		r.Evidence = seen + "; this service never answers, and arriving is all it needs"
	default:
		r.State, r.Reason = StateServiceSilent, ReasonNoReply
		r.Evidence = seen + "; the request arrived and the service did not answer (wrong community, an ACL in the service, a stopped daemon that still holds the port)"
	}
}
