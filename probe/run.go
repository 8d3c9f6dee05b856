package probe

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"portwatch/catalog"
	"portwatch/catalog/rpcbind"
)

// Defaults of Config.
const (
	DefaultTimeout       = time.Second
	DefaultRetries       = 2
	DefaultConcurrency   = 256
	DefaultRate          = 1000
	DefaultTFTPFile      = "portwatch-probe"
	DefaultSNMPCommunity = "public"
	// DefaultSettle is how long probe waits after its last request before
	// it reads the observer again: the capture backend hands packets to
	// the counters a moment after they cross the interface.
	DefaultSettle = 500 * time.Millisecond
)

// Resolver turns host names into addresses (net.DefaultResolver does).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config says what to probe, and how hard.
type Config struct {
	Catalog *catalog.Catalog
	// Role is what the targets are: mn (management or service node), bmc,
	// switch, or cn. It picks the catalog rows that apply.
	Role catalog.Role
	// Services, when set, keeps only these rows (NAME or NAME/PROTO).
	Services []string

	// Timeout is the wait for an answer to one request; Retries the
	// requests sent again after silence (TCP: the kernel's SYN
	// retransmissions within Timeout × (Retries+1)).
	Timeout time.Duration
	Retries int
	// Concurrency bounds the probes in flight at once, over all targets.
	Concurrency int
	// Rate bounds the requests sent per second, over all targets; 0 means
	// no bound. The kernel's own SYN retransmissions are not counted.
	Rate float64

	// DHCPUnicast, when valid, is a relay or server the DISCOVER is sent to
	// from port 68, instead of a broadcast from 0.0.0.0.
	DHCPUnicast netip.Addr
	// DHCPInterface is where the broadcast goes; empty means the interface
	// of the route to the target.
	DHCPInterface string
	// DHCPMAC is the client hardware address in the DISCOVER; empty means
	// the interface's own.
	DHCPMAC net.HardwareAddr
	// TFTPFile is the file the read request asks for: an ERROR "file not
	// found" proves the path as well as DATA does.
	TFTPFile string
	// DNSName is the name queried; empty means the target's reverse name.
	DNSName string
	// SNMPCommunity is the SNMPv2c community of the GET.
	SNMPCommunity string

	// Observer, when set, is asked before and after the probes (Refine).
	Observer *ObserverClient
	// ObserverClient is this host's address as the observer sees it, when
	// NAT changes it.
	ObserverClient netip.Addr
	// Settle is the wait after the last probe before the observer is read.
	Settle time.Duration

	Resolver Resolver
}

