package classify

import (
	"cmp"
	"slices"

	"portwatch/bpf"
	"portwatch/catalog"
)

// ServiceVerdict is a service that is blocked now: a Prometheus gauge holds
// 1 for it (and 0 for the catalog's other rows).
type ServiceVerdict struct {
	ServiceID catalog.ServiceID `json:"service_id"`
	Service   string            `json:"service"`
	Proto     string            `json:"proto"`
	Port      string            `json:"port"`
	// Required is true when the active profiles require the row: its
	// blocks are required_port_blocked events.
	Required bool   `json:"required"`
	Status   string `json:"status"`
	// Reason is the strongest reason among its blocked exchanges.
	Reason Reason `json:"reason"`
	// Exchanges counts its exchanges blocked now.
	Exchanges int `json:"exchanges"`
}

// Blocked returns the services with at least one exchange blocked now,
// required or not, ordered by service id.
func (c *Classifier) Blocked() []ServiceVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ServiceVerdict
	for id := range c.svc {
		s := &c.svc[id]
		n := s.blockedNow()
		if n == 0 || s.entry == nil {
			continue
		}
		out = append(out, ServiceVerdict{
			ServiceID: s.entry.ID,
			Service:   s.entry.Name,
			Proto:     s.entry.Proto.String(),
			Port:      s.entry.PortString(),
			Required:  c.cat.IsRequired(s.entry),
			Status:    string(c.cat.Status(s.entry)),
			Reason:    reasonNames[s.strongest()],
			Exchanges: n,
		})
	}
	return out
}

// Summary returns the run summary so far. Services lists, by service id,
// every row the active profiles require and every other row that had
// traffic, each in one state:
//   - never-on-wire: the row carries no traffic (its requirement is judged
//     on the row that carries it);
//   - blocked: some in-scope exchange is blocked now, with the strongest
//     reason among them and the (client, server) pairs, at most
//     AffectedCap of them ordered by server and client, MoreAffected
//     counting the rest;
//   - ok: some exchange was answered (for a one-way row: it had traffic)
//     and none is blocked;
//   - unconfirmed: traffic but no answer and no block (too few attempts
//     to judge, a one-sided capture, or exchanges the kernel table could
//     not hold);
//   - not-seen: no traffic at all.
//
// Requests and Replies are the last snapshot's counters of the row, over
// every server, in scope or not.
func (c *Classifier) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()

	pairs := c.blockedPairs()
	sum := Summary{
		Profiles:   append([]string(nil), c.cat.ActiveProfiles()...),
		Observer:   c.cfg.Observer,
		Start:      c.start,
		End:        c.end,
		Services:   []ServiceSummary{},
		Unexpected: []UnexpectedSummary{},
		OneSided:   c.oneSided,
	}
	for _, e := range c.cat.Entries() {
		s := &c.svc[e.ID]
		var sc bpf.ServiceCounters
		if int(e.ID) < len(c.counters) {
			sc = c.counters[e.ID]
		}
		traffic := s.exchanges > 0 || sc.Requests > 0 || sc.Replies > 0
		required := c.cat.IsRequired(e)
		if !required && !traffic {
			continue
		}
		line := ServiceSummary{
			Service:   e.Name,
			ServiceID: uint16(e.ID),
			Proto:     e.Proto.String(),
			Port:      e.PortString(),
			Required:  required,
			Status:    string(c.cat.Status(e)),
			Requests:  sc.Requests,
			Replies:   sc.Replies,
		}
		switch {
		case !e.OnWire:
			line.State = StateNeverOnWire
		case s.blockedNow() > 0:
			line.State = StateBlocked
			line.Reason = reasonNames[s.strongest()]
			line.ReturnPath = s.returnBlocked == s.blockedNow()
			affected := pairs[e.ID]
			for i, k := range affected {
				if i == c.cfg.AffectedCap {
					line.MoreAffected = len(affected) - i
					break
				}
				line.Affected = append(line.Affected, Pair{Client: clientString(k), Server: addrString(k.Server)})
			}
		case s.confirmed > 0, s.judge == judgeICMPOnly && traffic:
			line.State = StateOK
		case traffic:
			line.State = StateUnconfirmed
		default:
			line.State = StateNotSeen
		}
		sum.Services = append(sum.Services, line)
	}
	carriedStates(c.cat, sum.Services)

	keys := make([]bpf.UnexpectedKey, 0, len(c.unexpected))
	for k, u := range c.unexpected {
		if u.answers > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b bpf.UnexpectedKey) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), a.Server.Compare(b.Server), cmp.Compare(a.Port, b.Port))
	})
	for _, k := range keys {
		u := c.unexpected[k]
		line := UnexpectedSummary{
			Proto:   k.Proto.String(),
			Port:    k.Port,
			Server:  addrString(k.Server),
			Answers: u.answers,
			First:   u.first,
			Last:    u.last,
		}
		for _, a := range u.clients {
			line.Clients = append(line.Clients, addrString(a))
		}
		sum.Unexpected = append(sum.Unexpected, line)
	}
	return sum
}

// carriedStates gives a row on the wire whose traffic another row carries
// (bootpc, the client side of DHCP, carried by bootps; rpc-mount by mountd)
// the state of that row, when it saw nothing of its own: the DHCP answers
// that reach port 68 are counted under bootps.
func carriedStates(cat *catalog.Catalog, lines []ServiceSummary) {
	byID := map[uint16]int{}
	for i, l := range lines {
		byID[l.ServiceID] = i
	}
	for i := range lines {
		l := &lines[i]
		e := cat.Entry(catalog.ServiceID(l.ServiceID))
		if e == nil || !e.OnWire || e.CarriedBy == "" || l.State != StateNotSeen {
			continue
		}
		carrier := cat.ByKey(e.CarriedBy)
		if carrier == nil {
			continue
		}
		j, ok := byID[uint16(carrier.ID)]
		if !ok {
			continue
		}
		from := lines[j]
		l.State, l.Reason, l.ReturnPath, l.Affected, l.MoreAffected = from.State, from.Reason, from.ReturnPath, from.Affected, from.MoreAffected
		l.CarriedBy = e.CarriedBy
	}
}

// blockedPairs returns the blocked exchanges of each service, ordered by
// server and client.
func (c *Classifier) blockedPairs() map[catalog.ServiceID][]bpf.ExchangeKey {
	out := map[catalog.ServiceID][]bpf.ExchangeKey{}
	for x := range c.exchanges.all() {
		if x.reason != reasonNone {
			out[x.key.service] = append(out[x.key.service], x.key.unpack())
		}
	}
	for _, keys := range out {
		slices.SortFunc(keys, func(a, b bpf.ExchangeKey) int {
			return cmp.Or(a.Server.Compare(b.Server), a.Client.Compare(b.Client),
				slices.Compare(a.ClientMAC[:], b.ClientMAC[:]))
		})
	}
	return out
}
