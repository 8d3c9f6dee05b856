// Package classify turns successive counter snapshots into verdicts:
// "required port blocked", "unexpected port open", "cleared", with evidence.
// It knows nothing of BPF: its input is a Snapshot, from the kernel or from
// the Go twin.
package classify

import (
	"time"
)

// Verdict is the kind of an event.
type Verdict string

// The verdicts (docs/events.md, "Verdicts and reasons").
const (
	// RequiredPortBlocked: a service the active profile requires got no
	// answer, a reset or an ICMP error.
	RequiredPortBlocked Verdict = "required_port_blocked"
	// UnexpectedPortOpen: a port in no catalog row answered.
	UnexpectedPortOpen Verdict = "unexpected_port_open"
	// Cleared: an exchange that was blocked is answered again.
	Cleared Verdict = "cleared"
	// CaptureOneSided: the observer sees one direction only, so silence
	// proves nothing; said once instead of a flood of false blocks.
	CaptureOneSided Verdict = "capture_one_sided"
)

// Reason says why an exchange is blocked.
type Reason string

// Reasons of a required_port_blocked event.
const (
	ReasonNoReply             Reason = "no-reply"
	ReasonReset               Reason = "reset"
	ReasonICMPPortUnreachable Reason = "icmp-port-unreachable"
	ReasonICMPAdminProhibited Reason = "icmp-admin-prohibited"
)

// Observer says who saw the traffic.
type Observer struct {
	Host      string `json:"host"`
	Interface string `json:"interface,omitempty"`
	// Backend is "xdp", "capture" (AF_PACKET) or "pcap" (a capture file or stream).
	Backend string `json:"backend"`
	// Mode is the XDP attach mode ("native", "generic") or the capture source.
	Mode string `json:"mode,omitempty"`
}

// Event is one verdict with its evidence. Field names and JSON tags are the
// stable schema of docs/events.md.
type Event struct {
	Time    time.Time `json:"time"`
	Verdict Verdict   `json:"verdict"`
	// Service is the catalog row's name; for unexpected_port_open it is
	// empty, and for capture_one_sided it is empty too.
	Service   string `json:"service,omitempty"`
	ServiceID uint16 `json:"service_id,omitempty"`
	Proto     string `json:"proto,omitempty"` // "tcp" or "udp"
	Port      uint16 `json:"port,omitempty"`
	Reason    Reason `json:"reason,omitempty"`
	// Required is true when the active profile requires the service.
	Required bool `json:"required"`
	// Client is an IP address, or for DHCP the client's hardware address.
	Client string `json:"client,omitempty"`
	// Server is an IP address; empty for DHCP, whose exchange is a client
	// and any DHCP server.
	Server string `json:"server,omitempty"`

	// Counts over the exchange's life, up to the event.
	Attempts      uint64 `json:"attempts"`
	Answers       uint64 `json:"answers"`
	Resets        uint64 `json:"resets"`
	ICMPClosed    uint64 `json:"icmp_closed"`
	ICMPFiltered  uint64 `json:"icmp_filtered"`
	ReturnBlocked uint64 `json:"return_blocked"`
	// ReturnPath is true when the block is on the way back: the server
	// answered but the answer never reached the client (never followed up,
	// or refused by ICMP).
	ReturnPath bool `json:"return_path,omitempty"`

	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`

	Observer Observer `json:"observer"`
	// Message is one sentence for people.
	Message string `json:"message"`
}

// ServiceState is a service's line in the run summary.
type ServiceState string

// Summary states.
const (
	StateOK          ServiceState = "ok"
	StateBlocked     ServiceState = "blocked"
	StateNotSeen     ServiceState = "not-seen"
	StateNeverOnWire ServiceState = "never-on-wire"
	// StateUnconfirmed: traffic, but neither an answer nor a block: too few
	// attempts to judge, a one-sided capture, or exchanges not tracked.
	StateUnconfirmed ServiceState = "unconfirmed"
)

// Pair is a client and a server of an exchange.
type Pair struct {
	Client string `json:"client"`
	Server string `json:"server"`
}

// ServiceSummary is one catalog row in the run summary.
type ServiceSummary struct {
	Service   string       `json:"service"`
	ServiceID uint16       `json:"service_id"`
	Proto     string       `json:"proto"`
	Port      string       `json:"port"` // a number, a range, or "dynamic"
	Required  bool         `json:"required"`
	Status    string       `json:"status"` // catalog.Status: required, optional, not-in-profile, obsolete
	State     ServiceState `json:"state"`
	Reason    Reason       `json:"reason,omitempty"`
	// ReturnPath: every blocked exchange of the row was answered by its
	// server, and the answers never reached the client (TFTP through a
	// firewall without its helper).
	ReturnPath bool `json:"return_path,omitempty"`
	// CarriedBy names the row whose state this one shows, when its own
	// traffic is counted there (bootpc's under bootps/udp).
	CarriedBy string `json:"carried_by,omitempty"`
	// Requests and Replies count packets toward the service port and
	// from it, answers or not (a reset is a packet from the port).
	Requests uint64 `json:"requests"`
	Replies  uint64 `json:"replies"`
	// Affected lists blocked (client, server) pairs, at most a cap;
	// MoreAffected counts the rest.
	Affected     []Pair `json:"affected,omitempty"`
	MoreAffected int    `json:"more_affected,omitempty"`
}

// UnexpectedSummary is one answered port outside the catalog.
type UnexpectedSummary struct {
	Proto   string    `json:"proto"`
	Port    uint16    `json:"port"`
	Server  string    `json:"server"`
	Answers uint64    `json:"answers"`
	Clients []string  `json:"clients,omitempty"`
	First   time.Time `json:"first_seen,omitzero"`
	Last    time.Time `json:"last_seen,omitzero"`
}

// Summary is the end-of-run report.
type Summary struct {
	Profiles   []string            `json:"profiles"`
	Observer   Observer            `json:"observer"`
	Start      time.Time           `json:"start,omitzero"`
	End        time.Time           `json:"end,omitzero"`
	Services   []ServiceSummary    `json:"services"`
	Unexpected []UnexpectedSummary `json:"unexpected"`
	OneSided   bool                `json:"one_sided"`
}
