package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Files the management node serves.
const (
	// BootFileName is the PXE boot file dnsmasq's TFTP serves.
	BootFileName = "pxelinux.0"
	// BootFileSize makes a transfer of 769 DATA blocks of 512 bytes.
	BootFileSize = 384*1024 + 300
	// InstallImageName is the "install image" on the HTTP server and in the
	// rsync module "install".
	InstallImageName = "install.img"
	InstallImageSize = 1 << 20
	// RsyncModule is the rsync daemon's module.
	RsyncModule = "install"
	// SNMPCommunity is the switch's read-only community.
	SNMPCommunity = "public"
	// IPMIUser and IPMIPassword log in to the simulated BMC.
	IPMIUser     = "admin"
	IPMIPassword = "portwatch"
	// AltHTTPPort is the service on mn that no catalog row names: the
	// unexpected-open scenario lets nodes reach it.
	AltHTTPPort = 8080
	// AltHTTPBody is what it answers.
	AltHTTPBody = "portwatch-lab: a service outside the xCAT port table\n"
	// SSHGreeting is what the lab's sshd runs for every login, whatever the
	// client asks: the lab's sshd gives no shell.
	SSHGreeting = "portwatch-lab ssh ok"
)

// simEnv names the simulator a lab binary runs as, when it re-executes
// itself inside a namespace (see sims.go).
const simEnv = "PORTWATCH_LAB_SIM"

// endpoint is a socket a daemon must have open before it counts as ready.
type endpoint struct {
	proto string     // "tcp" (listening) or "udp" (bound)
	addr  netip.Addr // the unspecified address matches only a wildcard bind
	port  uint16
}

func (e endpoint) String() string {
	return fmt.Sprintf("%s %s", e.proto, netip.AddrPortFrom(e.addr, e.port))
}

// daemonSpec is how to run one daemon.
type daemonSpec struct {
	name  string // unique in the lab; names the log file
	host  Host
	argv  []string
	env   []string
	ready []endpoint
	// after names a daemon that must be ready first.
	after string
}

// daemon is a running daemonSpec.
type daemon struct {
	spec    daemonSpec
	pid     int
	log     string
	listen  []string      // set when attached: the endpoints as recorded
	cmd     *exec.Cmd     // nil when the lab was attached, not started here
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
}

// DaemonInfo describes a running daemon of the lab.
type DaemonInfo struct {
	Name   string   `json:"name"`
	Host   string   `json:"host"`
	Netns  string   `json:"netns"`
	PID    int      `json:"pid"`
	Log    string   `json:"log"`
	Listen []string `json:"listen"`
}

func (d *daemon) info() DaemonInfo {
	listen := d.listen
	for _, e := range d.spec.ready {
		listen = append(listen, e.String())
	}
	return DaemonInfo{Name: d.spec.name, Host: d.spec.host.Name, Netns: d.spec.host.Netns,
		PID: d.pid, Log: d.log, Listen: listen}
}

// labFile is deterministic content, the same in every run, so that a
// client's copy can be checked byte for byte and captures compare.
func labFile(name string, size int) []byte {
	seed := sha256.Sum256([]byte("portwatch-lab " + name))
	r := rand.NewChaCha8(seed)
	b := make([]byte, size)
	_, _ = r.Read(b)
	return b
}

// path returns a path inside the run directory.
func (l *Lab) path(elem ...string) string {
	return filepath.Join(append([]string{l.runDir}, elem...)...)
}

