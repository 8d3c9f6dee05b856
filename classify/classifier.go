package classify

import (
	"bytes"
	"cmp"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// Classifier turns successive snapshots into verdict events. It implements
// the verdicts of docs/events.md ("Verdicts and reasons") as follows.
//
// Windows and deltas. Update takes one snapshot per window and works on the
// difference from the previous one, per exchange. An exchange missing from
// the snapshot was evicted from the kernel's bounded table: it is forgotten
// without an event (at the latest one window later, see Update), except
// that a blocked exchange is kept as blocked, with its counters folded
// away, so that the summary still lists it and, should it come back, it is
// not announced twice. An exchange whose counters went down was evicted and
// created again: its current counters are the delta. Events count over the
// exchange's whole life, across such incarnations.
//
// Attempts and answers. An attempt is what the packet layer counts in
// Attempts (a SYN, its retransmits not included; a UDP request; a DHCP
// DISCOVER or REQUEST). A window "answers" an exchange when it holds an
// answer that reached the client: for request-reply and DHCP services, more
// answers than ICMP errors quoting answers (ReturnBlocked); for
// ephemeral-reply services (TFTP), a follow-up from the client to the
// server's new port, since the answer itself proves nothing about its way
// back. Per exchange the classifier keeps the attempts made since the last
// answer and an estimate of when the first of them was seen: the exchange's
// FirstSeen when it is new in the window (or was created again), otherwise
// its LastSeen in that window. LastSeen is the latest time the first new
// attempt can have, so the estimate never makes attempts look more spread
// out than they were: a burst of parallel requests just before a window
// boundary is not taken for slow retries, at the cost of a verdict that
// may come one window later. Slow retries across windows add up.
//
// Blocked. An exchange of a service on the wire becomes blocked, in a window
// that does not answer it, on the first of:
//   - an ICMP error quoting a request: administratively prohibited gives
//     icmp-admin-prohibited, port unreachable gives icmp-port-unreachable;
//   - a reset from the server while some attempt is unanswered (a reset
//     that answers no attempt closes an established connection): reset;
//   - an ICMP error quoting an answer (ReturnBlocked): no-reply, on the
//     return path;
//   - at least MinAttempts unanswered attempts whose first and last are at
//     least MinSpan apart: no-reply. When the service got answers in that
//     time that never reached the client (TFTP answers never followed up),
//     the block is on the return path. A TFTP ERROR answer is never
//     followed up either, but the client does not retry it, so it stays
//     below MinAttempts.
//
// When several reasons apply the preference is icmp-admin-prohibited, then
// icmp-port-unreachable, reset, no-reply. One-way services (syslog/udp,
// snmptrap/udp; also the client-port row of DHCP) expect no answer and are
// judged on ICMP errors only; such a block clears after MinAttempts requests
// over MinSpan without an ICMP error. Rows never on the wire are not judged.
//
// Events. Only changes of state are events. A block of a row that the
// active profiles require is a required_port_blocked event; any other row
// is blocked silently and shown in the summary. A blocked exchange that is
// answered again emits cleared if its block was announced. A stronger
// reason arriving while blocked (no-reply, then an ICMP error) replaces the
// reason in the summary and in Blocked, without an event: the exchange did
// not change state, and a firewall that both drops and rejects would
// otherwise alternate events. After SetCatalog, blocks of rows that became
// required are announced at the next Update. unexpected_port_open is
// emitted once per (protocol, server, port), when it first answered.
//
// Scope. With MgmtNets set, exchanges and unexpected ports whose server is
// outside them are ignored altogether. DHCP exchanges have no server and
// are always in scope.
//
// One-sided capture. See oneSidedRule for the exact thresholds. While the
// capture is one-sided no exchange becomes blocked on silence (no-reply
// from attempts alone); ICMP errors and resets still count, as they are
// packets the capture did see. capture_one_sided is emitted once per run.
//
// A Classifier is safe for concurrent use: a metrics scrape may call Blocked
// while the main loop calls Update.
type Classifier struct {
	mu  sync.Mutex
	cfg Config
	cat *catalog.Catalog

	minAttempts uint64
	minSpan     int64 // nanoseconds

	svc [catalog.MaxServiceID + 1]serviceState

	exchanges exchangeTable
	live      int    // exchanges present in the last snapshot
	gen       uint32 // counts Updates

	unexpected map[bpf.UnexpectedKey]*unexpectedPort

	counters   []bpf.ServiceCounters // the last snapshot's per-service counters
	start, end time.Time
	loc        *time.Location

	oneSided      bool
	saidOneSided  bool
	unseenAnswers bool // some TFTP client followed up answers the capture never showed
	recheck       bool // the catalog changed: announce blocks of rows now required

	// newestSeen is the latest LastSeen of any exchange so far (Unix
	// nanoseconds, the clock of the snapshots' packets); fullPass asks the
	// next Update to look every exchange up. See Update.
	newestSeen int64
	fullPass   bool

	// Scratch space reused by every Update.
	deferred    []deferredBlock
	verdicts    []exchangeVerdict
	newPorts    []unexpectedVerdict
	oneSidedMsg string // the window's capture_one_sided message, if any
}

// judgement says how a service's exchanges are judged.
type judgement uint8

const (
	judgeNothing   judgement = iota // no catalog row, or a row never on the wire
	judgeAnswers                    // request-reply and DHCP: answered by an answer
	judgeFollowups                  // ephemeral-reply: answered when the client follows up
	judgeICMPOnly                   // one-way: nothing answers; only ICMP errors tell
)

// serviceState is the classifier's view of one catalog row.
type serviceState struct {
	entry *catalog.Entry
	judge judgement
	alarm bool // a block is a required_port_blocked event

	// Run totals over the row's in-scope exchanges, for the summary and the
	// one-sided rule. An exchange forgotten and seen again counts twice.
	exchanges  int // exchanges seen
	attempted  int // ... with at least one attempt
	answered   int // ... with at least one answer the observer saw
	answerOnly int // ... with answers and no attempt the observer saw
	confirmed  int // ... answered in some window

	blocked [numReasons]int // exchanges blocked now, by reason
	// returnBlocked counts those of them the server answered, the answer
	// lost on its way back.
	returnBlocked int
}

func (s *serviceState) blockedNow() int {
	n := 0
	for _, b := range s.blocked {
		n += b
	}
	return n
}

// strongest returns the strongest reason among the blocked exchanges.
func (s *serviceState) strongest() reasonCode {
	for r := numReasons - 1; r > reasonNone; r-- {
		if s.blocked[r] > 0 {
			return r
		}
	}
	return reasonNone
}

// deferredBlock is an exchange that silence would make blocked, held until
// the one-sided rule has seen the whole window.
type deferredBlock struct {
	x          *exchange
	returnPath bool
}

// unexpectedPort is what the classifier remembers of an answered port in no
// catalog row.
type unexpectedPort struct {
	first, last time.Time
	answers     uint64 // over the whole run
	seen        uint64 // the current incarnation's answers at the last snapshot
	clients     []netip.Addr
	announced   bool
}

// New returns a classifier for cfg.
func New(cfg Config) (*Classifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Classifier{
		cfg:         cfg,
		minAttempts: uint64(cfg.MinAttempts),
		minSpan:     int64(cfg.MinSpan),
		exchanges:   newExchangeTable(),
		unexpected:  make(map[bpf.UnexpectedKey]*unexpectedPort),
	}
	c.bindCatalog(cfg.Catalog)
	return c, nil
}

// SetCatalog replaces the catalog (a learned dynamic port, an override file
// reloaded) and keeps every exchange's state. Exchanges of rows that left
// the catalog or the wire are dropped. A nil catalog is ignored.
func (c *Classifier) SetCatalog(cat *catalog.Catalog) {
	if cat == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bindCatalog(cat) {
		c.exchanges.deleteIf(func(x *exchange) bool {
			if c.svc[x.key.service].judge != judgeNothing {
				return false
			}
			if !x.has(flagAbsent) {
				c.live--
			}
			return true
		})
	}
	c.recheck = true
	c.fullPass = true
}

// bindCatalog points every service at its row in cat. It reports whether a
// row that was judged no longer is, whose exchanges must then be dropped.
func (c *Classifier) bindCatalog(cat *catalog.Catalog) (dropped bool) {
	c.cat = cat
	for id := range c.svc {
		s := &c.svc[id]
		was := s.judge
		s.entry = cat.Entry(catalog.ServiceID(id))
		s.judge = judgeNothing
		s.alarm = false
		if s.entry != nil && s.entry.OnWire {
			switch s.entry.Pattern {
			case catalog.PatternEphemeralReply:
				s.judge = judgeFollowups
			case catalog.PatternOneWay, catalog.PatternClientPort:
				s.judge = judgeICMPOnly
			default:
				s.judge = judgeAnswers
			}
			s.alarm = cat.IsRequired(s.entry)
		}
		if was != judgeNothing && s.judge == judgeNothing {
			*s = serviceState{entry: s.entry}
			dropped = true
		}
	}
	return dropped
}

// Began tells when observation began (observe: the attach; analyze: the
// first packet), which the summary's window starts at unless an exchange
// was seen earlier. Without it the window starts at the first snapshot,
// one window late.
func (c *Classifier) Began(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.IsZero() && (c.start.IsZero() || t.Before(c.start)) {
		c.start = t
	}
}

// Update judges one window: s is the snapshot taken at the window's end.
// It returns the window's events in a stable order: capture_one_sided
// first, then exchange verdicts by service, server and client, then
// unexpected ports.
func (c *Classifier) Update(s bpf.Snapshot) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.gen++
	c.deferred = c.deferred[:0]
	c.verdicts = c.verdicts[:0]
	c.newPorts = c.newPorts[:0]
	c.oneSidedMsg = ""
	c.loc = s.Time.Location()
	if c.start.IsZero() || (!s.Time.IsZero() && s.Time.Before(c.start)) {
		c.start = s.Time
	}
	if s.Time.After(c.end) {
		c.end = s.Time
	}
	c.counters = append(c.counters[:0], s.Services...)

	// An exchange whose LastSeen is older than the previous snapshots'
	// newest packet (less a margin for the time the kernel maps take to
	// read) has not changed since: it needs no lookup, which makes a
	// window over a large, mostly idle table cheap. Only a full pass tells
	// which exchanges vanished, so one runs after a window whose count
	// shows that some did (or that the snapshots had missed one), and
	// after a catalog change. A LastSeen later than the snapshot itself (a
	// damaged capture timestamp) is not trusted as the newest packet.
	full := c.fullPass || c.newestSeen == 0
	cutoff := c.newestSeen - int64(unchangedMargin)
	ceiling := nanos(s.Time)
	if ceiling == 0 {
		ceiling = math.MaxInt64
	}
	present := 0
	for i := range s.Exchanges {
		k, cur := s.Exchanges[i].Key, s.Exchanges[i].Counters
		if int(k.Service) >= len(c.svc) {
			continue
		}
		svc := &c.svc[k.Service]
		if svc.judge == judgeNothing || !c.inScope(k.Server) {
			continue
		}
		present++
		last := nanos(cur.LastSeen)
		if last > c.newestSeen && last <= ceiling {
			c.newestSeen = last
		}
		if !full && last != 0 && last < cutoff {
			continue
		}
		c.observe(k, &cur, svc)
	}
	c.fullPass = false
	switch {
	case full && present < c.live:
		c.forgetEvicted()
	case !full && present != c.live:
		// Some exchanges vanished, or an unchanged one is not tracked
		// (a snapshot that missed it): the next pass sorts it out.
		c.fullPass = true
	}
	c.observeUnexpected(s)

	if oneSided, msg := c.oneSidedRule(); oneSided != c.oneSided {
		c.oneSided = oneSided
		if oneSided && !c.saidOneSided {
			c.saidOneSided = true
			c.oneSidedMsg = msg
		}
	}
	if !c.oneSided {
		for _, d := range c.deferred {
			c.block(d.x, &c.svc[d.x.key.service], reasonNoReply, d.returnPath)
		}
	}
	if c.recheck {
		c.recheck = false
		c.announceNewlyRequired()
	}

	out := c.events(s.Time)
	// Scratch space grown by a burst of verdicts is not kept for ever.
	if cap(c.verdicts) > maxKeptScratch {
		c.verdicts = nil
	}
	if cap(c.deferred) > maxKeptScratch {
		c.deferred = nil
	}
	return out
}