func (c *Config) withDefaults() error {
	if c.Catalog == nil {
		return errors.New("probe: no catalog")
	}
	if c.Role == "" {
		c.Role = catalog.RoleMN
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries < 0 {
		return fmt.Errorf("retries %d: want 0 or more", c.Retries)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Rate < 0 {
		return fmt.Errorf("rate %g: want 0 (no bound) or more packets per second", c.Rate)
	}
	if c.TFTPFile == "" {
		c.TFTPFile = DefaultTFTPFile
	}
	if c.SNMPCommunity == "" {
		c.SNMPCommunity = DefaultSNMPCommunity
	}
	// The DISCOVER is Ethernet's (htype 1, hlen 6), as the observer keys
	// DHCP exchanges: a longer address (InfiniBand's 20 bytes) would make
	// a DISCOVER no server answers as meant.
	if c.DHCPMAC != nil && len(c.DHCPMAC) != 6 {
		return fmt.Errorf("DHCP client hardware address %s: want an Ethernet address (6 bytes)", c.DHCPMAC)
	}
	if c.DHCPUnicast.IsValid() && !c.DHCPUnicast.Unmap().Is4() {
		return fmt.Errorf("--dhcp-unicast %s: DHCP is IPv4", c.DHCPUnicast)
	}
	if c.Settle <= 0 {
		c.Settle = DefaultSettle
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	return nil
}

// Report is what a run found.
type Report struct {
	Results []Result
	// Failed are the targets that could not be probed at all.
	Failed []TargetError
	// Skipped are the rows of the role that no probe applies to.
	Skipped []Skip
	// Observer says whether the observer confirmed the results.
	Observer   *ObserverStatus
	Start, End time.Time
}

// ObserverStatus is how the observer took part in the run.
type ObserverStatus struct {
	URL  string        `json:"url"`
	Info *ObserverInfo `json:"observer,omitempty"`
	// Error, when set, is why the results are not confirmed.
	Error string `json:"error,omitempty"`
}

// TargetError is a target that could not be probed.
type TargetError struct {
	Target Target
	Err    error
}

func (e TargetError) Error() string {
	return fmt.Sprintf("%s: target %q: %v", e.Target.Origin, e.Target.Name, e.Err)
}

// Run probes every target with every row of the plan, at most
// Concurrency at a time and Rate requests per second, and asks the
// observer when there is one.
func Run(ctx context.Context, cfg Config, targets []Target) (*Report, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	checks, skips, err := Plan(cfg.Catalog, cfg.Role, cfg.Services)
	if err != nil {
		return nil, err
	}
	rep := &Report{Skipped: skips, Start: time.Now()}
	limiter := rate.NewLimiter(rate.Inf, 1)
	if cfg.Rate > 0 {
		// A small burst keeps the pace even: no volley of hundreds of
		// packets when many probes start at once.
		limiter = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, min(int(cfg.Rate/100), 10)))
	}
	avoid := map[uint16]bool{}
	for _, b := range cfg.Catalog.PortBindings() {
		avoid[b.Port] = true
	}
	r := &runner{
		cfg:    cfg,
		pacer:  &pacer{timeout: cfg.Timeout, retries: cfg.Retries, wait: limiter.Wait, avoid: avoid},
		sem:    make(chan struct{}, cfg.Concurrency),
		runID:  randomHex(4),
		ifaces: map[netip.Addr]*net.Interface{},
	}
	runs, failed := r.prepare(ctx, targets, checks)
	rep.Failed = failed

	var before *ExchangesDoc
	if cfg.Observer != nil {
		rep.Observer = &ObserverStatus{URL: cfg.Observer.URL()}
		before, err = cfg.Observer.Exchanges(ctx, r.observerQuery(runs))
		if err != nil {
			rep.Observer.Error = err.Error()
		} else {
			rep.Observer.Info = &before.Observer
		}
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tr := range runs {
		for _, c := range checks {
			wg.Go(func() {
				res := r.probe(ctx, tr, c)
				mu.Lock()
				rep.Results = append(rep.Results, res)
				mu.Unlock()
			})
		}
	}
	wg.Wait()

	if before != nil {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
		}
		after, err := cfg.Observer.Exchanges(ctx, r.observerQuery(runs))
		if err != nil {
			rep.Observer.Error = err.Error()
		} else {
			Refine(rep.Results, before, after, RefineOptions{Client: cfg.ObserverClient})
		}
	}
	// After the observer: what it explains needs no second look.
	r.slowPass(ctx, runs, checks, rep.Results)

	order := map[string]int{}
	for i, tr := range runs {
		order[tr.target.Name] = i
	}
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(order[a.Target], order[b.Target]), cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Service, b.Service))
	})
	rep.End = time.Now()
	return rep, nil
}

// runner is one run's shared state.
type runner struct {
	cfg   Config
	pacer *pacer
	sem   chan struct{}
	runID string

	mu     sync.Mutex
	ifaces map[netip.Addr]*net.Interface
}

// targetRun is one target being probed.
type targetRun struct {
	target Target
	addr   netip.Addr
	// source is this host's address on the route to the target.
	source netip.Addr
	iface  *net.Interface
	mac    net.HardwareAddr // the DHCP client hardware address
	// dhcpErr is why the DHCP rows cannot be probed.
	dhcpErr error

	// rpcbind's table, asked once for the sunrpc row and mountd's port.
	dumpOnce     sync.Once
	dumpOutcome  outcome
	dumpMappings []rpcbind.Mapping
}

