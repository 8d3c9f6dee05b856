package probe

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"portwatch/catalog"
)

// State is a probe's verdict on one catalog row of one target.
type State string

// States. The first five come from the probe alone, as nmap's port states
// do; blocked-inbound, service-silent and blocked-return need an observer
// on the far side (Refine).
const (
	// StateOpen: the service answered (a SYN-ACK, a protocol reply), or for
	// a one-way service the observer saw the request arrive.
	StateOpen State = "open"
	// StateClosed: a TCP reset, or ICMP port unreachable: the packet got
	// there and nothing listens.
	StateClosed State = "closed"
	// StateFiltered: ICMP administratively prohibited: a firewall refused.
	StateFiltered State = "filtered"
	// StateUnreachable: ICMP host or network unreachable (the host is down
	// or not routed), or no ARP answer for it.
	StateUnreachable State = "unreachable"
	// StateNoAnswer: nothing came back within the timeout, after retries.
	StateNoAnswer State = "no-answer"
	// StateBlockedInbound: the observer never saw the request arrive.
	StateBlockedInbound State = "blocked-inbound"
	// StateServiceSilent: the request arrived and nothing answered it.
	StateServiceSilent State = "service-silent"
	// StateBlockedReturn: the server answered and the answer never reached
	// the probe (a stateful firewall without a TFTP helper, an asymmetric
	// rule).
	StateBlockedReturn State = "blocked-return"
	// StateUntestable: the row has no request its service answers
	// (docs/probe.md says why, row by row). It does not fail the run.
	StateUntestable State = "untestable"
	// StateError: the probe could not be made (no privilege for a raw
	// socket, a port rpcbind did not give, no route). It fails the run.
	StateError State = "error"
)

// Passes reports whether the state lets a required row pass the gate: the
// row is open, or it has no request to test it with.
func (s State) Passes() bool { return s == StateOpen || s == StateUntestable }

// Unconfirmed reports a one-way row (syslog, the empty datagram of a
// service with no harmless request) that drew no error: nothing answers
// it, so without an observer silence proves nothing either way. It does
// not fail the gate; --observer confirms it (open) or not (blocked-inbound).
func (r Result) Unconfirmed() bool { return r.State == StateNoAnswer && r.Reason == ReasonOneWay }

// Reason is the short, stable token for the evidence behind a state.
type Reason string

// Reasons.
const (
	ReasonSYNACK              Reason = "syn-ack"
	ReasonReply               Reason = "reply"
	ReasonReset               Reason = "reset"
	ReasonICMPPortUnreachable Reason = "icmp-port-unreachable"
	ReasonICMPAdminProhibited Reason = "icmp-admin-prohibited"
	ReasonICMPHostUnreachable Reason = "icmp-host-unreachable"
	ReasonICMPNetUnreachable  Reason = "icmp-net-unreachable"
	ReasonICMPOther           Reason = "icmp-unreachable"
	ReasonNoReply             Reason = "no-reply"
	// ReasonOneWay: a one-way service (syslog) sent nothing back, as it
	// never does: only an ICMP error or the observer can judge it.
	ReasonOneWay Reason = "one-way"
	// ReasonArrived: the observer saw a one-way request arrive.
	ReasonArrived Reason = "arrived"
	// ReasonNotArrived: the observer never saw the request.
	ReasonNotArrived Reason = "not-arrived"
	// ReasonReplyLost: the observer saw the server answer; the probe never
	// got the answer.
	ReasonReplyLost   Reason = "reply-lost"
	ReasonNoRequest   Reason = "no-request"
	ReasonNoPrivilege Reason = "no-privilege"
	ReasonPortUnknown Reason = "port-unknown"
	ReasonLocalError  Reason = "local-error"
)

// ICMPError is an ICMP or ICMPv6 error the kernel matched to a probe's
// socket, read from its error queue.
type ICMPError struct {
	V6         bool
	Type, Code uint8
	// From is the host that sent the error: the target itself, a router or
	// firewall on the way, or this host (no ARP answer).
	From netip.Addr
}

// classify maps the error to a state and reason.
func (e ICMPError) classify() (State, Reason) {
	if e.V6 {
		if e.Type != 1 { // destination unreachable
			return StateUnreachable, ReasonICMPOther
		}
		switch e.Code {
		case 4:
			return StateClosed, ReasonICMPPortUnreachable
		case 1, 5, 6: // admin prohibited, ingress/egress policy, reject route
			return StateFiltered, ReasonICMPAdminProhibited
		case 0:
			return StateUnreachable, ReasonICMPNetUnreachable
		case 3:
			return StateUnreachable, ReasonICMPHostUnreachable
		}
		return StateUnreachable, ReasonICMPOther
	}
	if e.Type != 3 {
		return StateUnreachable, ReasonICMPOther
	}
	switch e.Code {
	case 3:
		return StateClosed, ReasonICMPPortUnreachable
	case 9, 10, 13: // network, host, communication administratively prohibited
		return StateFiltered, ReasonICMPAdminProhibited
	case 0, 6:
		return StateUnreachable, ReasonICMPNetUnreachable
	case 1, 7:
		return StateUnreachable, ReasonICMPHostUnreachable
	}
	return StateUnreachable, ReasonICMPOther
}

