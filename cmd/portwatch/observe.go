package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/catalog/rpcbind"
	"portwatch/classify"
	"portwatch/export"
	"portwatch/loader/capture"
	"portwatch/probe"
)

func init() {
	register(&command{
		name:    "observe",
		summary: "watch interfaces live and report blocked required ports and unexpected open ports",
		usage: []string{
			"observe -i IFACE [-i IFACE ...] [flags]",
		},
		about: `
observe attaches portwatch's packet program to each interface: XDP on ingress
and TC on egress, so a management node sees both the requests it receives
and the answers it sends. Every window it drains the kernel's counters,
judges them, prints each verdict event as it happens and sends it to every
--output. It serves Prometheus metrics and a health check on
--web.listen-address. On SIGHUP it reloads the catalog files (--site,
--site-table); on SIGINT or SIGTERM it detaches, flushes the outputs and
prints the summary of every required service.

Backends: xdp needs root (CAP_BPF and CAP_NET_ADMIN); capture reads the
interfaces with AF_PACKET sockets (CAP_NET_RAW) and runs the same logic in
Go; auto, the default, tries xdp and falls back to capture, saying so. The
observer never changes traffic: every packet is passed on.

Exit status: 0 after SIGINT, SIGTERM or --duration with every verdict event
delivered to every --output; 2 for bad flags or catalog input (nothing was
attached); 1 when the backend could not start (no such interface, missing
privileges, another XDP program attached) or an --output lost events.`,
		setup: setupObserve,
	})
}

type observeFlags struct {
	catalog    catalog.Flags
	classify   classify.Flags
	kernel     kernelFlags
	interfaces []string
	backend    string
	outputs    export.SpecList
	listen     string
	perNode    bool
	duration   time.Duration
	quiet      bool
	readyFile  string
}

func setupObserve(fs *pflag.FlagSet) func(*env, []string) int {
	var f observeFlags
	fs.StringArrayVarP(&f.interfaces, "interface", "i", nil, "watch `IFACE` (repeatable)")
	fs.StringVar(&f.backend, "backend", "auto", "`BACKEND`: xdp (XDP + TC in the kernel), capture (AF_PACKET, no BPF), or auto (xdp, else capture)")
	f.kernel.register(fs)
	f.catalog.Register(fs)
	f.classify.Register(fs)
	fs.Var(&f.outputs, "output", "send verdict events to `SPEC` (repeatable): jsonl[:PATH], cef[:PATH], leef[:PATH], "+
		"syslog[+tcp|+tls]://HOST[:PORT], cef+syslog://..., leef+syslog://... (see docs/events.md)")
	fs.StringVar(&f.listen, "web.listen-address", ":9717", "serve /metrics and /healthz on `ADDRESS` (empty: serve nothing)")
	fs.BoolVar(&f.perNode, "metrics-per-node", false, "also export per-exchange metrics labelled with client and server addresses (one series per exchange: mind the cardinality)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after `DURATION` and print the summary (default: run until interrupted)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "do not print each event as it happens (the outputs still get them)")
	fs.StringVar(&f.readyFile, "ready-file", "", "write `FILE` once the programs are attached and the web server listens")
	_ = fs.MarkHidden("ready-file")
	// --interval is the window's other name: observe drains every window.
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "interval" {
			name = "window"
		}
		return pflag.NormalizedName(name)
	})
	return func(e *env, args []string) int {
		if len(args) > 0 {
			e.errorf("observe: unexpected argument %q (interfaces go with -i)", args[0])
			return exitUsage
		}
		if !observeSupported {
			e.errorf("observe: %v", errNoKernelBackend)
			return exitUsage
		}
		if len(f.interfaces) == 0 {
			e.errorf("observe: no interface: give one with -i IFACE (see 'ip link')")
			return exitUsage
		}
		if f.duration < 0 {
			e.errorf("--duration %s: want a positive duration, or none to run until interrupted", f.duration)
			return exitUsage
		}
		switch f.backend {
		case "auto", "xdp", "capture":
		default:
			e.errorf("--backend %q: want auto, xdp or capture", f.backend)
			return exitUsage
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return observe(ctx, e, f)
	}
}