// prepare resolves the targets and finds this host's address towards each.
// Nothing is sent to a target yet (a UDP connect only looks up a route).
func (r *runner) prepare(ctx context.Context, targets []Target, checks []Check) ([]*targetRun, []TargetError) {
	runs := make([]*targetRun, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for i, t := range targets {
		if seen[t.Name] {
			errs[i] = errDuplicate
			continue
		}
		seen[t.Name] = true
		wg.Go(func() {
			r.sem <- struct{}{}
			defer func() { <-r.sem }()
			runs[i], errs[i] = r.prepareOne(ctx, t, checks)
		})
	}
	wg.Wait()
	var out []*targetRun
	var failed []TargetError
	for i, tr := range runs {
		switch {
		case errors.Is(errs[i], errDuplicate):
		case errs[i] != nil:
			failed = append(failed, TargetError{Target: targets[i], Err: errs[i]})
		default:
			out = append(out, tr)
		}
	}
	return out, failed
}

var errDuplicate = errors.New("given twice")

func (r *runner) prepareOne(ctx context.Context, t Target, checks []Check) (*targetRun, error) {
	addr, err := netip.ParseAddr(t.Name)
	if err != nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, lerr := r.cfg.Resolver.LookupNetIP(lctx, "ip", t.Name)
		cancel()
		if lerr != nil || len(addrs) == 0 {
			var dnsErr *net.DNSError
			if errors.As(lerr, &dnsErr) && dnsErr.IsNotFound {
				return nil, errors.New("no such host (check the name in /etc/hosts or DNS, or give its address)")
			}
			return nil, fmt.Errorf("resolving the name: %v", lerr)
		}
		// IPv4 first: xCAT's management networks are IPv4 almost always.
		addr = addrs[0]
		for _, a := range addrs {
			if a.Unmap().Is4() {
				addr = a
				break
			}
		}
	}
	addr = addr.Unmap()
	tr := &targetRun{target: t, addr: addr}
	tr.source, err = routeSource(addr)
	if err != nil {
		return nil, err
	}
	for _, c := range checks {
		if c.Request == requestDHCP || c.Request == requestPXE {
			// Only the DHCP rows fail when this does.
			tr.dhcpErr = r.prepareDHCP(tr)
		}
	}
	return tr, nil
}

// routeSource is the address this host sends from to reach a: connecting a
// UDP socket picks the route and sends nothing.
func routeSource(a netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP(networkFor("udp", a), nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to it from this host (%v)", unwrapOpError(err))
	}
	defer c.Close()
	return netip.MustParseAddrPort(c.LocalAddr().String()).Addr().Unmap(), nil
}

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

