package lab

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// ProbeSpec is one client exchange with one server port of the lab, by
// name: the names scenario headers use ("# probe: tftp=timeout").
type ProbeSpec struct {
	Name   string
	Server Role // the host that serves the port: mn, bmc or sw
	Proto  string
	Port   int
	// Service is the catalog row ("name/proto") the traffic belongs to;
	// empty for a port that no row names.
	Service     string
	Description string
	run         func(l *Lab, ctx context.Context, h Host) Result
}

var probeSpecs = []ProbeSpec{
	{"dhcp", RoleMN, "udp", 67, "bootps/udp", "busybox udhcpc: DISCOVER/REQUEST, relayed by fw to mn's dnsmasq",
		func(l *Lab, ctx context.Context, h Host) Result { return l.DHCP(ctx, h) }},
	{"tftp", RoleMN, "udp", 69, "tftp-udp/udp", "tftp-hpa: the PXE boot file from dnsmasq (answers from an ephemeral port)",
		func(l *Lab, ctx context.Context, h Host) Result { return l.TFTPGet(ctx, h) }},
	{"http", RoleMN, "tcp", 80, "www-tcp/tcp", "curl: the install image from nginx",
		func(l *Lab, ctx context.Context, h Host) Result { return l.HTTPGet(ctx, h) }},
	{"http-alt", RoleMN, "tcp", AltHTTPPort, "", "curl: nginx's second server, on a port no catalog row names",
		func(l *Lab, ctx context.Context, h Host) Result { return l.HTTPAlt(ctx, h) }},
	{"dns", RoleMN, "udp", 53, "domain-udp/udp", "Go resolver: mn's name from dnsmasq",
		func(l *Lab, ctx context.Context, h Host) Result { return l.DNS(ctx, h) }},
	{"ssh", RoleMN, "tcp", 22, "ssh-tcp/tcp", "ssh in BatchMode with the lab's key",
		func(l *Lab, ctx context.Context, h Host) Result { return l.SSH(ctx, h) }},
	{"rsync", RoleMN, "tcp", 873, "rsync/tcp", "rsync: the install image from the rsync daemon",
		func(l *Lab, ctx context.Context, h Host) Result { return l.Rsync(ctx, h) }},
	{"syslog-udp", RoleMN, "udp", 514, "rsyslogd/udp", "logger --udp, checked in rsyslogd's file",
		func(l *Lab, ctx context.Context, h Host) Result { return l.Syslog(ctx, h, "udp") }},
	{"syslog-tcp", RoleMN, "tcp", 514, "rsyslogd/tcp", "logger --tcp, checked in rsyslogd's file",
		func(l *Lab, ctx context.Context, h Host) Result { return l.Syslog(ctx, h, "tcp") }},
	{"rpcbind", RoleMN, "udp", 111, "sunrpc-udp/udp", "rpcinfo -T udp: rpcbind's table over UDP lists mountd",
		func(l *Lab, ctx context.Context, h Host) Result { return l.RPCInfo(ctx, h) }},
	{"mountd", RoleMN, "udp", MountdPort, "mount-udp/udp", "rpcinfo -u: mountd's NULL procedure, port from rpcbind",
		func(l *Lab, ctx context.Context, h Host) Result { return l.Mountd(ctx, h) }},
	{"xcatd-tcp", RoleMN, "tcp", 3001, "xcatdport/tcp", "Go: a request line to xcatd",
		func(l *Lab, ctx context.Context, h Host) Result { return l.XcatdTCP(ctx, h, 3001, "ping") }},
	{"xcatd-udp", RoleMN, "udp", 3001, "xcatdport/udp", "Go: a datagram to xcatd",
		func(l *Lab, ctx context.Context, h Host) Result { return l.XcatdUDP(ctx, h, 3001, "ping") }},
	{"status-tcp", RoleMN, "tcp", 3002, "xcatiport/tcp", "Go: \"installstatus\" to the install-status port",
		func(l *Lab, ctx context.Context, h Host) Result {
			return l.XcatdTCP(ctx, h, 3002, "installstatus installing")
		}},
	{"status-udp", RoleMN, "udp", 3002, "xcatiport/udp", "Go: a datagram to the install-status port",
		func(l *Lab, ctx context.Context, h Host) Result {
			return l.XcatdUDP(ctx, h, 3002, "installstatus installing")
		}},
	{"xcatlog-tcp", RoleMN, "tcp", 3003, "xcatlport/tcp", "Go: a request line to xcatd's log port",
		func(l *Lab, ctx context.Context, h Host) Result { return l.XcatdTCP(ctx, h, 3003, "ping") }},
	{"ipmi", RoleBMC, "udp", 623, "ipmi/udp", "ipmitool -I lanplus: chassis power status from the BMC",
		func(l *Lab, ctx context.Context, h Host) Result { return l.IPMI(ctx, h) }},
	{"snmp", RoleSwitch, "udp", 161, "snmp/udp", "snmpget: sysName from the switch",
		func(l *Lab, ctx context.Context, h Host) Result { return l.SNMPGet(ctx, h) }},
}

// Probes describes every probe.
func Probes() []ProbeSpec { return append([]ProbeSpec(nil), probeSpecs...) }

// ProbeNames lists the probes' names.
func ProbeNames() []string {
	var names []string
	for _, p := range probeSpecs {
		names = append(names, p.Name)
	}
	return names
}

func probeByName(name string) (ProbeSpec, bool) {
	for _, p := range probeSpecs {
		if p.Name == name {
			return p, true
		}
	}
	return ProbeSpec{}, false
}

// Probe runs one probe from a host.
func (l *Lab) Probe(ctx context.Context, h Host, name string) (Result, error) {
	p, ok := probeByName(name)
	if !ok {
		return Result{}, fmt.Errorf("no probe %q (there are: %s)", name, strings.Join(ProbeNames(), ", "))
	}
	return p.run(l, ctx, h), nil
}

// ProbeAll runs the named probes (every probe when none are named) from a
// host, all at once, and returns their results in the order asked.
func (l *Lab) ProbeAll(ctx context.Context, h Host, names ...string) ([]Result, error) {
	if len(names) == 0 {
		names = ProbeNames()
	}
	specs := make([]ProbeSpec, len(names))
	for i, n := range names {
		p, ok := probeByName(n)
		if !ok {
			return nil, fmt.Errorf("no probe %q (there are: %s)", n, strings.Join(ProbeNames(), ", "))
		}
		specs[i] = p
	}
	results := make([]Result, len(specs))
	var wg sync.WaitGroup
	for i, p := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.run(l, ctx, h)
		}()
	}
	wg.Wait()
	return results, nil
}

// Mismatch is a probe whose outcome differs from the scenario's.
type Mismatch struct {
	Result Result
	Want   Outcome
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s from %s: want %s, got %s (%v): %s", m.Result.Probe, m.Result.Host, m.Want,
		m.Result.Outcome, m.Result.Duration.Round(1e6), strings.TrimSpace(m.Result.Output))
}

// Check compares probe results with what a scenario says they must be.
func (s *Scenario) Check(results []Result) []Mismatch {
	var out []Mismatch
	for _, r := range results {
		if want := s.ExpectedOutcome(r.Probe); r.Outcome != want {
			out = append(out, Mismatch{Result: r, Want: want})
		}
	}
	return out
}
