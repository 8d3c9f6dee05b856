package classify

import (
	"fmt"

	"portwatch/catalog"
)

// Thresholds of the one-sided rule.
const (
	// OneSidedMinExchanges is how many exchanges must show the pattern
	// before a capture is called one-sided.
	OneSidedMinExchanges = 20
	// OneSidedMinServices is how many services they must spread over: one
	// service alone unanswered is a blocked service, not a blind capture.
	OneSidedMinServices = 2
	// OneSidedTolerancePercent is the share of a service's exchanges that
	// may break the pattern (a stray answer, a request caught in passing).
	OneSidedTolerancePercent = 5
)

// oneSidedRule decides whether the capture sees one direction only, from the
// run so far. It considers the in-scope exchanges of services that expect
// an answer (request-reply, ephemeral-reply, DHCP); one-way services say
// nothing about it.
//
// Requests only, when all of these hold:
//  1. at least OneSidedMinExchanges exchanges made attempts, in at least
//     OneSidedMinServices services;
//  2. in every service with an exchange that made attempts or got answers,
//     at most OneSidedTolerancePercent of the exchanges that made attempts
//     were ever answered (a service with answers and no attempt fails);
//  3. the clients act on answers the capture does not show: on some TCP
//     service the clients sent packets other than SYNs (Requests > SYN:
//     they completed handshakes), while the servers' packets seen
//     (Replies) are at most OneSidedTolerancePercent of those (on a
//     connection the capture sees both ways, the server sends about as
//     many); or a TFTP client followed up answers the capture never showed.
//
// Condition 3 tells a one-sided capture from a firewall that drops every
// service (a new firewall with no rules yet): behind it the clients send
// nothing but SYNs and repeated requests, and verdicts are due. A
// provisioning burst with one service dropped fails condition 2, since the
// other services are answered.
//
// Answers only, when both hold:
//  1. at least OneSidedMinExchanges exchanges got answers without an
//     attempt the observer saw, in at least OneSidedMinServices services;
//  2. in every service with an exchange that made attempts or got answers,
//     at least 100-OneSidedTolerancePercent percent of those exchanges got
//     answers without an attempt.
//
// It returns the verdict and, when one-sided, the event's message.
func (c *Classifier) oneSidedRule() (bool, string) {
	var (
		attempted, attemptedServices   int
		answerOnly, answerOnlyServices int
		unanswered                     int
		requestsOnly, answersOnly      = true, true
		clientsActOnAnswers            = c.unseenAnswers
	)
	for id := range c.svc {
		s := &c.svc[id]
		if s.judge != judgeAnswers && s.judge != judgeFollowups {
			continue
		}
		if s.entry.Proto == catalog.TCP && id < len(c.counters) {
			sc := c.counters[id]
			if sc.Requests > sc.SYN && sc.Replies*100 <= (sc.Requests-sc.SYN)*OneSidedTolerancePercent {
				clientsActOnAnswers = true
			}
		}
		judged := s.attempted + s.answerOnly
		if judged == 0 {
			continue
		}
		if s.attempted > 0 {
			attempted += s.attempted
			attemptedServices++
			unanswered += s.attempted - (s.answered - s.answerOnly)
		}
		if s.answerOnly > 0 {
			answerOnly += s.answerOnly
			answerOnlyServices++
		}
		if s.answered*100 > s.attempted*OneSidedTolerancePercent {
			requestsOnly = false
		}
		if s.answerOnly*100 < judged*(100-OneSidedTolerancePercent) {
			answersOnly = false
		}
	}
	requestsOnly = requestsOnly && clientsActOnAnswers &&
		attempted >= OneSidedMinExchanges && attemptedServices >= OneSidedMinServices
	answersOnly = answersOnly &&
		answerOnly >= OneSidedMinExchanges && answerOnlyServices >= OneSidedMinServices
	switch {
	case requestsOnly:
		return true, fmt.Sprintf("the capture shows one direction only: %d of %d exchanges on %d services that made attempts were never answered, yet the clients act on answers it does not show; verdicts on silence are suspended while this lasts",
			unanswered, attempted, attemptedServices)
	case answersOnly:
		return true, fmt.Sprintf("the capture shows one direction only: %d exchanges on %d services were answered but it shows none of their requests",
			answerOnly, answerOnlyServices)
	}
	return false, ""
}
