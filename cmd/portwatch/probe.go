package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/pflag"

	"portwatch/catalog"
	"portwatch/classify"
	"portwatch/export"
	"portwatch/probe"
)

func init() {
	register(&command{
		name:    "probe",
		summary: "ask, before an install, whether every required xCAT service of a host gets through",
		usage: []string{
			"probe [flags] TARGET [TARGET ...]",
			"probe [flags] --targets-file FILE",
		},
		about: `
probe sends each catalog row that a target of --role serves one request its
service really answers (a TCP connect, a DHCP DISCOVER, a TFTP read request,
a DNS query, an SNMP get, an RMCP presence ping, rpcbind and NFS calls, ...)
and classifies what comes back as nmap does: open, closed (TCP reset or ICMP
port unreachable), filtered (ICMP administratively prohibited), unreachable,
or no-answer. Run it from the node side of the firewall.

With --observer it asks a 'portwatch observe' on the far side whether each
request arrived and whether the server answered, and tells silence apart:
blocked-inbound (never arrived), service-silent (arrived, no answer),
blocked-return (answered, and the answer never came back, as TFTP through a
firewall without its conntrack helper).

The exit status is 0 when every required row of the profile is open (rows
with no request to test them, marked untestable, do not count, nor do
one-way rows that drew no error when no --observer can confirm them), 1 when one
is not, a target could not be probed or an --output lost events, 2 for bad
flags or input. Every
packet goes to a target (or, for DHCP, to the broadcast address or the
--dhcp-unicast relay); docs/probe.md says what each probe sends, byte by
byte. A broadcast DISCOVER needs CAP_NET_RAW; everything else runs
unprivileged.`,
		setup: setupProbe,
	})
}

type probeFlags struct {
	catalog        catalog.Flags
	role           string
	targetsFile    string
	services       []string
	timeout        time.Duration
	retries        int
	concurrency    int
	rate           float64
	observer       string
	observerClient string
	settle         time.Duration
	dhcpUnicast    string
	dhcpInterface  string
	dhcpMAC        string
	tftpFile       string
	dnsName        string
	snmpCommunity  string
	format         string
	outputs        export.SpecList
}