// writeFiles lays out the run directory: served files, keys and every
// daemon's configuration.
func (l *Lab) writeFiles(ctx context.Context) error {
	for _, d := range []string{"tftp", "www", "ssh", "logs", "run", "syslog", "clients",
		"scenarios", "rsyslog", "nginx", "snmp-agent/persist", "snmp-client", "ipmi-state"} {
		if err := os.MkdirAll(l.path(d), 0o755); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		filepath.Join("tftp", BootFileName):    labFile(BootFileName, BootFileSize),
		filepath.Join("www", InstallImageName): labFile(InstallImageName, InstallImageSize),
		"dnsmasq.conf":                         []byte(l.dnsmasqConf()),
		"hosts":                                []byte(l.hostsFile()),
		"dnsmasq-relay.conf":                   []byte(l.relayConf()),
		"sshd_config":                          []byte(l.sshdConf()),
		"rsyncd.conf":                          []byte(l.rsyncdConf()),
		"nginx.conf":                           []byte(l.nginxConf()),
		"rsyslog.conf":                         []byte(l.rsyslogConf()),
		filepath.Join("snmp-agent", "snmpd.conf"): []byte(l.snmpdConf()),
		// "mibs :" loads no MIB modules: the lab uses numeric OIDs, and
		// Debian ships only a few MIBs, which then warn by the hundred.
		filepath.Join("snmp-agent", "snmp.conf"):  []byte("mibs :\n"),
		filepath.Join("snmp-client", "snmp.conf"): []byte("mibs :\n"),
		"ipmi-lan.conf":                         []byte(l.ipmiLanConf()),
		"ipmi-bmc.emu":                          []byte(ipmiEmu),
		filepath.Join("syslog", "received.log"): nil,
	}
	for name, data := range files {
		if err := os.WriteFile(l.path(name), data, 0o644); err != nil {
			return err
		}
	}
	// sshd insists on its privilege separation directory, owned by root and
	// not writable by others; it lives in the daemon's private /run.
	if err := os.MkdirAll(l.path("run", "sshd", "sshd"), 0o755); err != nil {
		return err
	}
	for _, key := range []string{"host_ed25519_key", "client_ed25519_key"} {
		cmd := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "portwatch-lab", "-f", l.path("ssh", key))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %v: %s (is openssh-client installed? see lab/install-deps.sh)", err, out)
		}
	}
	pub, err := os.ReadFile(l.path("ssh", "client_ed25519_key.pub"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.path("ssh", "authorized_keys"), pub, 0o644); err != nil {
		return err
	}
	return writeScenarioFiles(l.path("scenarios"))
}

func (l *Lab) dnsmasqConf() string {
	mn := l.topo.mn
	var b strings.Builder
	fmt.Fprintf(&b, `# dnsmasq on the management node: DHCP (through the relay on fw), TFTP, DNS.
# Written by portwatch-lab; the host's /etc is never read.
port=53
listen-address=%[1]s
bind-interfaces
no-resolv
no-hosts
addn-hosts=%[2]s
domain=%[3]s
local=/%[3]s/
expand-hosts
user=root
group=root
pid-file=%[4]s
log-facility=-
log-dhcp
dhcp-leasefile=%[5]s
dhcp-authoritative
# The nodes' subnet is not on any interface here: requests arrive from the
# relay on fw (giaddr %[6]s), and the range's netmask says which subnet.
dhcp-range=%[7]s,%[8]s,255.255.255.0,10m
dhcp-option=option:router,%[6]s
# PXE: boot file name and TFTP server (siaddr).
dhcp-boot=%[9]s,mn,%[1]s
enable-tftp
tftp-root=%[10]s
`, mn.Addr, l.path("hosts"), DNSDomain, l.path("dnsmasq.pid"), l.path("dnsmasq.leases"),
		l.topo.fwAddr(NodeNet), addrIn(NodeNet, poolFirstOctet), addrIn(NodeNet, poolLastOctet),
		BootFileName, l.path("tftp"))
	for _, n := range l.topo.nodes {
		fmt.Fprintf(&b, "dhcp-host=%s,%s,%s\n", n.MAC, n.Addr, n.Name)
	}
	if l.cfg.breakDaemon == "dnsmasq" {
		b.WriteString("no-such-option-so-dnsmasq-fails\n")
	}
	return b.String()
}

