package export

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"portwatch/classify"
)

// How much of a list a table cell shows before "and N more".
const (
	tablePairs   = 3
	tableClients = 3
	// tableCellMax bounds a name or address in a cell, in characters.
	tableCellMax = 40
)

// WriteSummary writes the run summary as tables for a terminal: every
// catalog service with its counts and state, then the unexpected open
// ports. Rows are sorted by port, protocol and name, so two runs compare
// line by line.
func WriteSummary(w io.Writer, s classify.Summary) error {
	var b strings.Builder
	writeSummaryHeader(&b, s)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	// Packets toward the service port and from it: a reset or an answer
	// that never reached the client is a packet from the port too.
	fmt.Fprintln(tw, "SERVICE\tPORT\tPROTO\tREQUIRED\tTO-PORT\tFROM-PORT\tSTATE")
	services := slices.Clone(s.Services)
	slices.SortStableFunc(services, compareServices)
	for _, svc := range services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n",
			cell(svc.Service), cell(svc.Port), cell(svc.Proto), requiredCell(svc),
			svc.Requests, svc.Replies, stateCell(svc))
	}
	if len(services) == 0 {
		fmt.Fprintln(tw, "(no services in the catalog)")
	}
	tw.Flush()

	b.WriteString("\nUnexpected open ports:\n")
	if len(s.Unexpected) == 0 {
		b.WriteString("(none)\n")
	} else {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PORT\tPROTO\tSERVER\tANSWERS\tFIRST SEEN\tLAST SEEN\tCLIENTS")
		unexpected := slices.Clone(s.Unexpected)
		slices.SortStableFunc(unexpected, compareUnexpected)
		for _, u := range unexpected {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n",
				u.Port, cell(u.Proto), cell(u.Server), u.Answers,
				tableTime(u.First), tableTime(u.Last), listCell(u.Clients, tableClients, 0))
		}
		tw.Flush()
	}
	if s.OneSided {
		b.WriteString("\nNote: the capture shows one direction only, so unanswered requests prove nothing;\n" +
			"capture where both directions pass (the server's own interface, or a mirror of both).\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSummaryHeader(b *strings.Builder, s classify.Summary) {
	b.WriteString("portwatch summary")
	if s.Observer.Host != "" {
		b.WriteString(" for " + cell(s.Observer.Host))
	}
	var how []string
	for _, part := range []string{s.Observer.Interface, s.Observer.Backend, s.Observer.Mode} {
		if part != "" {
			how = append(how, cell(part))
		}
	}
	if len(how) > 0 {
		b.WriteString(" (" + strings.Join(how, ", ") + ")")
	}
	b.WriteString("\n")
	if !s.Start.IsZero() {
		// UTC throughout, as the event lines: times from a capture and
		// from the local clock must not mix zones in one report.
		b.WriteString("window: " + s.Start.UTC().Format("2006-01-02 15:04:05 MST"))
		if !s.End.IsZero() {
			b.WriteString(" to " + s.End.UTC().Format("2006-01-02 15:04:05 MST"))
			b.WriteString(" (" + s.End.Sub(s.Start).Round(time.Second).String() + ")")
		}
		b.WriteString("\n")
	}
	if len(s.Profiles) > 0 {
		profiles := make([]string, len(s.Profiles))
		for i, p := range s.Profiles {
			profiles[i] = cell(p)
		}
		b.WriteString("profiles: " + strings.Join(profiles, ", ") + "\n")
	}
	b.WriteString("\n")
}

// compareServices orders by port number (a range by its first port,
// "dynamic" and anything else last), then protocol, then name.
func compareServices(a, b classify.ServiceSummary) int {
	return cmp.Or(
		cmp.Compare(portKey(a.Port), portKey(b.Port)),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Service, b.Service),
		cmp.Compare(a.ServiceID, b.ServiceID),
	)
}

func portKey(port string) int {
	first, _, _ := strings.Cut(port, "-")
	if n, err := strconv.Atoi(first); err == nil && n >= 0 {
		return n
	}
	return 1 << 20
}

func compareUnexpected(a, b classify.UnexpectedSummary) int {
	return cmp.Or(
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Proto, b.Proto),
		compareAddresses(a.Server, b.Server),
	)
}

// compareAddresses orders IP addresses numerically and anything else after
// them, as text.
func compareAddresses(a, b string) int {
	ipA, errA := netip.ParseAddr(a)
	ipB, errB := netip.ParseAddr(b)
	switch {
	case errA == nil && errB == nil:
		return ipA.Compare(ipB)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return cmp.Compare(a, b)
}

func requiredCell(svc classify.ServiceSummary) string {
	if svc.Required {
		return "yes"
	}
	if svc.Status != "" && svc.Status != "required" {
		return "no (" + cell(svc.Status) + ")"
	}
	return "no"
}

func stateCell(svc classify.ServiceSummary) string {
	state := cell(string(svc.State))
	switch {
	case svc.Reason != "" && svc.ReturnPath:
		state += " (" + cell(string(svc.Reason)) + ", return path)"
	case svc.Reason != "":
		state += " (" + cell(string(svc.Reason)) + ")"
	}
	if svc.CarriedBy != "" {
		state += " via " + cell(svc.CarriedBy)
	}
	if len(svc.Affected) == 0 && svc.MoreAffected == 0 {
		return state
	}
	pairs := make([]string, len(svc.Affected))
	for i, p := range svc.Affected {
		if p.Server == "" {
			pairs[i] = p.Client // a DHCP client nobody answered
		} else {
			pairs[i] = p.Client + "->" + p.Server
		}
	}
	return state + ": " + listCell(pairs, tablePairs, svc.MoreAffected)
}

// listCell shows at most show items and counts the rest, those beyond the
// list (more) included.
func listCell(items []string, show, more int) string {
	if len(items) == 0 && more == 0 {
		return "-"
	}
	shown := items[:min(show, len(items))]
	parts := make([]string, len(shown))
	for i, item := range shown {
		parts[i] = cell(item)
	}
	text := strings.Join(parts, ", ")
	if rest := len(items) - len(shown) + more; rest > 0 {
		if text == "" {
			return fmt.Sprintf("%d not listed", rest)
		}
		text += fmt.Sprintf(" and %d more", rest)
	}
	return text
}

func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05")
}

// cell makes a value safe for a terminal table: a tab or newline would
// break the columns, and an escape sequence could rewrite the screen, so
// every character that is not graphic is shown escaped (\t, \x1b, \u202e),
// as is invalid UTF-8; a long value is cut with "...".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	var b strings.Builder
	runes := 0
	for i, w := 0, 0; i < len(s); i += w {
		r, size := utf8.DecodeRuneInString(s[i:])
		w = size
		if runes >= tableCellMax {
			b.WriteString("...")
			break
		}
		runes++
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsGraphic(r):
			b.WriteRune(r)
		default:
			quoted := strconv.QuoteRuneToASCII(r) // '\t', '\x1b', '\u202e'
			b.WriteString(quoted[1 : len(quoted)-1])
		}
	}
	return b.String()
}