func setupProbe(fs *pflag.FlagSet) func(*env, []string) int {
	var f probeFlags
	fs.StringVar(&f.role, "role", "mn", "`ROLE` of the targets, which picks the catalog rows: mn (management or service node), bmc, switch or cn")
	fs.StringVar(&f.targetsFile, "targets-file", "", "read targets from `FILE`, one address or host name a line, # comments ('-': standard input)")
	fs.StringSliceVar(&f.services, "service", nil, "probe only these rows: `NAME` or NAME/PROTO, comma-separated or repeated (see 'portwatch catalog')")
	f.catalog.Register(fs)
	fs.DurationVar(&f.timeout, "timeout", probe.DefaultTimeout, "wait `DURATION` for the answer to one request")
	fs.IntVar(&f.retries, "retries", probe.DefaultRetries, "send a request `N` more times when nothing answers (TCP: N SYN retransmissions, which the kernel sends 1 s, 3 s, 7 s... after the first)")
	fs.IntVar(&f.concurrency, "concurrency", probe.DefaultConcurrency, "at most `N` probes in flight at once, over all targets")
	fs.Float64Var(&f.rate, "rate", probe.DefaultRate, "at most `PPS` requests a second, over all targets (0: no limit)")
	fs.StringVar(&f.observer, "observer", "", "confirm with the 'portwatch observe' at `URL` (http://HOST[:9717]) on the far side")
	fs.StringVar(&f.observerClient, "observer-client", "", "this host's `ADDRESS` as the observer sees it, when NAT changes it")
	fs.DurationVar(&f.settle, "observer-settle", probe.DefaultSettle, "wait `DURATION` after the last probe before reading the observer's counters")
	fs.StringVar(&f.dhcpUnicast, "dhcp-unicast", "", "send the DHCP DISCOVER from port 68 to the relay or server at `ADDRESS` instead of broadcasting it from 0.0.0.0")
	fs.StringVar(&f.dhcpInterface, "dhcp-interface", "", "broadcast the DHCP DISCOVER on `IFACE` (default: the interface of the route to the target)")
	fs.StringVar(&f.dhcpMAC, "dhcp-mac", "", "client hardware address `MAC` in the DHCP DISCOVER (default: the interface's)")
	fs.StringVar(&f.tftpFile, "tftp-file", probe.DefaultTFTPFile, "`FILE` the TFTP read request asks for (an ERROR \"file not found\" proves the path as DATA does)")
	fs.StringVar(&f.dnsName, "dns-name", "", "`NAME` the DNS query asks for (default: the target's reverse name, a PTR query)")
	fs.StringVar(&f.snmpCommunity, "snmp-community", probe.DefaultSNMPCommunity, "SNMPv2c `COMMUNITY` of the sysDescr get (switch role)")
	fs.StringVar(&f.format, "format", "table", "`FORMAT` of the results: table or json")
	fs.Var(&f.outputs, "output", "send a required_port_blocked event for each required row that is not open to `SPEC` (repeatable; as observe's --output, see docs/events.md)")
	return func(e *env, args []string) int {
		cfg, targets, skipped, ok := probeConfig(e, f, args)
		if !ok {
			return exitUsage
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runProbe(ctx, e, f, cfg, targets, skipped)
	}
}

// probeConfig checks the flags and reads the targets; a bad target is
// reported and left out, and the others are still probed.
func probeConfig(e *env, f probeFlags, args []string) (probe.Config, []probe.Target, int, bool) {
	var cfg probe.Config
	skipped := 0
	fail := func(format string, a ...any) (probe.Config, []probe.Target, int, bool) {
		e.errorf("probe: "+format, a...)
		return cfg, nil, 0, false
	}
	cat, err := f.catalog.Load()
	if err != nil {
		e.errorList(err)
		return cfg, nil, 0, false
	}
	cfg = probe.Config{
		Catalog: cat, Role: catalog.Role(strings.ToLower(f.role)), Services: f.services,
		Timeout: f.timeout, Retries: f.retries, Concurrency: f.concurrency, Rate: f.rate,
		DHCPInterface: f.dhcpInterface, TFTPFile: f.tftpFile, DNSName: f.dnsName,
		SNMPCommunity: f.snmpCommunity, Settle: f.settle,
	}
	switch {
	case f.timeout <= 0:
		return fail("--timeout %s: want a positive duration", f.timeout)
	case f.settle <= 0:
		return fail("--observer-settle %s: want a positive duration", f.settle)
	case f.retries < 0:
		return fail("--retries %d: want 0 or more", f.retries)
	case f.concurrency <= 0:
		return fail("--concurrency %d: want 1 or more", f.concurrency)
	case f.rate < 0:
		return fail("--rate %g: want 0 (no limit) or more packets a second", f.rate)
	case f.format != "table" && f.format != "json":
		return fail("--format %q: want table or json", f.format)
	}
	if err := jsonReportAlone(f.format, f.outputs); err != nil {
		return fail("%v", err)
	}
	if _, _, err := probe.Plan(cat, cfg.Role, cfg.Services); err != nil {
		return fail("--role/--service: %v", err)
	}
	if f.observer != "" {
		if cfg.Observer, err = probe.NewObserverClient(f.observer); err != nil {
			return fail("%v", err)
		}
	}
	if f.observerClient != "" {
		if cfg.ObserverClient, err = netip.ParseAddr(f.observerClient); err != nil {
			return fail("--observer-client %q: not an IP address", f.observerClient)
		}
	}
	if f.dhcpUnicast != "" {
		if cfg.DHCPUnicast, err = netip.ParseAddr(f.dhcpUnicast); err != nil {
			return fail("--dhcp-unicast %q: not an IP address (the relay or DHCP server to ask)", f.dhcpUnicast)
		}
	}
	if f.dhcpMAC != "" {
		if cfg.DHCPMAC, err = net.ParseMAC(f.dhcpMAC); err != nil {
			return fail("--dhcp-mac %q: not a hardware address (like 52:54:00:ab:cd:21)", f.dhcpMAC)
		}
	}

	var targets []probe.Target
	for i, a := range args {
		t, err := probe.ParseTarget(a, fmt.Sprintf("argument %d", i+1))
		if err != nil {
			e.errorf("probe: %v; skipped", err)
			skipped++
			continue
		}
		targets = append(targets, t)
	}
	if f.targetsFile != "" {
		in, name := e.stdin, "standard input"
		if f.targetsFile != "-" {
			file, err := os.Open(f.targetsFile)
			if err != nil {
				return fail("--targets-file: %v", err)
			}
			defer file.Close()
			in, name = file, f.targetsFile
		}
		read, errs := probe.ReadTargets(in, name)
		for _, err := range errs {
			e.errorf("probe: %v; skipped", err)
		}
		skipped += len(errs)
		targets = append(targets, read...)
	}
	if len(targets) == 0 {
		return fail("no target to probe: give addresses or host names, or --targets-file FILE")
	}
	return cfg, targets, skipped, true
}

// runProbe probes; skipped counts the target arguments and lines that were
// not targets, which keep the gate from passing.
func runProbe(ctx context.Context, e *env, f probeFlags, cfg probe.Config, targets []probe.Target, skipped int) int {
	sinks, err := export.OpenAll(f.outputs, export.Options{Stdout: e.stdout})
	if err != nil {
		e.errorf("probe: %v", err)
		return exitUsage
	}
	rep, err := probe.Run(ctx, cfg, targets)
	if err != nil {
		closeSinks(e, sinks)
		e.errorf("probe: %v", err)
		return exitUsage
	}
	for _, te := range rep.Failed {
		e.errorf("probe: %v; not probed", te)
	}
	if rep.Observer != nil && rep.Observer.Error != "" {
		e.errorf("probe: %s; the results are the probe's own, not confirmed by the observer", rep.Observer.Error)
	}
	host := hostname()
	for _, r := range rep.Results {
		if ev, ok := probeEvent(r, host, rep.Observer); ok {
			sinks.Emit(ev)
		}
	}
	delivered := closeSinks(e, sinks)

	sum := summarize(rep)
	sum.InputSkipped = skipped
	sum.Passed = sum.Passed && skipped == 0
	if f.format == "json" {
		err = writeProbeJSON(e.stdout, cfg, rep, sum)
	} else {
		err = writeProbeTable(e.stdout, cfg, rep, sum)
	}
	if err != nil {
		e.errorf("probe: %v", err)
		return exitFailure
	}
	if !sum.Passed || !delivered {
		return exitFailure
	}
	return exitOK
}

// probeSummary is the verdict of the run as a whole: the gate.
type probeSummary struct {
	Targets         int `json:"targets"`
	TargetsFailed   int `json:"targets_failed"`
	Rows            int `json:"rows"`
	Required        int `json:"required"`
	RequiredOpen    int `json:"required_open"`
	RequiredNotOpen int `json:"required_not_open"`
	// RequiredUntestable counts required rows no request can test: they
	// do not fail the gate. Untestable counts all such rows.
	RequiredUntestable int `json:"required_untestable"`
	Untestable         int `json:"untestable"`
	// RequiredUnconfirmed counts required one-way rows sent without an
	// error and without an observer to confirm them: not judged either.
	RequiredUnconfirmed int `json:"required_unconfirmed"`
	// InputSkipped counts target arguments and lines that were not targets.
	InputSkipped int  `json:"input_skipped"`
	Passed       bool `json:"passed"`
	// NotOpen lists the required rows that are not open: "TARGET NAME/PROTO STATE".
	NotOpen []string `json:"not_open,omitempty"`
}

func summarize(rep *probe.Report) probeSummary {
	s := probeSummary{TargetsFailed: len(rep.Failed), Rows: len(rep.Results)}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Target] = true
		if r.State == probe.StateUntestable {
			s.Untestable++
		}
		if !r.Required {
			continue
		}
		s.Required++
		switch {
		case r.State == probe.StateOpen:
			s.RequiredOpen++
		case r.State == probe.StateUntestable:
			s.RequiredUntestable++
		case r.Unconfirmed():
			s.RequiredUnconfirmed++
		case !r.State.Passes():
			s.RequiredNotOpen++
			s.NotOpen = append(s.NotOpen, fmt.Sprintf("%s %s %s", r.Target, r.Key(), r.State))
		}
	}
	s.Targets = len(seen) + len(rep.Failed)
	s.Passed = s.RequiredNotOpen == 0 && s.TargetsFailed == 0
	return s
}

