package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/pflag"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/catalog/rpcbind"
	"portwatch/classify"
	"portwatch/export"
	"portwatch/loader/capture"
)

func init() {
	register(&command{
		name:    "analyze",
		summary: "judge a capture file, or a capture streamed on stdin",
		usage: []string{
			"analyze [flags] FILE",
			"analyze [flags] -        (a capture on stdin, e.g. tcpdump -U -w - | portwatch analyze -)",
		},
		about: `
analyze runs the same packet logic as the kernel program (its Go twin) over a
pcap or pcapng capture, in capture time: windows follow the packets'
timestamps, so a capture gives the verdicts the live traffic would have.
Verdict events are printed as they happen (and sent to every --output), then a
summary of every required service and every row seen: ok, blocked (with the
reason and the affected clients and servers), unconfirmed (traffic, but
neither an answer nor a block), not-seen or never-on-wire.

Link types: Ethernet, raw IPv4/IPv6, Linux SLL and SLL2 (tcpdump -i any), BSD
loopback. Gzip-compressed files are read too. On AIX, where there is no eBPF:
  tcpdump -U -w - -i en0 | portwatch analyze -

Exit status: 0 when the capture was read to its end and every verdict event
reached every --output; 3 when the input is not a capture portwatch reads
(empty, another format, an unsupported link type) or is damaged (what was
read before the damage is still analysed and reported); 2 for bad flags or
catalog input; 1 when the file cannot be opened or an --output lost events.`,
		setup: setupAnalyze,
	})
}

type analyzeFlags struct {
	catalog  catalog.Flags
	classify classify.Flags
	outputs  export.SpecList
	format   string
	quiet    bool
}

