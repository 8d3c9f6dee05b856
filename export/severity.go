package export

import "portwatch/classify"

// Severity is how loud a verdict is in each format's own scale. The order is
// the same everywhere: a blocked required port is an outage in the making;
// an unexpected open port is exposure to look at; a clearance or a note
// that the capture is one-sided is news, not trouble.
type Severity struct {
	// Syslog is the RFC 5424 severity (0 emergency .. 7 debug).
	Syslog int
	// CEF is the CEF header severity (0-10, 10 most severe).
	CEF int
	// LEEF is the LEEF sev attribute (1-10, 10 most severe).
	LEEF int
}

// The severities of docs/events.md.
var (
	severityBlocked    = Severity{Syslog: 3, CEF: 8, LEEF: 8} // err / high
	severityUnexpected = Severity{Syslog: 4, CEF: 6, LEEF: 6} // warning / medium
	severityNotice     = Severity{Syslog: 5, CEF: 3, LEEF: 3} // notice / low
	severityUnknown    = Severity{Syslog: 6, CEF: 1, LEEF: 1} // informational
)

// SeverityOf returns the severity of a verdict. A verdict this package does
// not know yet is informational rather than an error: a newer classifier
// must not make the sinks fail.
func SeverityOf(v classify.Verdict) Severity {
	switch v {
	case classify.RequiredPortBlocked:
		return severityBlocked
	case classify.UnexpectedPortOpen:
		return severityUnexpected
	case classify.Cleared, classify.CaptureOneSided:
		return severityNotice
	}
	return severityUnknown
}

// verdictTitle is the human name of a verdict, used as the CEF Name.
func verdictTitle(v classify.Verdict) string {
	switch v {
	case classify.RequiredPortBlocked:
		return "Required port blocked"
	case classify.UnexpectedPortOpen:
		return "Unexpected port open"
	case classify.Cleared:
		return "Blocked port answers again"
	case classify.CaptureOneSided:
		return "Capture sees one direction only"
	}
	return string(v)
}

// verdictAction is the CEF act: what the network did with the traffic,
// as a firewall would log it. A one-sided capture says nothing about that.
func verdictAction(v classify.Verdict) string {
	switch v {
	case classify.RequiredPortBlocked:
		return "blocked"
	case classify.UnexpectedPortOpen, classify.Cleared:
		return "allowed"
	}
	return ""
}