// backend is where observe's counters come from.
type backend interface {
	Snapshot() (bpf.Snapshot, error)
	SetCatalog(*catalog.Catalog) error
	Attachments() []export.Attachment
	MapStats() []export.MapStat
	Close() error
}

func observe(ctx context.Context, e *env, f observeFlags) int {
	cat, err := f.catalog.Load()
	if err != nil {
		e.errorList(err)
		return exitUsage
	}
	if err := f.classify.Validate(); err != nil {
		e.errorf("%v", err)
		return exitUsage
	}
	sinks, err := export.OpenAll(f.outputs, export.Options{Stdout: e.stdout})
	if err != nil {
		e.errorf("%v", err)
		return exitUsage
	}
	v := &verdicts{cat: cat, sinks: sinks, snooper: rpcbind.NewSnooper(), warn: e.errorf}
	if !f.quiet {
		v.lines = e.stdout
	}
	learn := func(src, dst netip.Addr, sport, dport uint16, payload []byte) {
		v.learn(src, dst, sport, dport, payload, time.Now())
	}

	// Listen before attaching: a mistyped or busy address is then told
	// before anything touches the interfaces.
	var ln net.Listener
	if f.listen != "" {
		if ln, err = net.Listen("tcp", f.listen); err != nil {
			e.errorf("--web.listen-address %s: %v", f.listen, err)
			closeSinks(e, sinks)
			return exitFailure
		}
	}
	closeListener := func() {
		if ln != nil {
			ln.Close()
		}
	}

	be, name, mode, err := openBackend(ctx, e, f, cat, learn)
	if err != nil {
		e.errorf("%v", err)
		closeListener()
		closeSinks(e, sinks)
		var usage *usageError
		if errors.As(err, &usage) {
			return exitUsage
		}
		return exitFailure
	}
	obs := classify.Observer{Host: hostname(), Interface: strings.Join(f.interfaces, ","), Backend: name, Mode: mode}
	cfg, err := f.classify.Config(cat, obs)
	var classifier *classify.Classifier
	if err == nil {
		classifier, err = classify.New(cfg)
	}
	if err != nil {
		e.errorf("%v", err)
		closeListener()
		be.Close()
		closeSinks(e, sinks)
		return exitUsage
	}
	classifier.Began(time.Now())
	if err := v.complete(classifier, be.SetCatalog, cat); err != nil {
		e.errorf("applying a port learned while starting: %v", err)
	}

	srv, err := serveWeb(ln, f, be, v)
	if err != nil {
		e.errorf("%v", err)
		closeListener()
		be.Close()
		closeSinks(e, sinks)
		return exitFailure
	}
	if f.readyFile != "" {
		if err := os.WriteFile(f.readyFile, []byte("ready\n"), 0o644); err != nil {
			e.errorf("writing the ready file: %v", err)
		}
	}
	for _, a := range be.Attachments() {
		fmt.Fprintf(e.stderr, "portwatch: watching %s (%s, egress %s)\n", a.Interface, a.Mode, a.Egress)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ticker := time.NewTicker(cfg.Window)
	defer ticker.Stop()
	var deadline <-chan time.Time
	if f.duration > 0 {
		deadline = time.After(f.duration)
	}
	told := map[string]bool{}
	window := func() {
		for _, name := range detached(be) {
			if !told[name] {
				told[name] = true
				e.errorf("%s: the interface went away (deleted, or re-created under its name): nothing is watched there any more; restart portwatch to watch it again", name)
			}
		}
		s, err := be.Snapshot()
		if err != nil {
			e.errorf("reading the counters: %v", err)
			return
		}
		v.window(s)
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case <-ticker.C:
			window()
		case <-hup:
			next, err := f.catalog.Load()
			if err == nil {
				err = v.setCatalog(next)
			}
			if err != nil {
				e.errorf("SIGHUP: keeping the current catalog: %v", err)
			} else {
				fmt.Fprintln(e.stderr, "portwatch: SIGHUP: catalog reloaded")
			}
		}
	}
	if err := flush(be); err != nil {
		e.errorf("%v", err)
	}
	window()
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if srv != nil {
		_ = srv.Shutdown(shutdown)
	}
	cancel()
	status := exitOK
	if err := be.Close(); err != nil {
		e.errorf("detaching: %v", err)
		status = exitFailure
	}
	if !closeSinks(e, sinks) {
		status = exitFailure
	}
	fmt.Fprintln(e.stdout)
	if err := export.WriteSummary(e.stdout, v.classifier.Summary()); err != nil {
		e.errorf("%v", err)
		status = exitFailure
	}
	return status
}