func (l *Lab) hostsFile() string {
	var b strings.Builder
	for _, h := range append([]Host{l.topo.mn, l.topo.bmc, l.topo.sw}, l.topo.nodes...) {
		fmt.Fprintf(&b, "%s %s\n", h.Addr, h.Name)
	}
	return b.String()
}

func (l *Lab) relayConf() string {
	return fmt.Sprintf(`# dnsmasq on fw as a DHCP relay only: DHCP broadcasts do not cross a router.
port=0
no-resolv
no-hosts
user=root
group=root
pid-file=%s
log-facility=-
log-dhcp
dhcp-relay=%s,%s
`, l.path("dnsmasq-relay.pid"), l.topo.fwAddr(NodeNet), l.topo.mn.Addr)
}

func (l *Lab) sshdConf() string {
	return fmt.Sprintf(`# sshd on the management node, with the lab's own keys.
ListenAddress %s:22
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PermitTTY no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
# A login proves the port works; the lab gives no shell on the host.
ForceCommand echo %s
`, l.topo.mn.Addr, l.path("ssh", "host_ed25519_key"), l.path("sshd.pid"), l.path("ssh", "authorized_keys"), SSHGreeting)
}

func (l *Lab) rsyncdConf() string {
	return fmt.Sprintf(`# rsync daemon on the management node.
pid file = %s
use chroot = no
[%s]
	path = %s
	read only = yes
	uid = root
	gid = root
`, l.path("rsyncd.pid"), RsyncModule, l.path("www"))
}

func (l *Lab) nginxConf() string {
	return fmt.Sprintf(`# nginx on the management node: the install image on port 80, and on
# port %[4]d a service that no catalog row names.
worker_processes 1;
daemon off;
pid %[1]s;
error_log stderr notice;
events { worker_connections 1024; }
http {
	access_log %[2]s;
	client_body_temp_path %[3]s/body;
	proxy_temp_path %[3]s/proxy;
	fastcgi_temp_path %[3]s/fastcgi;
	uwsgi_temp_path %[3]s/uwsgi;
	scgi_temp_path %[3]s/scgi;
	default_type application/octet-stream;
	server {
		listen %[5]s:80;
		root %[6]s;
	}
	server {
		listen %[5]s:%[4]d;
		location / { return 200 "%[7]s"; }
	}
}
`, l.path("nginx.pid"), l.path("logs", "nginx-access.log"), l.path("nginx"), AltHTTPPort,
		l.topo.mn.Addr, l.path("www"), strings.ReplaceAll(AltHTTPBody, "\n", `\n`))
}

func (l *Lab) rsyslogConf() string {
	return fmt.Sprintf(`# rsyslogd on the management node: receives on 514/udp and 514/tcp and
# writes to one file. No imuxsock and no imklog: it never touches the
# host's log.
global(workDirectory="%[1]s")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="%[2]s" port="514")
input(type="imtcp" address="%[2]s" port="514")
template(name="lab" type="string" string="%%timegenerated:::date-rfc3339%% %%fromhost-ip%% %%syslogtag%%%%msg%%\n")
*.* action(type="omfile" file="%[3]s" template="lab")
`, l.path("rsyslog"), l.topo.mn.Addr, l.path("syslog", "received.log"))
}

func (l *Lab) snmpdConf() string {
	return fmt.Sprintf(`# snmpd on the switch's management address.
agentAddress udp:%s:161
rocommunity %s %s
sysName sw
sysLocation portwatch lab
sysContact nobody
master no
`, l.topo.sw.Addr, SNMPCommunity, LabNet)
}

func (l *Lab) ipmiLanConf() string {
	return fmt.Sprintf(`# OpenIPMI's ipmi_sim as the BMC: IPMI over LAN (RMCP and RMCP+) on 623/udp.
name "portwatch-lab"
set_working_mc 0x20
  startlan 1
    addr %s 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 1 true  ""   "unused" user  10 none md2 md5 straight
  user 2 true  "%s" "%s" admin 10 none md2 md5 straight
`, l.topo.bmc.Addr, IPMIUser, IPMIPassword)
}