// probeEvent is a required row that is not open, as the verdict event the
// observer would emit for it (docs/events.md, "Events from probe").
func probeEvent(r probe.Result, host string, obs *probe.ObserverStatus) (classify.Event, bool) {
	if !r.Required || r.State.Passes() || r.Unconfirmed() || r.State == probe.StateError {
		return classify.Event{}, false
	}
	ev := classify.Event{
		Time: r.End, Verdict: classify.RequiredPortBlocked,
		Service: r.Service, ServiceID: uint16(r.ServiceID), Proto: r.Proto.String(), Port: r.Port,
		Required: true, Server: r.Address.String(), Attempts: uint64(r.Attempts),
		FirstSeen: r.Start, LastSeen: r.End,
		Observer: classify.Observer{Host: host, Backend: "probe", Mode: "active"},
	}
	if len(r.ClientMAC) > 0 {
		ev.Client = r.ClientMAC.String()
	} else if r.Source.IsValid() {
		ev.Client = r.Source.Addr().String()
	}
	if obs != nil && obs.Error == "" && r.Observer != nil && r.Observer.Tracked {
		ev.Observer.Mode = "active+observer"
	}
	// The reason is what the probing client saw, as for the observer's
	// events: a reset stays a reset when the observer shows it came from a
	// firewall on the way.
	seen := r.Reason
	if r.ProbeReason != "" {
		seen = r.ProbeReason
	}
	switch {
	case seen == probe.ReasonReset:
		ev.Reason, ev.Resets = classify.ReasonReset, 1
	case seen == probe.ReasonICMPPortUnreachable:
		ev.Reason, ev.ICMPClosed = classify.ReasonICMPPortUnreachable, 1
	case seen == probe.ReasonICMPAdminProhibited:
		ev.Reason, ev.ICMPFiltered = classify.ReasonICMPAdminProhibited, 1
	default:
		// No answer, never arrived, silent, unreachable, answer lost.
		ev.Reason = classify.ReasonNoReply
	}
	if r.State == probe.StateBlockedReturn {
		ev.ReturnPath = true
		if r.Observer != nil {
			ev.Answers = r.Observer.Answers
			ev.ReturnBlocked = r.Observer.ReturnBlocked
		}
	}
	ev.Message = fmt.Sprintf("probe from %s: %s (%s/%d) on %s is %s: %s",
		orUnknown(ev.Client), r.Service, ev.Proto, r.Port, r.Target, r.State, r.Evidence)
	return ev, true
}

