package probe

import (
	"fmt"
	"slices"
	"strings"

	"portwatch/catalog"
)

// What a probe sends (Result.Request; docs/probe.md describes each).
const (
	requestTCPConnect = "tcp-connect"
	requestDHCP       = "dhcp-discover"
	requestPXE        = "pxe-request"
	requestTFTP       = "tftp-rrq"
	requestDNS        = "dns-query"
	requestSNMP       = "snmp-get"
	requestRMCP       = "rmcp-ping"
	requestRPCBind    = "rpcbind-dump"
	requestNFS        = "nfs-null"
	requestMount      = "mount-null"
	requestEcho       = "echo"
	requestSyslog     = "syslog-line"
	requestEmpty      = "empty-datagram"
	requestNone       = "none"
)

// udpRequests are the UDP rows that have a request their service answers
// (or, for syslog, the line the service takes), by row key.
var udpRequests = map[string]string{
	"echo-udp/udp":   requestEcho,
	"domain-udp/udp": requestDNS,
	"bootps/udp":     requestDHCP,
	"tftp-udp/udp":   requestTFTP,
	"sunrpc-udp/udp": requestRPCBind,
	"rsyslogd/udp":   requestSyslog,
	"nfsd-udp/udp":   requestNFS,
	"mount-udp/udp":  requestMount,
	"snmp/udp":       requestSNMP,
	"ipmi/udp":       requestRMCP,
	"pxe/udp":        requestPXE,
}

// untestableRows are the UDP rows no request can test: nothing listens on
// them in any xCAT installation, so every probe would come back "closed"
// and fail the run for a port xCAT never uses.
var untestableRows = map[string]string{
	"xcatiport/udp": "xcatd's install-status service listens on TCP only; nothing listens on or answers its UDP port",
	"rsync/udp":     "rsync has no datagram protocol; nothing listens on or answers its UDP port",
}

// Check is one catalog row to probe, and how.
type Check struct {
	Entry *catalog.Entry
	// Request names what is sent; requestNone for an untestable row.
	Request string
	// Why explains an untestable row, or a generic probe.
	Why string
}

// Skip is a row of the role that is not probed, and why.
type Skip struct {
	Entry *catalog.Entry
	Why   string
}

// Plan lists the rows of cat that a server of role serves and that carry
// traffic, with the request each gets. services, when not empty, keeps
// only the rows it names ("tftp-udp", "xcatdport" for both protocols,
// "xcatdport/udp").
func Plan(cat *catalog.Catalog, role catalog.Role, services []string) ([]Check, []Skip, error) {
	if !slices.Contains(catalog.Roles, role) {
		return nil, nil, fmt.Errorf("role %q: want one of %s", role, rolesList())
	}
	selected, err := selectRows(cat, role, services)
	if err != nil {
		return nil, nil, err
	}
	var checks []Check
	var skips []Skip
	for _, e := range cat.Entries() {
		if !e.ServesRole(role) || (selected != nil && !selected[e.Key()]) {
			continue
		}
		if why := skipReason(e); why != "" {
			skips = append(skips, Skip{Entry: e, Why: why})
			continue
		}
		checks = append(checks, checkFor(e))
	}
	if len(checks) == 0 && selected != nil {
		// Rows were named and none can be probed: a run that sends
		// nothing must not pass the gate.
		why := "no row they name serves the role"
		if len(skips) > 0 {
			var parts []string
			for _, sk := range skips {
				parts = append(parts, sk.Entry.Key()+": "+sk.Why)
			}
			why = "nothing to send: " + strings.Join(parts, "; ")
		}
		return nil, skips, fmt.Errorf("--service %s: %s", strings.Join(services, ","), why)
	}
	return checks, skips, nil
}

func rolesList() string {
	var names []string
	for _, r := range catalog.Roles {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// skipReason says why a row of the role is not probed, or "".
func skipReason(e *catalog.Entry) string {
	switch {
	case !e.OnWire && e.CarriedBy != "":
		return "never carries traffic; " + e.CarriedBy + " carries its requirement"
	case !e.OnWire:
		return "never carries traffic"
	case e.CarriedBy != "":
		return "its traffic is that of " + e.CarriedBy
	case e.Need == catalog.NeedObsolete:
		return "obsolete: xCAT no longer uses it"
	}
	return ""
}

func checkFor(e *catalog.Entry) Check {
	if e.Proto == catalog.TCP {
		return Check{Entry: e, Request: requestTCPConnect}
	}
	if why, ok := untestableRows[e.Key()]; ok {
		return Check{Entry: e, Request: requestNone, Why: why}
	}
	if req, ok := udpRequests[e.Key()]; ok {
		return Check{Entry: e, Request: req}
	}
	// xcatd's discovery listener, RMC, SNMP traps, a site's own rows: no
	// request that the service answers without side effects (a trap would
	// raise an alert), so an empty datagram, as nmap sends to UDP ports it
	// knows no payload for, judged on ICMP errors and the observer.
	return Check{Entry: e, Request: requestEmpty,
		Why: "no harmless request this service answers: an empty datagram, judged on ICMP errors and the observer"}
}

// selectRows resolves --service names; nil means every row.
func selectRows(cat *catalog.Catalog, role catalog.Role, services []string) (map[string]bool, error) {
	if len(services) == 0 {
		return nil, nil
	}
	selected := map[string]bool{}
	for _, s := range services {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		var rows []*catalog.Entry
		for _, e := range cat.Entries() {
			if e.Key() == s || e.Name == s {
				rows = append(rows, e)
			}
		}
		if len(rows) == 0 {
			return nil, fmt.Errorf("--service %q: no such catalog row (see 'portwatch catalog'; give NAME or NAME/PROTO)", s)
		}
		var served []*catalog.Entry
		for _, e := range rows {
			if e.ServesRole(role) {
				served = append(served, e)
			}
		}
		if len(served) == 0 {
			return nil, fmt.Errorf("--service %q: served by %s, not by %s (choose the targets' kind with --role)", s, rolesOf(rows[0]), role)
		}
		for _, e := range served {
			selected[e.Key()] = true
		}
	}
	return selected, nil
}

func rolesOf(e *catalog.Entry) string {
	var names []string
	for _, r := range e.Roles {
		names = append(names, string(r))
	}
	return strings.Join(names, " or ")
}