func setupAnalyze(fs *pflag.FlagSet) func(*env, []string) int {
	var f analyzeFlags
	f.catalog.Register(fs)
	f.classify.Register(fs)
	fs.Var(&f.outputs, "output", "send verdict events to `SPEC` (repeatable): jsonl[:PATH], cef[:PATH], leef[:PATH], "+
		"syslog[+tcp|+tls]://HOST[:PORT], cef+syslog://..., leef+syslog://... (see docs/events.md)")
	fs.StringVar(&f.format, "format", "table", "report `FORMAT`: table (events as they happen, then the summary) or json (one document at the end: summary, events, counters, port tally)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "table format: print the summary only, not each event as it happens")
	return func(e *env, args []string) int {
		if len(args) != 1 {
			e.errorf("analyze: want one capture FILE, or - for stdin (see 'portwatch analyze --help')")
			return exitUsage
		}
		return analyze(e, f, args[0])
	}
}

// analyzeReport is the JSON document of analyze --format json.
type analyzeReport struct {
	Input     inputReport         `json:"input"`
	Summary   classify.Summary    `json:"summary"`
	Events    []classify.Event    `json:"events"`
	Services  []serviceReport     `json:"services"`
	Parse     map[string]uint64   `json:"parse"`
	PortTally []capture.PortCount `json:"port_tally"`
	Sinks     []export.Stats      `json:"sinks,omitempty"`
}

type inputReport struct {
	Name    string    `json:"name"`
	Packets uint64    `json:"packets"`
	First   time.Time `json:"first,omitzero"`
	Last    time.Time `json:"last,omitzero"`
	// Damaged says what was wrong with the input, when it was.
	Damaged string `json:"damaged,omitempty"`
	// OutOfOrder counts packets more than a second older than the packet
	// before them.
	OutOfOrder uint64 `json:"out_of_order,omitempty"`
}

// serviceReport is one catalog row's counters.
type serviceReport struct {
	Service   string `json:"service"`
	ServiceID uint16 `json:"service_id"`
	Proto     string `json:"proto"`
	Port      string `json:"port"`
	bpf.ServiceCounters
}

func analyze(e *env, f analyzeFlags, name string) int {
	if f.format != "table" && f.format != "json" {
		e.errorf("--format %q: want table or json", f.format)
		return exitUsage
	}
	if err := jsonReportAlone(f.format, f.outputs); err != nil {
		e.errorf("%v", err)
		return exitUsage
	}
	cat, err := f.catalog.Load()
	if err != nil {
		e.errorList(err)
		return exitUsage
	}
	source := name
	if name == "-" {
		source = "stdin"
	}
	cfg, err := f.classify.Config(cat, classify.Observer{Host: hostname(), Backend: "pcap", Mode: source})
	if err != nil {
		e.errorf("%v", err)
		return exitUsage
	}
	classifier, err := classify.New(cfg)
	if err != nil {
		e.errorf("%v", err)
		return exitUsage
	}
	// The capture first: one that cannot be read leaves no empty output
	// file behind.
	var src capture.Source
	if name == "-" {
		src, err = capture.OpenReader("stdin", e.stdin)
	} else {
		src, err = capture.Open(name)
	}
	if err != nil {
		e.errorf("%v", err)
		if _, bad := errors.AsType[*capture.InputError](err); bad {
			return exitDamagedInput
		}
		return exitFailure
	}
	defer src.Close()
	sinks, err := export.OpenAll(f.outputs, export.Options{Stdout: e.stdout})
	if err != nil {
		e.errorf("%v", err)
		return exitUsage
	}

	twin := bpf.NewTwin(cat, bpf.DefaultTwinConfig)
	v := &verdicts{
		cat: cat, classifier: classifier, sinks: sinks, snooper: rpcbind.NewSnooper(),
		keep: f.format == "json", warn: e.errorf,
		onCatalog: []func(*catalog.Catalog) error{func(c *catalog.Catalog) error { twin.SetCatalog(c); return nil }},
	}
	if f.format == "table" && !f.quiet {
		v.lines = e.stdout
	}
	r := &replay{twin: twin, verdicts: v, window: cfg.Window}
	if f.format == "json" {
		r.tally = &capture.Tally{}
	}
	twin.OnLearn(func(src, dst netip.Addr, sport, dport uint16, payload []byte) {
		v.learn(src, dst, sport, dport, payload, r.last)
	})

	var readErr error
	if name == "-" {
		readErr = r.stream(src)
	} else {
		readErr = r.file(src)
	}
	r.finish()
	delivered := closeSinks(e, sinks)

	input := inputReport{Name: source, Packets: r.packets, First: r.first, Last: r.last, OutOfOrder: r.backwards}
	if r.backwards > 0 {
		e.errorf("%s: the capture's timestamps jump back (%d times, by up to %v), so the windows and the times of the verdicts may be off",
			source, r.backwards, r.maxBack.Round(time.Millisecond))
	}
	status := exitOK
	var damaged *capture.InputError
	switch {
	case readErr == nil:
	case errors.As(readErr, &damaged):
		input.Damaged = readErr.Error()
		e.errorf("%v (the %d packets before it were analysed)", readErr, r.packets)
		status = exitDamagedInput
	default:
		e.errorf("reading %s: %v", source, readErr)
		status = exitFailure
	}
	if !delivered && status == exitOK {
		status = exitFailure
	}

	classifier.Began(r.first)
	summary := classifier.Summary()
	if f.format == "json" {
		rep := analyzeReport{
			Input: input, Summary: summary, Events: v.events, Services: serviceReports(v.cat, r.snapshot),
			Parse: parseReport(r.snapshot), PortTally: r.tally.Counts(), Sinks: sinks.Stats(),
		}
		if rep.Events == nil {
			rep.Events = []classify.Event{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			e.errorf("%v", err)
			return exitFailure
		}
		return status
	}
	if !f.quiet && v.emitted == 0 && r.packets > 0 {
		fmt.Fprintln(e.stdout, "no verdict events")
	}
	fmt.Fprintf(e.stdout, "\n%s: %d packets", source, r.packets)
	if !r.first.IsZero() {
		fmt.Fprintf(e.stdout, ", %s to %s", r.first.UTC().Format(time.RFC3339), r.last.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(e.stdout)
	if err := export.WriteSummary(e.stdout, summary); err != nil {
		e.errorf("%v", err)
		return exitFailure
	}
	return status
}

// jsonReportAlone refuses an --output to stdout beside --format json: the
// events would interleave with the JSON document.
func jsonReportAlone(format string, outputs export.SpecList) error {
	if format != "json" {
		return nil
	}
	if s, ok := outputs.ToStdout(); ok {
		return fmt.Errorf("--output %s writes to stdout, where --format json writes its document: give it a file (%s:PATH)", s.Raw, s.Format)
	}
	return nil
}

// closeSinks closes the outputs, says which events they did not deliver
// and why, and reports whether every event was delivered: a verdict a SIEM
// never got fails the command, as a lost packet is never silent.
func closeSinks(e *env, sinks *export.Set) (allDelivered bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := sinks.Close(ctx)
	if err != nil {
		e.errorf("%v", err)
	}
	allDelivered = err == nil
	for _, st := range sinks.Stats() {
		if st.Dropped == 0 {
			continue
		}
		allDelivered = false
		if err == nil { // else Close said it
			e.errorf("output %s: %d of %d events dropped%s", st.Name, st.Dropped, st.Emitted, st.LastErrorClause())
		}
	}
	return allDelivered
}

// replay runs captured packets through the twin, closing a window whenever
// capture time passes its end.
type replay struct {
	twin     *bpf.Twin
	verdicts *verdicts
	window   time.Duration
	tally    *capture.Tally

	packets     uint64
	first, last time.Time
	windowEnd   time.Time
	// prev is the last packet's time; backwards counts the packets more
	// than outOfOrderSlack older than the packet before them, and maxBack
	// is the largest such step back: a timestamp that jumps (a bad clock,
	// a damaged record) moves the windows and the verdicts' times.
	prev      time.Time
	backwards uint64
	maxBack   time.Duration
	snapshot  bpf.Snapshot
}

// outOfOrderSlack is how far a packet may be older than the one before it
// without a warning: captures merged from several interfaces or CPUs are a
// little out of order.
const outOfOrderSlack = time.Second

func (r *replay) packet(p *capture.Packet) {
	ts := p.Timestamp
	if r.packets == 0 {
		r.first = ts
		r.windowEnd = ts.Add(r.window)
	}
	if r.packets > 0 && r.prev.Sub(ts) > outOfOrderSlack {
		r.backwards++
		r.maxBack = max(r.maxBack, r.prev.Sub(ts))
	}
	r.prev = ts
	r.packets++
	if ts.After(r.last) {
		r.last = ts
	}
	if !ts.Before(r.windowEnd) {
		r.closeWindow(r.windowEnd)
		// A quiet gap longer than a window closes one window, not one per
		// empty window: nothing changes while nothing is seen. The next
		// window ends on the grid of the first, found by arithmetic: a
		// loop over a day's gap in windows of a nanosecond never ends.
		r.windowEnd = ts.Add(r.window - ts.Sub(r.windowEnd)%r.window)
	}
	if r.tally != nil {
		r.tally.Add(p)
	}
	if p.Network {
		r.twin.Network(p.EtherType, p.Data, p.WireLen, ts)
	} else {
		r.twin.Ethernet(p.Data, p.WireLen, ts)
	}
}

func (r *replay) closeWindow(at time.Time) {
	s := r.twin.Snapshot()
	s.Time = at
	r.snapshot = s
	r.verdicts.window(s)
}

// finish judges the last, partial window.
func (r *replay) finish() {
	if r.packets == 0 {
		r.snapshot = r.twin.Snapshot()
		return
	}
	r.closeWindow(r.last)
}

// file reads a capture file as fast as it can be read.
func (r *replay) file(src capture.Source) error {
	for {
		p, err := src.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		r.packet(p)
	}
}

// stream reads a capture that is still being written (tcpdump -w -). When no
// packet comes for a window of wall-clock time, the current window is closed
// anyway, so that a verdict does not wait for the next packet.
func (r *replay) stream(src capture.Source) error {
	type item struct {
		p   capture.Packet
		err error
	}
	packets := make(chan item, 256)
	go func() {
		defer close(packets)
		for {
			p, err := src.Next()
			if err != nil {
				packets <- item{err: err}
				return
			}
			cp := *p
			cp.Data = append([]byte(nil), p.Data...)
			packets <- item{p: cp}
		}
	}()
	idle := time.NewTimer(r.window)
	defer idle.Stop()
	for {
		select {
		case it, ok := <-packets:
			if !ok {
				return nil
			}
			if it.err != nil {
				if errors.Is(it.err, io.EOF) {
					return nil
				}
				return it.err
			}
			r.packet(&it.p)
			idle.Reset(r.window)
		case <-idle.C:
			if r.packets > 0 && r.last.Before(r.windowEnd) {
				r.closeWindow(r.windowEnd)
				r.windowEnd = r.windowEnd.Add(r.window)
			}
			idle.Reset(r.window)
		}
	}
}

func serviceReports(cat *catalog.Catalog, s bpf.Snapshot) []serviceReport {
	var out []serviceReport
	for id, c := range s.Services {
		if c.Packets == 0 && c.ICMPClosed+c.ICMPFiltered+c.ICMPOther == 0 {
			continue
		}
		r := serviceReport{ServiceID: uint16(id), ServiceCounters: c, Service: "(no catalog row)"}
		if e := cat.Entry(catalog.ServiceID(id)); e != nil {
			r.Service, r.Proto, r.Port = e.Name, e.Proto.String(), e.PortString()
		}
		out = append(out, r)
	}
	return out
}

func parseReport(s bpf.Snapshot) map[string]uint64 {
	out := map[string]uint64{}
	for i, n := range s.Parse {
		if n > 0 || bpf.ParseCounter(i) == bpf.ParsePackets {
			out[bpf.ParseCounter(i).String()] = n
		}
	}
	return out
}