// prepareDHCP finds the interface a broadcast DISCOVER goes out of, and the
// client hardware address it carries.
func (r *runner) prepareDHCP(tr *targetRun) error {
	if !tr.addr.Is4() {
		return errors.New("DHCP (bootps) is IPv4: give an IPv4 address, or leave bootps out with --service")
	}
	var err error
	if r.cfg.DHCPInterface != "" {
		tr.iface, err = net.InterfaceByName(r.cfg.DHCPInterface)
		if err != nil {
			return fmt.Errorf("--dhcp-interface %s: %v (see 'ip link')", r.cfg.DHCPInterface, err)
		}
	} else if tr.iface, err = r.interfaceOf(tr.source); err != nil {
		return err
	}
	tr.mac = r.cfg.DHCPMAC
	if tr.mac == nil {
		if len(tr.iface.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet address for the DHCP DISCOVER (InfiniBand's is 20 bytes): give one with --dhcp-mac", tr.iface.Name)
		}
		tr.mac = tr.iface.HardwareAddr
	}
	return nil
}

func (r *runner) interfaceOf(a netip.Addr) (*net.Interface, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ifc, ok := r.ifaces[a]; ok {
		return ifc, nil
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifcs {
		addrs, _ := ifcs[i].Addrs()
		for _, ad := range addrs {
			if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr().Unmap() == a {
				r.ifaces[a] = &ifcs[i]
				return &ifcs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no interface holds %s, this host's address towards the target: name one with --dhcp-interface", a)
}

// observerQuery asks for this host's exchanges: by each source address,
// and by the DHCP client hardware addresses.
func (r *runner) observerQuery(runs []*targetRun) ExchangeQuery {
	var q ExchangeQuery
	if r.cfg.ObserverClient.IsValid() {
		q.Clients = []netip.Addr{r.cfg.ObserverClient}
	}
	for _, tr := range runs {
		if !r.cfg.ObserverClient.IsValid() && !slices.Contains(q.Clients, tr.source) {
			q.Clients = append(q.Clients, tr.source)
		}
		if tr.mac != nil && !slices.ContainsFunc(q.ClientMACs, func(m net.HardwareAddr) bool { return bytes.Equal(m, tr.mac) }) {
			q.ClientMACs = append(q.ClientMACs, tr.mac)
		}
		// Servers are left out: the observer then answers for every
		// server of these clients, and a list of 1,000 targets stays
		// out of the URL.
	}
	if len(q.Clients) > MaxQueryValues {
		q.Clients = q.Clients[:MaxQueryValues]
	}
	if len(q.ClientMACs) > MaxQueryValues {
		q.ClientMACs = q.ClientMACs[:MaxQueryValues]
	}
	return q
}

// slowPassSpacing is the pause between the requests of the slow pass: just
// over Linux's default net.ipv4.icmp_ratelimit (1000 ms), the time the
// target needs to earn the right to send one more ICMP error.
const slowPassSpacing = 1100 * time.Millisecond

// slowPassStart is the pause before its first request. The first pass's
// last requests went out a timeout (1 s by default) before it ended, so
// the target has earned one ICMP error again; the pause is the margin for
// its clock, which counts in ticks of up to 10 ms.
const slowPassStart = 100 * time.Millisecond

// slowPassWait bounds the wait for an answer on the slow pass: it looks
// for an ICMP error, which comes back within a round trip; the first pass
// already gave real answers the full timeout.
const slowPassWait = 300 * time.Millisecond

// rateLimitHint explains silence from a host that sent ICMP errors for
// other ports.
const rateLimitHint = "this host sent ICMP errors for other ports in this run, and hosts limit them " +
	"(Linux: a burst of 6, then 1 a second per destination): the silence may be such an error held back; probe this row alone to be sure"

// slowPass probes again, one at a time per target and slowPassSpacing
// apart, the rows that got no answer (or that the observer calls
// service-silent) from a target that did send ICMP errors for others: the
// answer that was missing may be an ICMP error the target's rate limit held
// back, as nmap's UDP scans find. One-way rows are not sent again (their
// silence is normal); they get the hint.
func (r *runner) slowPass(ctx context.Context, runs []*targetRun, checks []Check, results []Result) {
	sentICMP := map[string]bool{}
	silent := map[string][]int{}
	for i, res := range results {
		if res.ICMP != nil {
			sentICMP[res.Target] = true
		}
		if res.State == StateNoAnswer || res.State == StateServiceSilent {
			silent[res.Target] = append(silent[res.Target], i)
		}
	}
	byKey := map[string]Check{}
	for _, c := range checks {
		byKey[c.Entry.Key()] = c
	}
	slow := &pacer{timeout: min(r.cfg.Timeout, slowPassWait), wait: r.pacer.wait, avoid: r.pacer.avoid}
	slow.noPrivilegedPorts.Store(r.pacer.noPrivilegedPorts.Load())
	var wg sync.WaitGroup
	for _, tr := range runs {
		if !sentICMP[tr.target.Name] {
			continue
		}
		wg.Go(func() {
			pause := slowPassStart
			for _, i := range silent[tr.target.Name] {
				// A DHCP server answers no ICMP error; rpcbind's table was
				// asked once for the mountd rows too.
				if req := results[i].Request; req == requestDHCP || req == requestRPCBind || results[i].Reason == ReasonOneWay {
					results[i].Evidence += "; " + rateLimitHint
					continue
				}
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return
				}
				pause = slowPassSpacing
				again := r.probeWith(ctx, slow, tr, byKey[results[i].Key()])
				switch again.State {
				case StateNoAnswer:
					results[i].Attempts += again.Attempts
					results[i].Evidence += "; silent again on a slower pass, so not the target's ICMP rate limit"
					continue
				case StateError:
					// Interrupted, or a local failure: the second pass
					// says nothing of the target; keep the first.
					results[i].Evidence += "; a slower second pass could not be made (" + again.Evidence + ")"
					continue
				}
				again.Attempts += results[i].Attempts
				again.Start = results[i].Start
				again.Observer = results[i].Observer
				again.Evidence += "; found on a slower second pass: the target's ICMP rate limit had held the first answers back"
				results[i] = again
			}
		})
	}
	wg.Wait()
}

// probe runs one check on one target, holding a concurrency slot.
func (r *runner) probe(ctx context.Context, tr *targetRun, c Check) Result {
	return r.probeWith(ctx, r.pacer, tr, c)
}

func (r *runner) probeWith(ctx context.Context, p *pacer, tr *targetRun, c Check) Result {
	e := c.Entry
	res := Result{
		Target: tr.target.Name, Address: tr.addr, Service: e.Name, ServiceID: e.ID, Proto: e.Proto, Port: e.Port,
		Required: r.cfg.Catalog.IsRequired(e), Status: r.cfg.Catalog.Status(e), Request: c.Request,
		Source: netip.AddrPortFrom(tr.source, 0),
	}
	if c.Request == requestNone {
		res.State, res.Reason, res.Evidence = StateUntestable, ReasonNoRequest, c.Why
		return res
	}
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	res.Start = time.Now()
	o := r.execute(ctx, p, tr, c, &res)
	res.End = time.Now()
	res.State, res.Reason, res.Evidence = o.state, o.reason, o.evidence
	res.RTT, res.Attempts, res.ICMP = o.rtt, o.attempts, o.icmp
	if refusedOnTheWay(o.icmp, tr.addr, res.State) {
		// A port unreachable from another host than the target: a
		// firewall on the way rejects (iptables' REJECT sends just
		// that), the request never got to the target to be refused.
		res.State = StateFiltered
		res.Evidence += ", not from the target: a firewall on the way rejects it"
	}
	if o.source.IsValid() {
		if o.source.Addr().IsUnspecified() && c.Request != requestDHCP {
			res.Source = netip.AddrPortFrom(tr.source, o.source.Port())
		} else {
			res.Source = netip.AddrPortFrom(o.source.Addr().Unmap(), o.source.Port())
		}
	}
	return res
}

// refusedOnTheWay reports a "closed" that a host other than the target
// answered: DHCP, which asks any server, aside.
func refusedOnTheWay(icmp *ICMPError, target netip.Addr, state State) bool {
	if icmp == nil || state != StateClosed || !icmp.From.IsValid() || !target.IsValid() {
		return false
	}
	return icmp.From.Unmap() != target.Unmap() && !target.IsUnspecified() && !target.IsMulticast() &&
		target != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// execute sends the check's request; it may set the result's port (a
// port learned from rpcbind) and client hardware address.
func (r *runner) execute(ctx context.Context, p *pacer, tr *targetRun, c Check, res *Result) outcome {
	e := c.Entry
	port, note := e.Port, ""
	switch {
	case e.Dynamic && e.RPCProgram != 0:
		// mountd: ask rpcbind, as an NFS client does before mounting.
		learned, why, o := r.rpcPort(ctx, tr, e)
		if learned == 0 {
			return o
		}
		port, note, res.Port = learned, why, learned
	case !e.HasPort():
		return outcome{state: StateError, reason: ReasonPortUnknown,
			evidence: "the catalog has no port for this row: give one with --port or --site"}
	}
	return withNote(r.send(ctx, p, tr, c, netip.AddrPortFrom(tr.addr, port), res), note)
}

func (r *runner) send(ctx context.Context, p *pacer, tr *targetRun, c Check, dst netip.AddrPort, res *Result) outcome {
	e := c.Entry
	switch c.Request {
	case requestTCPConnect:
		return p.connectTCP(ctx, dst, e.PrivilegedSource)
	case requestTFTP:
		return p.exchangeTFTP(ctx, dst, r.cfg.TFTPFile)
	case requestDHCP:
		if tr.dhcpErr != nil {
			return outcome{state: StateError, reason: ReasonLocalError, evidence: tr.dhcpErr.Error()}
		}
		res.ClientMAC = tr.mac
		msg := dhcpMessage{Type: dhcpDiscover, XID: randomU32(), MAC: tr.mac, Broadcast: true}
		if r.cfg.DHCPUnicast.IsValid() {
			return p.exchangeDHCPUnicast(ctx, r.cfg.DHCPUnicast.Unmap(), tr.addr, msg)
		}
		return p.exchangeDHCPBroadcast(ctx, tr.iface.Index, tr.addr, msg)
	case requestRPCBind:
		o, _ := r.dump(ctx, tr, e)
		return o
	case requestMount:
		return r.rpcNull(ctx, p, dst, e, programMount, 3, "MOUNT v3 NULL")
	case requestNFS:
		return r.rpcNull(ctx, p, dst, e, programNFS, 3, "NFS v3 NULL")
	}
	if c.Request == requestPXE && !tr.addr.Is4() {
		return outcome{state: StateError, reason: ReasonLocalError, evidence: "PXE boot-server discovery is DHCPv4: give an IPv4 address"}
	}
	req, err := r.datagram(c, tr)
	if err != nil {
		return outcome{state: StateError, reason: ReasonLocalError, evidence: err.Error()}
	}
	return p.exchangeUDP(ctx, dst, e.PrivilegedSource, req)
}

// datagram builds the request of a UDP row answered from its own port.
func (r *runner) datagram(c Check, tr *targetRun) (datagramRequest, error) {
	switch c.Request {
	case requestEcho:
		payload := []byte("portwatch probe " + r.runID + ": echo\n")
		return datagramRequest{payload: payload, parse: func(b []byte) (string, error) {
			if !bytes.Equal(b, payload) {
				return "", errNotOurs
			}
			return fmt.Sprintf("echo: the %d bytes came back", len(b)), nil
		}}, nil
	case requestDNS:
		name := r.cfg.DNSName
		if name == "" {
			name = reverseName(tr.addr)
		}
		id := uint16(randomU32())
		q, err := dnsQuery(id, name, dnsQueryType(name))
		if err != nil {
			return datagramRequest{}, err
		}
		return datagramRequest{payload: q, parse: func(b []byte) (string, error) {
			a, err := parseDNSResponse(b, id)
			return fmt.Sprintf("%s for %s", a, name), err
		}}, nil
	case requestSNMP:
		id := int32(randomU32() & 0x7fffffff)
		return datagramRequest{payload: snmpGet(r.cfg.SNMPCommunity, id), parse: func(b []byte) (string, error) {
			a, err := parseSNMPResponse(b, id)
			return a.String(), err
		}}, nil
	case requestRMCP:
		tag := byte(randomU32())
		return datagramRequest{payload: asfPing(tag), parse: func(b []byte) (string, error) {
			p, err := parseASFPong(b, tag)
			return p.String(), err
		}}, nil
	case requestPXE:
		msg := dhcpMessage{Type: dhcpRequest, XID: randomU32(), MAC: pxeMAC(tr), CIAddr: tr.source}
		return datagramRequest{payload: msg.Marshal(), parse: func(b []byte) (string, error) {
			rep, err := parseDHCPReply(b, msg.XID, msg.MAC)
			return "boot server: " + rep.String(), err
		}}, nil
	case requestSyslog:
		return datagramRequest{payload: r.syslogLine(tr, c.Entry), oneWay: true, once: true, parse: anyAnswer}, nil
	case requestEmpty:
		return datagramRequest{payload: []byte{}, oneWay: true, parse: anyAnswer}, nil
	}
	return datagramRequest{}, fmt.Errorf("no request for %s", c.Request)
}

func anyAnswer(b []byte) (string, error) {
	return fmt.Sprintf("answered with %d bytes", len(b)), nil
}

// pxeMAC is the client hardware address of a PXE boot-server request: the
// DHCP one when there is one, else that of the interface towards the
// target, else a locally administered address.
func pxeMAC(tr *targetRun) net.HardwareAddr {
	if tr.mac != nil {
		return tr.mac
	}
	if tr.iface != nil && len(tr.iface.HardwareAddr) >= 6 {
		return tr.iface.HardwareAddr
	}
	return net.HardwareAddr{0x02, 0x70, 0x77, 0x00, 0x00, 0x01}
}

// syslogLine is an RFC 5424 message (facility user, severity info) that
// says who sent it and why, so that the administrator who finds it in the
// log knows what it is.
func (r *runner) syslogLine(tr *targetRun, e *catalog.Entry) []byte {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	return fmt.Appendf(nil, "<14>1 %s %s portwatch - probe - portwatch probe %s: checking that syslog over %s/%d reaches %s from %s",
		time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), host, r.runID, e.Proto, e.Port, tr.addr, tr.source)
}

// rpcNull calls procedure 0 of an RPC program over UDP.
func (r *runner) rpcNull(ctx context.Context, p *pacer, dst netip.AddrPort, e *catalog.Entry, program, version uint32, what string) outcome {
	xid := randomU32()
	return p.exchangeUDP(ctx, dst, e.PrivilegedSource, datagramRequest{
		payload: rpcCall(xid, program, version, procNull),
		parse: func(b []byte) (string, error) {
			rep, err := parseRPCReply(b, xid)
			return rep.describe(what), err
		}})
}

// dump asks rpcbind for its table once per target: for the sunrpc row and
// for mountd's port.
func (r *runner) dump(ctx context.Context, tr *targetRun, e *catalog.Entry) (outcome, []rpcbind.Mapping) {
	tr.dumpOnce.Do(func() {
		xid := randomU32()
		call := rpcCall(xid, programPortmapper, 2, procDump)
		port := e.Port
		if port == 0 {
			port = 111
		}
		tr.dumpOutcome = r.pacer.exchangeUDP(ctx, netip.AddrPortFrom(tr.addr, port), e.PrivilegedSource, datagramRequest{
			payload: call,
			parse: func(b []byte) (string, error) {
				rep, err := parseRPCReply(b, xid)
				if err != nil || !rep.Accepted || rep.AcceptStat != 0 {
					return rep.describe("rpcbind DUMP"), err
				}
				tr.dumpMappings = dumpMappings(call, b, tr.addr)
				return describeMappings(tr.dumpMappings), nil
			}})
	})
	return tr.dumpOutcome, tr.dumpMappings
}

func describeMappings(ms []rpcbind.Mapping) string {
	s := fmt.Sprintf("rpcbind DUMP: %d registrations", len(ms))
	var mountd []string
	for _, m := range ms {
		if m.Program == programMount {
			mountd = append(mountd, fmt.Sprintf("%s/%d", m.Proto, m.Port))
		}
	}
	slices.Sort(mountd)
	mountd = slices.Compact(mountd)
	if len(mountd) > 0 {
		s += fmt.Sprintf("; mountd on %v", mountd)
	} else {
		s += "; no mountd registered"
	}
	return s
}

// rpcPort is the port of a dynamic RPC row (mountd): what rpcbind gives out
// (clients ask it too), else the catalog's fixed port.
func (r *runner) rpcPort(ctx context.Context, tr *targetRun, e *catalog.Entry) (uint16, string, outcome) {
	portmapper := r.cfg.Catalog.ByKey("sunrpc-udp/udp")
	if portmapper == nil {
		portmapper = &catalog.Entry{Name: "sunrpc-udp", Proto: catalog.UDP, Port: 111, PortLast: 111}
	}
	_, mappings := r.dump(ctx, tr, portmapper)
	var best rpcbind.Mapping
	for _, m := range mappings {
		if m.Program == e.RPCProgram && m.Proto == e.Proto && (best.Port == 0 || m.Version == 3) {
			best = m
		}
	}
	switch {
	case best.Port != 0 && e.HasPort() && best.Port != e.Port:
		return best.Port, fmt.Sprintf("rpcbind gives port %d, the catalog says %d: clients use rpcbind's", best.Port, e.Port), outcome{}
	case best.Port != 0:
		return best.Port, fmt.Sprintf("port %d from rpcbind", best.Port), outcome{}
	case e.HasPort():
		return e.Port, "rpcbind did not give mountd's port: the catalog's", outcome{}
	}
	return 0, "", outcome{state: StateError, reason: ReasonPortUnknown,
		evidence: fmt.Sprintf("the port is unknown: rpcbind did not answer or lists no RPC program %d over %s; give it with --port %s=PORT",
			e.RPCProgram, e.Proto, e.Name)}
}

func randomU32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