// unchangedMargin is how much older than the newest packet of the previous
// snapshot an exchange's LastSeen must be for Update to take it as unchanged.
// It covers a snapshot read that is not instantaneous: a packet counted just
// after its exchange was read can be older than the newest packet read.
const unchangedMargin = time.Second

// maxKeptScratch bounds the event and deferred-block buffers kept between
// windows.
const maxKeptScratch = 4096

func (c *Classifier) inScope(server netip.Addr) bool {
	if len(c.cfg.MgmtNets) == 0 || !server.IsValid() {
		return true
	}
	a := server.Unmap()
	for _, p := range c.cfg.MgmtNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// observe takes one exchange's counters from the snapshot.
func (c *Classifier) observe(k bpf.ExchangeKey, cur *bpf.ExchangeCounters, svc *serviceState) {
	pk := packKey(k)
	x := c.exchanges.get(&pk)
	seen := countsOf(cur)
	var delta counts
	fresh := false // the exchange (or this incarnation of it) began in the window
	switch {
	case x == nil:
		x = &exchange{key: pk, firstSeen: nanos(cur.FirstSeen)}
		c.exchanges.add(x)
		c.live++
		svc.exchanges++
		if !cur.FirstSeen.IsZero() && cur.FirstSeen.Before(c.start) {
			c.start = cur.FirstSeen
		}
		delta, fresh = seen, true
	case x.has(flagAbsent):
		x.flags &^= flagAbsent
		c.live++
		delta, fresh = seen, true
	case seen.fellFrom(x.seen):
		x.retire()
		delta, fresh = seen, true
	default:
		delta = seen.minus(x.seen)
	}
	x.gen = c.gen
	x.seen = seen
	if last := nanos(cur.LastSeen); last > x.lastSeen {
		x.lastSeen = last
	}
	if delta == (counts{}) {
		return
	}
	c.tally(x, svc, delta)

	// The first unanswered attempt of this window was seen no later than
	// LastSeen; for an exchange born in the window, FirstSeen is exact.
	since := nanos(cur.LastSeen)
	if fresh {
		since = nanos(cur.FirstSeen)
	}
	addPending := func() {
		if delta.attempts == 0 {
			return
		}
		if x.pending == 0 {
			x.pendingSince = since
		}
		x.pending += delta.attempts
	}

	if svc.judge == judgeICMPOnly {
		if r := icmpReason(delta); r != reasonNone {
			x.pending = 0
			c.block(x, svc, r, false)
			return
		}
		addPending()
		if x.reason != reasonNone && c.enoughAttempts(x) {
			c.clear(x, svc)
		}
		return
	}

	var answered bool
	if svc.judge == judgeFollowups {
		answered = delta.followups > 0
	} else {
		answered = delta.answers > delta.returnBlocked
	}
	if answered {
		x.pending = 0
		x.flags &^= flagAnsweredUnconfirmed
		if !x.has(flagEverConfirmed) {
			x.flags |= flagEverConfirmed
			svc.confirmed++
		}
		if x.reason != reasonNone {
			c.clear(x, svc)
		}
		return
	}
	if delta.answers > 0 {
		x.flags |= flagAnsweredUnconfirmed
	}
	addPending()
	r := icmpReason(delta)
	if r == reasonNone && delta.resets > 0 && x.pending > 0 {
		r = reasonReset
	}
	switch {
	case r != reasonNone:
		c.block(x, svc, r, false)
	case delta.returnBlocked > 0 && x.pending > 0:
		// An answer refused on its way back blocks only an exchange
		// still waiting for one: a late duplicate answer (a retry's, a
		// TFTP server resending its last block) refused after the client
		// had its answer and left proves nothing.
		c.block(x, svc, reasonNoReply, true)
	case x.reason == reasonNone && c.enoughAttempts(x):
		c.deferred = append(c.deferred, deferredBlock{x: x, returnPath: x.has(flagAnsweredUnconfirmed)})
	}
}

// tally keeps the service's run totals for the summary and the one-sided rule.
func (c *Classifier) tally(x *exchange, svc *serviceState, d counts) {
	if d.attempts > 0 && !x.has(flagEverAttempted) {
		x.flags |= flagEverAttempted
		svc.attempted++
		if x.has(flagEverAnswered) {
			svc.answerOnly--
		}
	}
	if d.answers > 0 && !x.has(flagEverAnswered) {
		x.flags |= flagEverAnswered
		svc.answered++
		if !x.has(flagEverAttempted) {
			svc.answerOnly++
		}
	}
	if d.followups > 0 && !x.has(flagEverAnswered) && svc.judge == judgeFollowups {
		c.unseenAnswers = true
	}
}

// enoughAttempts reports whether the exchange's pending attempts are enough
// evidence: at least MinAttempts, the first and last at least MinSpan apart.
func (c *Classifier) enoughAttempts(x *exchange) bool {
	return x.pending >= c.minAttempts && x.lastSeen-x.pendingSince >= c.minSpan
}

// block makes the exchange blocked for reason r, or strengthens the reason
// of a block.
func (c *Classifier) block(x *exchange, svc *serviceState, r reasonCode, returnPath bool) {
	if x.reason != reasonNone {
		if r > x.reason {
			svc.blocked[x.reason]--
			svc.blocked[r]++
			x.reason = r
			if x.has(flagReturnPath) && !returnPath {
				// The stronger evidence (an ICMP error or a reset for a
				// request) is on the way in: no longer the return path.
				x.flags &^= flagReturnPath
				svc.returnBlocked--
			}
		}
		return
	}
	x.reason = r
	svc.blocked[r]++
	x.flags &^= flagReturnPath
	if returnPath {
		x.flags |= flagReturnPath
		svc.returnBlocked++
	}
	if svc.alarm {
		x.flags |= flagAnnounced
		c.verdicts = append(c.verdicts, exchangeVerdict{key: x.key, x: x, verdict: RequiredPortBlocked, reason: r})
	}
}

// clear ends the exchange's block.
func (c *Classifier) clear(x *exchange, svc *serviceState) {
	was := x.reason
	svc.blocked[was]--
	if x.has(flagReturnPath) {
		svc.returnBlocked--
	}
	x.reason = reasonNone
	if x.has(flagAnnounced) {
		c.verdicts = append(c.verdicts, exchangeVerdict{key: x.key, x: x, verdict: Cleared, reason: was})
	}
	x.flags &^= flagAnnounced | flagReturnPath
}

// forgetEvicted drops the exchanges that left the snapshot. Blocked ones stay,
// marked absent, so that the block is still known.
func (c *Classifier) forgetEvicted() {
	c.exchanges.deleteIf(func(x *exchange) bool {
		if x.gen == c.gen || x.has(flagAbsent) {
			return false
		}
		c.live--
		if x.reason == reasonNone {
			return true
		}
		x.retire()
		x.flags |= flagAbsent
		return false
	})
}

// announceNewlyRequired emits the blocks that were silent because their row
// was not required, now that the catalog requires it.
func (c *Classifier) announceNewlyRequired() {
	for x := range c.exchanges.all() {
		svc := &c.svc[x.key.service]
		if x.reason == reasonNone || x.has(flagAnnounced) || !svc.alarm {
			continue
		}
		x.flags |= flagAnnounced
		c.verdicts = append(c.verdicts, exchangeVerdict{key: x.key, x: x, verdict: RequiredPortBlocked, reason: x.reason})
	}
}

func (c *Classifier) observeUnexpected(s bpf.Snapshot) {
	for k, cur := range s.Unexpected {
		if !c.inScope(k.Server) || c.cat.Expected(k.Proto, k.Port) {
			continue
		}
		u := c.unexpected[k]
		if u == nil {
			u = &unexpectedPort{first: cur.FirstSeen}
			c.unexpected[k] = u
		}
		if cur.Answers < u.seen {
			u.answers += cur.Answers
		} else {
			u.answers += cur.Answers - u.seen
		}
		u.seen = cur.Answers
		if cur.LastSeen.After(u.last) {
			u.last = cur.LastSeen
		}
		if cur.Client.IsValid() && len(u.clients) < c.cfg.AffectedCap && !slices.Contains(u.clients, cur.Client) {
			u.clients = append(u.clients, cur.Client)
		}
		if u.announced || u.answers == 0 {
			continue
		}
		u.announced = true
		c.newPorts = append(c.newPorts, unexpectedVerdict{key: k, port: u, client: cur.Client})
	}
}

// exchangeVerdict is a verdict reached on an exchange in this window; its
// event is built once the window is judged.
type exchangeVerdict struct {
	key     stateKey // a copy of x.key: sorting compares keys without chasing x
	x       *exchange
	verdict Verdict
	reason  reasonCode // for cleared: the reason the block had
}

// unexpectedVerdict is a port in no catalog row that answered for the first
// time in this window.
type unexpectedVerdict struct {
	key    bpf.UnexpectedKey
	port   *unexpectedPort
	client netip.Addr
}

// events builds the window's events, in a stable order: capture_one_sided,
// then exchange verdicts by service, server and client, then unexpected
// ports by protocol, server and port. Building them at the end rather than
// as verdicts arise lets a window in which a whole burst becomes blocked
// allocate its events once.
func (c *Classifier) events(now time.Time) []Event {
	n := len(c.verdicts) + len(c.newPorts)
	if c.oneSidedMsg != "" {
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]Event, 0, n)
	if c.oneSidedMsg != "" {
		out = append(out, Event{Time: now, Verdict: CaptureOneSided, Observer: c.cfg.Observer, Message: c.oneSidedMsg})
	}
	slices.SortFunc(c.verdicts, func(a, b exchangeVerdict) int {
		ka, kb := &a.key, &b.key
		return cmp.Or(
			cmp.Compare(ka.service, kb.service),
			bytes.Compare(ka.server[:], kb.server[:]),
			bytes.Compare(ka.client[:], kb.client[:]),
			bytes.Compare(ka.mac[:], kb.mac[:]),
			cmp.Compare(a.verdict, b.verdict),
		)
	})
	for _, v := range c.verdicts {
		out = append(out, c.exchangeEvent(v, now))
	}
	slices.SortFunc(c.newPorts, func(a, b unexpectedVerdict) int {
		return cmp.Or(cmp.Compare(a.key.Proto, b.key.Proto), a.key.Server.Compare(b.key.Server), cmp.Compare(a.key.Port, b.key.Port))
	})
	for _, v := range c.newPorts {
		out = append(out, Event{
			Time:      now,
			Verdict:   UnexpectedPortOpen,
			Proto:     v.key.Proto.String(),
			Port:      v.key.Port,
			Client:    addrString(v.client),
			Server:    addrString(v.key.Server),
			Answers:   v.port.answers,
			FirstSeen: v.port.first,
			LastSeen:  v.port.last,
			Observer:  c.cfg.Observer,
			Message:   unexpectedMessage(v.key, v.client),
		})
	}
	return out
}