// ipmiEmu creates the BMC's one management controller, with a chassis.
const ipmiEmu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// daemonSpecs lists every daemon of the lab.
func (l *Lab) daemonSpecs() ([]daemonSpec, error) {
	t := l.topo
	mn := t.mn.Addr
	any4 := netip.IPv4Unspecified()
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the simulators: %w", err)
	}
	bins := map[string]string{}
	for _, b := range []string{"dnsmasq", "sshd", "rsync", "nginx", "rsyslogd", "rpcbind", "snmpd", "ipmi_sim"} {
		p, err := exec.LookPath(b)
		if err != nil {
			return nil, fmt.Errorf("%s is not installed: run lab/install-deps.sh (as root) to install the lab's packages", b)
		}
		bins[b] = p
	}
	specs := []daemonSpec{
		{name: "dnsmasq", host: t.mn,
			argv:  []string{bins["dnsmasq"], "-k", "-C", l.path("dnsmasq.conf")},
			ready: []endpoint{{"udp", any4, 67}, {"udp", mn, 69}, {"udp", mn, 53}, {"tcp", mn, 53}}},
		{name: "dhcp-relay", host: t.fw,
			argv:  []string{bins["dnsmasq"], "-k", "-C", l.path("dnsmasq-relay.conf")},
			ready: []endpoint{{"udp", any4, 67}}},
		{name: "sshd", host: t.mn,
			argv:  []string{bins["sshd"], "-D", "-e", "-f", l.path("sshd_config")},
			ready: []endpoint{{"tcp", mn, 22}}},
		{name: "rsyncd", host: t.mn,
			argv: []string{bins["rsync"], "--daemon", "--no-detach", "--config=" + l.path("rsyncd.conf"),
				"--address=" + mn.String(), "--port=873", "--log-file=/dev/stderr"},
			ready: []endpoint{{"tcp", mn, 873}}},
		{name: "nginx", host: t.mn,
			argv:  []string{bins["nginx"], "-e", "stderr", "-p", l.path("nginx"), "-c", l.path("nginx.conf")},
			ready: []endpoint{{"tcp", mn, 80}, {"tcp", mn, AltHTTPPort}}},
		{name: "rsyslogd", host: t.mn,
			argv:  []string{bins["rsyslogd"], "-n", "-f", l.path("rsyslog.conf"), "-i", l.path("rsyslogd.pid")},
			ready: []endpoint{{"udp", mn, 514}, {"tcp", mn, 514}}},
		{name: "rpcbind", host: t.mn,
			argv:  []string{bins["rpcbind"], "-f"},
			ready: []endpoint{{"udp", any4, 111}, {"tcp", any4, 111}}},
		{name: "mountd-sim", host: t.mn, after: "rpcbind",
			argv:  []string{self, "mountd", "--port", strconv.Itoa(MountdPort), "--run-dir", l.runDir},
			env:   []string{simEnv + "=mountd"},
			ready: []endpoint{{"udp", any4, MountdPort}, {"tcp", any4, MountdPort}}},
		{name: "xcatd-sim", host: t.mn,
			argv: []string{self, "xcatd", "--addr", mn.String(), "--run-dir", l.runDir},
			env:  []string{simEnv + "=xcatd"},
			ready: []endpoint{{"tcp", mn, 3001}, {"tcp", mn, 3002}, {"tcp", mn, 3003},
				{"udp", mn, 3001}, {"udp", mn, 3002}}},
		{name: "ipmi_sim", host: t.bmc,
			argv: []string{bins["ipmi_sim"], "-n", "-c", l.path("ipmi-lan.conf"), "-f", l.path("ipmi-bmc.emu"),
				"-s", l.path("ipmi-state")},
			ready: []endpoint{{"udp", t.bmc.Addr, 623}}},
		{name: "snmpd", host: t.sw,
			argv: []string{bins["snmpd"], "-f", "-Lo", "-p", l.path("snmpd.pid")},
			env: []string{"SNMPCONFPATH=" + l.path("snmp-agent"),
				"SNMP_PERSISTENT_DIR=" + l.path("snmp-agent", "persist")},
			ready: []endpoint{{"udp", t.sw.Addr, 161}}},
	}
	return specs, nil
}