func orUnknown(s string) string {
	if s == "" {
		return "this host"
	}
	return s
}

type probeDoc struct {
	Role      string                `json:"role"`
	Profiles  []string              `json:"profiles"`
	Start     time.Time             `json:"start"`
	End       time.Time             `json:"end"`
	Observer  *probe.ObserverStatus `json:"observer,omitempty"`
	Results   []probe.Result        `json:"results"`
	Errors    []probeTargetError    `json:"errors"`
	NotProbed []probeSkip           `json:"not_probed"`
	Summary   probeSummary          `json:"summary"`
}

type probeTargetError struct {
	Target string `json:"target"`
	Origin string `json:"origin"`
	Error  string `json:"error"`
}

type probeSkip struct {
	Service string `json:"service"`
	Proto   string `json:"proto"`
	Why     string `json:"why"`
}

func writeProbeJSON(w io.Writer, cfg probe.Config, rep *probe.Report, sum probeSummary) error {
	doc := probeDoc{
		Role: string(cfg.Role), Profiles: cfg.Catalog.ActiveProfiles(), Start: rep.Start, End: rep.End,
		Observer: rep.Observer, Results: rep.Results, Errors: []probeTargetError{}, NotProbed: []probeSkip{},
		Summary: sum,
	}
	if doc.Results == nil {
		doc.Results = []probe.Result{}
	}
	for _, te := range rep.Failed {
		doc.Errors = append(doc.Errors, probeTargetError{Target: te.Target.Name, Origin: te.Target.Origin, Error: te.Err.Error()})
	}
	for _, s := range rep.Skipped {
		doc.NotProbed = append(doc.NotProbed, probeSkip{Service: s.Entry.Name, Proto: s.Entry.Proto.String(), Why: s.Why})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func writeProbeTable(w io.Writer, cfg probe.Config, rep *probe.Report, sum probeSummary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "portwatch probe: role %s, profiles %s\n", cfg.Role, strings.Join(cfg.Catalog.ActiveProfiles(), ","))
	if rep.Observer != nil {
		switch {
		case rep.Observer.Error != "":
			fmt.Fprintf(&b, "observer %s: not confirmed (%s)\n", rep.Observer.URL, rep.Observer.Error)
		case rep.Observer.Info != nil:
			fmt.Fprintf(&b, "observer %s: %s on %s (%s)\n", rep.Observer.URL, rep.Observer.Info.Host,
				strings.Join(rep.Observer.Info.Interfaces, ","), rep.Observer.Info.Backend)
		}
	}
	// The header names this host's address towards each target; a DHCP
	// probe's own source is 0.0.0.0, so any other row's is taken.
	from := map[string]string{}
	for _, r := range rep.Results {
		if a := r.Source.Addr(); a.IsValid() && !a.IsUnspecified() && from[r.Target] == "" {
			from[r.Target] = a.String()
		}
	}
	var tw *tabwriter.Writer
	current := ""
	for _, r := range rep.Results {
		if r.Target != current {
			if tw != nil {
				tw.Flush()
			}
			current = r.Target
			fmt.Fprintf(&b, "\n%s", r.Target)
			if r.Address.String() != r.Target {
				fmt.Fprintf(&b, " (%s)", r.Address)
			}
			if from[r.Target] != "" {
				fmt.Fprintf(&b, ", from %s", from[r.Target])
			}
			b.WriteString("\n")
			tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tPORT\tPROTO\tREQUIRED\tSTATE\tRTT\tEVIDENCE")
		}
		port := fmt.Sprint(r.Port)
		if r.Port == 0 {
			port = "dynamic"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tableCell(r.Service), port, r.Proto,
			requiredWord(r), r.State, rttCell(r.RTT), tableCell(r.Evidence))
	}
	if tw != nil {
		tw.Flush()
	}
	for _, te := range rep.Failed {
		fmt.Fprintf(&b, "\n%s: not probed: %s\n", tableCell(te.Target.Name), tableCell(te.Err.Error()))
	}
	fmt.Fprintf(&b, "\n%s, %s; %d required: %d open, %d not open, %d untestable (not judged)",
		plural(sum.Targets, "target"), plural(sum.Rows, "row"), sum.Required, sum.RequiredOpen, sum.RequiredNotOpen, sum.RequiredUntestable)
	if sum.RequiredUnconfirmed > 0 {
		fmt.Fprintf(&b, ", %d one-way sent without error (only --observer can confirm they arrive)", sum.RequiredUnconfirmed)
	}
	if sum.TargetsFailed > 0 {
		fmt.Fprintf(&b, "; %s not probed", plural(sum.TargetsFailed, "target"))
	}
	if sum.InputSkipped > 0 {
		fmt.Fprintf(&b, "; %s of input skipped", plural(sum.InputSkipped, "line"))
	}
	if sum.Passed {
		b.WriteString(".\nEvery required row is open.\n")
	} else {
		b.WriteString(".\nNot passed: a required row is not open, or a target was not probed.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func requiredWord(r probe.Result) string {
	if r.Required {
		return "yes"
	}
	return string(r.Status)
}

func rttCell(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1000)
	}
	return d.Round(10 * time.Millisecond).String()
}

// tableCell keeps a cell on one line: what a server says (a sysDescr, a
// TFTP error) goes into the evidence.
func tableCell(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