func (e ICMPError) String() string {
	name := "ICMP"
	if e.V6 {
		name = "ICMPv6"
	}
	_, reason := e.classify()
	what := map[Reason]string{
		ReasonICMPPortUnreachable: "port unreachable",
		ReasonICMPAdminProhibited: "administratively prohibited",
		ReasonICMPHostUnreachable: "host unreachable",
		ReasonICMPNetUnreachable:  "network unreachable",
	}[reason]
	if what == "" {
		what = "error"
	}
	return fmt.Sprintf("%s %s (type %d code %d) from %s", name, what, e.Type, e.Code, e.From)
}

// Result is one catalog row probed on one target.
type Result struct {
	// Target is the target as given; Address the address probed.
	Target  string
	Address netip.Addr
	// Source is the probe's own address (and port, when one socket did the
	// whole probe); ClientMAC the client hardware address of a DHCP probe.
	Source    netip.AddrPort
	ClientMAC net.HardwareAddr

	Service   string
	ServiceID catalog.ServiceID
	Proto     catalog.Proto
	Port      uint16
	// Required: the active profiles require the row; Status is its
	// standing in the catalog (required, optional, not-in-profile).
	Required bool
	Status   catalog.Status

	// Request names what was sent (docs/probe.md): "tcp-connect",
	// "dhcp-discover", "tftp-rrq", ...
	Request string
	State   State
	Reason  Reason
	// ProbeReason is what the probe itself saw, when the observer changed
	// the state (a reset that never came from the server is
	// blocked-inbound with ProbeReason reset).
	ProbeReason Reason
	Evidence    string
	// RTT is from the request that was answered to its answer; zero when
	// nothing answered.
	RTT time.Duration
	// Attempts counts the requests sent (a TCP connect counts once; the
	// kernel retransmits its SYN).
	Attempts int
	ICMP     *ICMPError
	// Observer is what the far side saw, after Refine.
	Observer *ObserverDelta

	Start, End time.Time
}

// Key names the row of the result: "name/proto".
func (r *Result) Key() string { return r.Service + "/" + r.Proto.String() }

// resultJSON is the stable JSON schema of a result (docs/probe.md).
type resultJSON struct {
	Target    string         `json:"target"`
	Address   string         `json:"address,omitempty"`
	Service   string         `json:"service"`
	ServiceID uint16         `json:"service_id"`
	Proto     string         `json:"proto"`
	Port      uint16         `json:"port"`
	Required  bool           `json:"required"`
	Status    string         `json:"status"`
	Request   string         `json:"request"`
	State     State          `json:"state"`
	Reason    Reason         `json:"reason"`
	Probe     Reason         `json:"probe_reason,omitempty"`
	Evidence  string         `json:"evidence"`
	RTTms     *float64       `json:"rtt_ms"`
	Attempts  int            `json:"attempts"`
	Source    string         `json:"source,omitempty"`
	ClientMAC string         `json:"client_mac,omitempty"`
	ICMP      *icmpJSON      `json:"icmp,omitempty"`
	Observer  *ObserverDelta `json:"observer,omitempty"`
	Start     time.Time      `json:"start,omitzero"`
	End       time.Time      `json:"end,omitzero"`
}

type icmpJSON struct {
	Type uint8  `json:"type"`
	Code uint8  `json:"code"`
	From string `json:"from"`
	V6   bool   `json:"v6,omitempty"`
}

// MarshalJSON writes the result in the schema of docs/probe.md.
func (r Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		Target: r.Target, Service: r.Service, ServiceID: uint16(r.ServiceID),
		Proto: r.Proto.String(), Port: r.Port, Required: r.Required, Status: string(r.Status),
		Request: r.Request, State: r.State, Reason: r.Reason, Probe: r.ProbeReason, Evidence: r.Evidence,
		Attempts: r.Attempts, Observer: r.Observer, Start: r.Start, End: r.End,
	}
	if r.Address.IsValid() {
		j.Address = r.Address.String()
	}
	if r.RTT > 0 {
		ms := math.Round(float64(r.RTT.Microseconds())) / 1000
		j.RTTms = &ms
	}
	if r.Source.IsValid() {
		if r.Source.Port() == 0 {
			j.Source = r.Source.Addr().String()
		} else {
			j.Source = r.Source.String()
		}
	}
	if len(r.ClientMAC) > 0 {
		j.ClientMAC = r.ClientMAC.String()
	}
	if r.ICMP != nil {
		j.ICMP = &icmpJSON{Type: r.ICMP.Type, Code: r.ICMP.Code, From: r.ICMP.From.String(), V6: r.ICMP.V6}
	}
	return json.Marshal(j)
}