// startDaemon runs a daemon inside its host's namespace, with a private
// /run (sshd's privilege separation directory, rpcbind's socket and lock:
// paths compiled into the daemons that two copies would fight over), its
// output in logs/NAME.log, in a session of its own so that a terminal's
// Ctrl-C reaches only the lab command, which then tears the lab down.
func (l *Lab) startDaemon(spec daemonSpec) (*daemon, error) {
	runDir := l.path("run", spec.name)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	logPath := l.path("logs", spec.name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := append([]string{"netns", "exec", spec.host.Netns,
		"/bin/sh", "-c", `mount --bind "$0" /run && exec "$@"`, runDir}, spec.argv...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", spec.name, spec.host.Netns, err)
	}
	d := &daemon{spec: spec, pid: cmd.Process.Pid, log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

// waitReady waits until every endpoint of the daemon is open in its
// namespace. The error names the daemon, what it lacks, and its log.
func (l *Lab) waitReady(ctx context.Context, d *daemon) error {
	deadline := time.Now().Add(l.cfg.ReadyTimeout)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("%s in %s exited during start-up (%v); its log %s says:\n%s",
				d.spec.name, d.spec.host.Netns, d.waitErr, d.log, tail(d.log, 15))
		default:
		}
		missing, err := missingEndpoints(d.spec.host.Netns, d.spec.ready)
		if err != nil {
			return fmt.Errorf("%s: checking its sockets: %w", d.spec.name, err)
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s is not listening on %s after %v; its log %s says:\n%s",
				d.spec.name, d.spec.host.Netns, missing[0], l.cfg.ReadyTimeout, d.log, tail(d.log, 15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// missingEndpoints lists the endpoints that have no socket in the
// namespace, reading its /proc/net tables.
func missingEndpoints(netns string, want []endpoint) ([]endpoint, error) {
	var tables map[string]map[netip.AddrPort]bool
	err := inNetns(netns, func() error {
		tables = map[string]map[netip.AddrPort]bool{}
		for _, proto := range []string{"tcp", "udp"} {
			socks, err := readSockets("/proc/thread-self/net/"+proto, proto == "tcp")
			if err != nil {
				return err
			}
			tables[proto] = socks
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []endpoint
	for _, e := range want {
		if !tables[e.proto][netip.AddrPortFrom(e.addr, e.port)] {
			missing = append(missing, e)
		}
	}
	return missing, nil
}

// readSockets parses a /proc/net/{tcp,udp} table into its local addresses:
// listening sockets only for TCP, every bound socket for UDP.
func readSockets(path string, listenOnly bool) (map[netip.AddrPort]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[netip.AddrPort]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		const tcpListen = "0A"
		if listenOnly && fields[3] != tcpListen {
			continue
		}
		ap, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out[ap] = true
	}
	return out, sc.Err()
}

// parseProcAddr reads "0A00004D:0016": an IPv4 address as the kernel's
// host-order (little-endian here) hex of the network-order word, and a port.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok || len(host) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	h, err := strconv.ParseUint(host, 16, 32)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket port %q", s)
	}
	a := netip.AddrFrom4([4]byte{byte(h), byte(h >> 8), byte(h >> 16), byte(h >> 24)})
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// tail returns the last n lines of a file, indented, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "    (empty)"
	}
	return "    " + strings.Join(lines, "\n    ")
}