// exchangeEvent builds a blocked or cleared event with its evidence.
func (c *Classifier) exchangeEvent(v exchangeVerdict, now time.Time) Event {
	x := v.x
	svc := &c.svc[x.key.service]
	e := svc.entry
	k := x.key.unpack()
	client, server := clientString(k), addrString(k.Server)
	total := x.total()
	ev := Event{
		Time:          now,
		Verdict:       v.verdict,
		Service:       e.Name,
		ServiceID:     uint16(e.ID),
		Proto:         e.Proto.String(),
		Port:          e.Port,
		Reason:        reasonNames[v.reason],
		Required:      c.cat.IsRequired(e),
		Client:        client,
		Server:        server,
		Attempts:      total.attempts,
		Answers:       total.answers,
		Resets:        total.resets,
		ICMPClosed:    total.icmpClosed,
		ICMPFiltered:  total.icmpFiltered,
		ReturnBlocked: total.returnBlocked,
		ReturnPath:    v.verdict == RequiredPortBlocked && x.has(flagReturnPath),
		FirstSeen:     timeAt(x.firstSeen, c.loc),
		LastSeen:      timeAt(x.lastSeen, c.loc),
		Observer:      c.cfg.Observer,
	}
	ev.Message = exchangeMessage(v.verdict, e, client, server, x, total, v.reason, svc.judge)
	return ev
}