// flush lets a backend that holds packets not yet counted count them: the
// capture backend's kernel ring hands them over up to two block timeouts
// late. The last window and the observer's answers to probe must hold every
// packet seen before them, as the kernel backend's do.
func flush(be backend) error {
	if f, ok := be.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// detached returns the interfaces a backend no longer watches (the kernel
// backend's: the interface was deleted); none for a backend that cannot
// tell.
func detached(be backend) []string {
	d, ok := be.(interface{ Detached() ([]string, error) })
	if !ok {
		return nil
	}
	names, err := d.Detached()
	if err != nil {
		return nil
	}
	return names
}

// errNoKernelBackend is why observe does not run where there is no Linux
// (AIX), and what to do instead.
var errNoKernelBackend = errors.New("live capture needs Linux (XDP or AF_PACKET); here, let tcpdump capture and portwatch analyze the stream: " +
	"tcpdump -U -s 256 -w - -i en0 | portwatch analyze -; an iptrace file is no pcap, but Wireshark's editcap converts it: " +
	"editcap -F pcap trace.bin trace.pcap, then portwatch analyze trace.pcap")

// usageError is a backend failure caused by the command line.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// openBackend opens the chosen backend; with auto, the kernel one and else
// the capture one, saying why.
func openBackend(ctx context.Context, e *env, f observeFlags, cat *catalog.Catalog,
	learn func(src, dst netip.Addr, sport, dport uint16, payload []byte)) (backend, string, string, error) {
	if f.backend != "capture" {
		kb, err := openKernel(ctx, f, cat, learn, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err == nil {
			return kb, "xdp", kb.mode(), nil
		}
		if f.backend == "xdp" || !kernelFallbackAllowed(err) {
			return nil, "", "", err
		}
		fmt.Fprintf(e.stderr, "portwatch: the XDP backend is not available (%v); falling back to AF_PACKET capture (--backend capture)\n", err)
	}
	cb, err := capture.StartBackend(f.interfaces, capture.BackendOptions{Catalog: cat, Learn: learn})
	if err != nil {
		return nil, "", "", err
	}
	return &captureBackend{cb}, "capture", "afpacket", nil
}

// captureBackend adapts the live capture backend.
type captureBackend struct{ *capture.Backend }

func (c *captureBackend) Attachments() []export.Attachment {
	var out []export.Attachment
	for _, name := range c.Interfaces() {
		out = append(out, export.Attachment{Interface: name, Mode: "capture", Egress: "afpacket"})
	}
	return out
}

func (c *captureBackend) MapStats() []export.MapStat { return nil }

// serveWeb serves /metrics, the observer's endpoint for probe and the
// health check on ln (none when ln is nil).
func serveWeb(ln net.Listener, f observeFlags, be backend, v *verdicts) (*http.Server, error) {
	if ln == nil {
		return nil, nil
	}
	collector := export.NewCollector(export.MetricsSources{
		Snapshot:    be.Snapshot,
		Catalog:     func() *catalog.Catalog { v.mu.Lock(); defer v.mu.Unlock(); return v.cat },
		Verdicts:    v.classifier.Blocked,
		Sinks:       v.sinks.Stats,
		Attachments: be.Attachments,
		MapStats:    be.MapStats,
		PerNode:     f.perNode,
		Version:     version,
	})
	reg, err := export.NewMetricsRegistry(collector)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", export.NewMetricsHandler(reg))
	mux.Handle(probe.ExchangesPath, observerAPI{be: be, v: v})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if gone := detached(be); len(gone) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "detached: %s (the interface went away; restart portwatch)\n", strings.Join(gone, " "))
		} else {
			io.WriteString(w, "ok\n")
		}
		for _, a := range be.Attachments() {
			fmt.Fprintf(w, "%s %s %s\n", a.Interface, a.Mode, a.Egress)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}
