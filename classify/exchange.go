package classify

import (
	"time"

	"portwatch/bpf"
)

// counts are the counters of one exchange, without its times.
type counts struct {
	attempts, retransmits, answers, resets uint64
	icmpClosed, icmpFiltered, icmpOther    uint64
	returnBlocked, followups               uint64
}

func countsOf(c *bpf.ExchangeCounters) counts {
	return counts{
		attempts:      c.Attempts,
		retransmits:   c.Retransmits,
		answers:       c.Answers,
		resets:        c.Resets,
		icmpClosed:    c.ICMPClosed,
		icmpFiltered:  c.ICMPFiltered,
		icmpOther:     c.ICMPOther,
		returnBlocked: c.ReturnBlocked,
		followups:     c.Followups,
	}
}

// fellFrom reports whether any counter is below its value in prev: counters
// only grow, so the exchange was evicted and created again.
func (c counts) fellFrom(prev counts) bool {
	return c.attempts < prev.attempts || c.retransmits < prev.retransmits ||
		c.answers < prev.answers || c.resets < prev.resets ||
		c.icmpClosed < prev.icmpClosed || c.icmpFiltered < prev.icmpFiltered ||
		c.icmpOther < prev.icmpOther || c.returnBlocked < prev.returnBlocked ||
		c.followups < prev.followups
}

// minus returns c - prev; callers check fellFrom first.
func (c counts) minus(prev counts) counts {
	return counts{
		attempts:      c.attempts - prev.attempts,
		retransmits:   c.retransmits - prev.retransmits,
		answers:       c.answers - prev.answers,
		resets:        c.resets - prev.resets,
		icmpClosed:    c.icmpClosed - prev.icmpClosed,
		icmpFiltered:  c.icmpFiltered - prev.icmpFiltered,
		icmpOther:     c.icmpOther - prev.icmpOther,
		returnBlocked: c.returnBlocked - prev.returnBlocked,
		followups:     c.followups - prev.followups,
	}
}

func (c counts) plus(o counts) counts {
	return counts{
		attempts:      c.attempts + o.attempts,
		retransmits:   c.retransmits + o.retransmits,
		answers:       c.answers + o.answers,
		resets:        c.resets + o.resets,
		icmpClosed:    c.icmpClosed + o.icmpClosed,
		icmpFiltered:  c.icmpFiltered + o.icmpFiltered,
		icmpOther:     c.icmpOther + o.icmpOther,
		returnBlocked: c.returnBlocked + o.returnBlocked,
		followups:     c.followups + o.followups,
	}
}

// reasonCode is a Reason as a small integer whose order is the preference
// between reasons: when several apply, the highest wins.
type reasonCode uint8

const (
	reasonNone reasonCode = iota
	reasonNoReply
	reasonReset
	reasonPortUnreachable
	reasonAdminProhibited
	numReasons
)

var reasonNames = [numReasons]Reason{
	reasonNone:            "",
	reasonNoReply:         ReasonNoReply,
	reasonReset:           ReasonReset,
	reasonPortUnreachable: ReasonICMPPortUnreachable,
	reasonAdminProhibited: ReasonICMPAdminProhibited,
}

// icmpReason is the reason an ICMP error of the window gives, if any.
func icmpReason(d counts) reasonCode {
	switch {
	case d.icmpFiltered > 0:
		return reasonAdminProhibited
	case d.icmpClosed > 0:
		return reasonPortUnreachable
	}
	return reasonNone
}

// exchangeFlags are the yes/no facts of an exchange.
type exchangeFlags uint8

const (
	// absent: evicted from the snapshot while blocked; kept so that the
	// block stays in the summary and is not announced twice.
	flagAbsent exchangeFlags = 1 << iota
	// announced: a required_port_blocked event was emitted for the current
	// block, so its end is worth a cleared event.
	flagAnnounced
	// returnPath: the current block is on the way back (answered, never
	// followed up, or answers refused by ICMP).
	flagReturnPath
	// answeredUnconfirmed: answers came since the pending attempts began,
	// but none was confirmed (no follow-up, or refused on its way back).
	flagAnsweredUnconfirmed
	flagEverAttempted
	flagEverAnswered
	flagEverConfirmed
)

// exchange is what the classifier remembers of one exchange between windows.
// It is kept small: a busy management network tracks 100,000 of them.
type exchange struct {
	key  stateKey
	next *exchange // the next exchange with the same fingerprint
	// seen holds the counters of the exchange's current incarnation at the
	// last snapshot: the base of the next window's delta.
	seen counts
	// past sums the counters of earlier incarnations (nil until the
	// exchange is evicted and created again), so that events count over
	// the exchange's whole life.
	past *counts
	// firstSeen and lastSeen bound the exchange's life, in Unix nanoseconds.
	firstSeen, lastSeen int64
	// pending counts the attempts since the exchange was last answered (for
	// a one-way service: since its last ICMP error); pendingSince is when
	// the first of them was seen, in Unix nanoseconds.
	pending      uint64
	pendingSince int64
	// gen is the Update in which the exchange was last in a snapshot.
	gen    uint32
	reason reasonCode // reasonNone unless blocked
	flags  exchangeFlags
}

func (x *exchange) has(f exchangeFlags) bool { return x.flags&f != 0 }

// total returns the counts over the exchange's whole life.
func (x *exchange) total() counts {
	if x.past == nil {
		return x.seen
	}
	return x.past.plus(x.seen)
}

// retire folds the current incarnation's counters into past: the exchange
// left the kernel's table (evicted) and may come back from zero.
func (x *exchange) retire() {
	if x.seen == (counts{}) {
		return
	}
	if x.past == nil {
		x.past = new(counts)
	}
	*x.past = x.past.plus(x.seen)
	x.seen = counts{}
}

// nanos converts a time to Unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// timeAt converts Unix nanoseconds back to a time in loc; 0 is the zero time.
func timeAt(ns int64, loc *time.Location) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	if loc == nil {
		loc = time.UTC
	}
	return time.Unix(0, ns).In(loc)
}
