package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Outcome is how a client's exchange with a server ended.
type Outcome string

// Outcomes of a client run.
const (
	// OutcomeOK: the client got its answer, and the answer is right.
	OutcomeOK Outcome = "ok"
	// OutcomeTimeout: no answer within the client's timeout (a drop; for a
	// one-way service such as syslog over UDP: the message never arrived).
	OutcomeTimeout Outcome = "timeout"
	// OutcomeRefused: a TCP reset or an ICMP port unreachable (ECONNREFUSED).
	OutcomeRefused Outcome = "refused"
	// OutcomeUnreachable: an ICMP host, network or administratively
	// prohibited unreachable (EHOSTUNREACH, ENETUNREACH, EACCES).
	OutcomeUnreachable Outcome = "unreachable"
	// OutcomeFailed: any other failure, such as a wrong answer.
	OutcomeFailed Outcome = "failed"
	// OutcomeSkipped: a provisioning step not run because an earlier one
	// that it needs failed.
	OutcomeSkipped Outcome = "skipped"
)

var outcomes = []Outcome{OutcomeOK, OutcomeTimeout, OutcomeRefused, OutcomeUnreachable, OutcomeFailed, OutcomeSkipped}

func (o Outcome) valid() bool {
	for _, x := range outcomes {
		if o == x {
			return true
		}
	}
	return false
}

func outcomeNames() string {
	var s []string
	for _, o := range outcomes {
		s = append(s, string(o))
	}
	return strings.Join(s, ", ")
}

// Result is what one client run did.
type Result struct {
	Probe   string  `json:"probe"`
	Host    string  `json:"host"` // where the client ran
	Outcome Outcome `json:"outcome"`
	// Command is the client's argv; empty for the clients written in Go
	// (the xcatd ports and DNS).
	Command []string `json:"command,omitempty"`
	// ExitCode is the process's exit status, -1 when it was killed at its
	// deadline or did not run as a process.
	ExitCode int `json:"exit_code"`
	// Output is what the client printed (stdout and stderr, shortened), or
	// the Go client's answer or error.
	Output   string        `json:"output"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
}

func (r Result) String() string {
	out := strings.Join(strings.Fields(r.Output), " ")
	if len(out) > 100 {
		out = out[:100] + "..."
	}
	return fmt.Sprintf("%-12s %-5s %-11s %6.2fs  %s", r.Probe, r.Host, r.Outcome, r.Duration.Seconds(), out)
}

// Command returns a command that runs inside a host's network namespace
// (`ip netns exec`). Use it to run portwatch, tcpdump or anything else
// there; the lab's probes are built on it.
func (l *Lab) Command(ctx context.Context, h Host, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns, name}, args...)...)
	// A client that leaves a child holding its output must not hold us;
	// generous, since on a loaded machine reading the rest of the output
	// after the client exits can itself take a while.
	cmd.WaitDelay = outputGrace
	return cmd
}

// outputGrace is how long a command's output may stay open after it exits.
const outputGrace = 5 * time.Second

// maxOutput bounds what a Result keeps of a client's output.
const maxOutput = 4096

// Run runs a client in a host's namespace with a deadline, and classifies
// how it ended: exit status 0 is OutcomeOK, the deadline OutcomeTimeout,
// otherwise the client's own words decide (see ClassifyOutput).
func (l *Lab) Run(ctx context.Context, h Host, timeout time.Duration, argv ...string) Result {
	return l.runClient(ctx, h, "", timeout, nil, nil, argv)
}

func (l *Lab) runClient(ctx context.Context, h Host, probe string, timeout time.Duration, env []string, stdin []byte, argv []string) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := l.Command(ctx, h, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	r := Result{Probe: probe, Host: h.Name, Command: argv, Start: time.Now()}
	err := cmd.Run()
	r.Duration = time.Since(r.Start)
	r.Output = out.String()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The client exited with status 0 (nothing else makes this
		// error), but something still held its output: what it did
		// decides, from the output read until then.
		r.Output += fmt.Sprintf("\n(its output was still open %v after it exited)", outputGrace)
		err = nil
	}
	if len(r.Output) > maxOutput {
		r.Output = r.Output[:maxOutput] + "..."
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		r.Outcome = OutcomeOK
	case ctx.Err() == context.DeadlineExceeded:
		r.ExitCode = -1
		r.Outcome = OutcomeTimeout
		r.Output += fmt.Sprintf("\n(killed after %v)", timeout)
	case errors.As(err, &exit):
		r.ExitCode = exit.ExitCode()
		r.Outcome = ClassifyOutput(r.Output)
	default:
		r.ExitCode = -1
		r.Outcome = OutcomeFailed
		r.Output += "\n" + err.Error()
	}
	return r
}

var (
	refusedWords     = regexp.MustCompile(`(?i)connection refused|connection reset|ECONNREFUSED`)
	unreachableWords = regexp.MustCompile(`(?i)no route to host|network is unreachable|host is unreachable|administratively prohibited|EHOSTUNREACH|ENETUNREACH`)
	timeoutWords     = regexp.MustCompile(`(?i)timed out|timeout|no response|no lease`)
)

// ClassifyOutput reads a failed client's message: the clients say
// "Connection refused" for a reset or ICMP port unreachable, "No route to
// host" for an ICMP host or admin-prohibited unreachable, and some form of
// "timed out" when nothing came back.
func ClassifyOutput(out string) Outcome {
	switch {
	case refusedWords.MatchString(out):
		return OutcomeRefused
	case unreachableWords.MatchString(out):
		return OutcomeUnreachable
	case timeoutWords.MatchString(out):
		return OutcomeTimeout
	}
	return OutcomeFailed
}

// classifyErr maps a Go network error the same way.
func classifyErr(err error) Outcome {
	var ne net.Error
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return OutcomeRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EACCES):
		return OutcomeUnreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	}
	return OutcomeFailed
}

// Client timeouts: a blocked port costs a test seconds, not minutes. A
// client that gets no answer tries again for at least blockedSpan, so that
// an observer sees what portwatch's rule needs to call a silent port
// blocked (3 attempts over 3 s by default).
const (
	connectTimeout = 2 * time.Second
	udpWait        = 1500 * time.Millisecond
	clientDeadline = 8 * time.Second
	// retryAttempts separate attempts (new socket, new source port), each
	// waiting retryWait: the first and the last are 4 s apart.
	retryAttempts = 3
	retryWait     = 2 * time.Second
)

// seq numbers the files and syslog messages of client runs.
var seq atomic.Int64

func (l *Lab) clientFile(h Host, what string) string {
	return l.path("clients", fmt.Sprintf("%s-%s-%d", h.Name, what, seq.Add(1)))
}

// checkFile compares a client's download with the served file.
func checkFile(got, want string) error {
	g, err := os.ReadFile(got)
	if err != nil {
		return err
	}
	w, err := os.ReadFile(want)
	if err != nil {
		return err
	}
	if sha256.Sum256(g) != sha256.Sum256(w) {
		return fmt.Errorf("downloaded %d bytes, not the %d bytes served", len(g), len(w))
	}
	return nil
}

// fail turns an ok Result into a failed one, with the reason.
func fail(r Result, err error) Result {
	if err != nil && r.Outcome == OutcomeOK {
		r.Outcome = OutcomeFailed
		r.Output += "\n" + err.Error()
	}
	return r
}

// DHCP asks for a lease with busybox udhcpc without configuring the
// interface (-s /bin/true). The request is broadcast, relayed by fw's
// dnsmasq to the one on mn; the node must be offered its own address.
func (l *Lab) DHCP(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "dhcp", clientDeadline, nil, nil,
		[]string{"busybox", "udhcpc", "-n", "-q", "-s", "/bin/true", "-i", h.Iface, "-t", "5", "-T", "1"})
	if r.Outcome == OutcomeOK && !strings.Contains(r.Output, "lease of "+h.Addr.String()+" obtained") {
		r = fail(r, fmt.Errorf("the lease is not for %s", h.Addr))
	}
	return r
}

// TFTPGet fetches the boot file with tftp-hpa's client, 512-byte blocks.
// Unanswered, it repeats its read request every second for 5 s. tftp-hpa
// exits 0 even when a transfer fails, so the file decides.
func (l *Lab) TFTPGet(ctx context.Context, h Host) Result {
	dst := l.clientFile(h, "tftp")
	script := fmt.Sprintf("binary\nrexmt 1\ntimeout 5\nget %s %s\nquit\n", BootFileName, dst)
	r := l.runClient(ctx, h, "tftp", clientDeadline, nil, []byte(script), []string{"tftp", l.topo.mn.Addr.String()})
	defer os.Remove(dst)
	if r.Outcome != OutcomeOK {
		return r
	}
	if err := checkFile(dst, l.path("tftp", BootFileName)); err != nil {
		r.Outcome = ClassifyOutput(r.Output)
		r.Output += "\n" + err.Error()
	}
	return r
}

// HTTPGet downloads the install image from mn's port 80 with curl.
func (l *Lab) HTTPGet(ctx context.Context, h Host) Result {
	dst := l.clientFile(h, "http")
	defer os.Remove(dst)
	r := l.runClient(ctx, h, "http", clientDeadline, nil, nil,
		[]string{"curl", "-sS", "-f", "-o", dst, "--connect-timeout", secs(connectTimeout), "-m", "5",
			fmt.Sprintf("http://%s/%s", l.topo.mn.Addr, InstallImageName)})
	if r.Outcome == OutcomeOK {
		r = fail(r, checkFile(dst, l.path("www", InstallImageName)))
	}
	return r
}

// HTTPAlt asks the service on mn's port 8080, which no catalog row names.
func (l *Lab) HTTPAlt(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "http-alt", clientDeadline, nil, nil,
		[]string{"curl", "-sS", "-f", "--connect-timeout", secs(connectTimeout), "-m", "4",
			fmt.Sprintf("http://%s:%d/", l.topo.mn.Addr, AltHTTPPort)})
	if r.Outcome == OutcomeOK && !strings.Contains(r.Output, strings.TrimSpace(AltHTTPBody)) {
		r = fail(r, errors.New("unexpected answer"))
	}
	return r
}

// SSH logs in to mn with the lab's key (BatchMode: never a prompt).
func (l *Lab) SSH(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "ssh", clientDeadline, nil, nil,
		[]string{"ssh", "-F", "/dev/null", "-i", l.path("ssh", "client_ed25519_key"),
			"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "ConnectTimeout=" + secs(connectTimeout), "-o", "LogLevel=ERROR",
			"root@" + l.topo.mn.Addr.String(), "true"})
	if r.Outcome == OutcomeOK && !strings.Contains(r.Output, SSHGreeting) {
		r = fail(r, errors.New("sshd did not run the lab's command"))
	}
	return r
}

// Rsync copies the install image from mn's rsync daemon.
func (l *Lab) Rsync(ctx context.Context, h Host) Result {
	dst := l.clientFile(h, "rsync")
	defer os.Remove(dst)
	r := l.runClient(ctx, h, "rsync", clientDeadline, nil, nil,
		[]string{"rsync", "--contimeout=" + secs(connectTimeout), "--timeout=4",
			fmt.Sprintf("rsync://%s/%s/%s", l.topo.mn.Addr, RsyncModule, InstallImageName), dst})
	if r.Outcome == OutcomeOK {
		r = fail(r, checkFile(dst, l.path("www", InstallImageName)))
	}
	return r
}

// Syslog sends a message to mn's rsyslogd with logger, over "udp" or
// "tcp", and waits for it to reach rsyslogd's file: delivery, not the
// sender's exit status, is the outcome (UDP syslog never answers).
func (l *Lab) Syslog(ctx context.Context, h Host, proto string) Result {
	marker := fmt.Sprintf("portwatch-lab-probe-%s-%d-%d", h.Name, os.Getpid(), seq.Add(1))
	r := l.runClient(ctx, h, "syslog-"+proto, clientDeadline, nil, nil,
		[]string{"logger", "--" + proto, "-n", l.topo.mn.Addr.String(), "-P", "514", "-t", "portwatch-lab", marker})
	if r.Outcome != OutcomeOK {
		return r
	}
	deadline := time.Now().Add(udpWait)
	for {
		b, err := os.ReadFile(l.SyslogPath())
		if err == nil && bytes.Contains(b, []byte(marker)) {
			r.Duration = time.Since(r.Start)
			return r
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Outcome = OutcomeTimeout
			r.Output += fmt.Sprintf("\nmessage %s not received by rsyslogd within %v", marker, udpWait)
			r.Duration = time.Since(r.Start)
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RPCInfo asks mn's rpcbind for its table over UDP (RPCBPROC_DUMP). The
// table must list the lab's mountd on its port. (`rpcinfo -p` asks over
// TCP, and the xCAT table lists port 111 for UDP only.)
func (l *Lab) RPCInfo(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "rpcbind", 4*time.Second, nil, nil,
		[]string{"rpcinfo", "-T", "udp", l.topo.mn.Addr.String()})
	// rpcbind writes a port as its two bytes after the address: 0.0.0.0.78.80.
	mountd := regexp.MustCompile(fmt.Sprintf(`100005\s+3\s+udp\s+\S+\.%d\.%d\s`, MountdPort>>8, MountdPort&0xff))
	if r.Outcome == OutcomeOK && !mountd.MatchString(r.Output) {
		r = fail(r, fmt.Errorf("rpcbind does not list mountd (program 100005 version 3) on udp port %d", MountdPort))
	}
	return r
}

// Mountd calls mountd's NULL procedure over UDP, on the port rpcbind
// gives for program 100005 version 3.
func (l *Lab) Mountd(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "mountd", 4*time.Second, nil, nil,
		[]string{"rpcinfo", "-u", l.topo.mn.Addr.String(), "100005", "3"})
	if r.Outcome == OutcomeOK && !strings.Contains(r.Output, "ready and waiting") {
		r = fail(r, errors.New("no answer from mountd"))
	}
	return r
}

// SNMPGet reads sysName from the switch.
func (l *Lab) SNMPGet(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "snmp", clientDeadline,
		[]string{"SNMPCONFPATH=" + l.path("snmp-client"), "SNMP_PERSISTENT_DIR=" + l.path("snmp-client")}, nil,
		[]string{"snmpget", "-v2c", "-c", SNMPCommunity, "-t", "1", "-r", "1", "-On", l.topo.sw.Addr.String(), ".1.3.6.1.2.1.1.5.0"})
	if r.Outcome == OutcomeOK && !strings.Contains(r.Output, `STRING: "sw"`) {
		r = fail(r, errors.New("unexpected answer"))
	}
	return r
}

// IPMI asks the BMC for its chassis power state with ipmitool over RMCP+
// (lanplus, cipher suite 3, as xCAT's IPMI does).
func (l *Lab) IPMI(ctx context.Context, h Host) Result {
	r := l.runClient(ctx, h, "ipmi", clientDeadline, nil, nil,
		[]string{"ipmitool", "-I", "lanplus", "-C", "3", "-H", l.topo.bmc.Addr.String(),
			"-U", IPMIUser, "-P", IPMIPassword, "-N", "1", "-R", "2", "chassis", "power", "status"})
	if r.Outcome == OutcomeOK && !strings.Contains(r.Output, "Chassis Power is") {
		r = fail(r, errors.New("unexpected answer"))
	}
	return r
}

// XcatdTCP sends one request line to an xcatd port of mn over TCP and
// reads the answer: port 3001 (xcatd), 3002 (install status), 3003 (log).
// A connection that times out is tried again, retryAttempts in all, as a
// node's install script retries its status report.
func (l *Lab) XcatdTCP(ctx context.Context, h Host, port int, request string) Result {
	return l.goClient(ctx, h, xcatdProbeName("tcp", port), func(ctx context.Context) (string, error) {
		return retryOnTimeout(ctx, func() (string, error) {
			var conn net.Conn
			err := inNetns(h.Netns, func() error {
				d := net.Dialer{Timeout: retryWait}
				c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(l.topo.mn.Addr, uint16(port)).String())
				conn = c
				return err
			})
			if err != nil {
				return "", err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(connectTimeout))
			if _, err := conn.Write([]byte(request + "\n")); err != nil {
				return "", err
			}
			buf := make([]byte, 512)
			n, err := conn.Read(buf)
			return checkXcatdAnswer(string(buf[:n]), err)
		})
	})
}

// XcatdUDP sends one datagram to an xcatd port of mn and waits for the
// answer; an ICMP error comes back as the read's error. Unanswered, it
// tries again from a new port, retryAttempts in all.
func (l *Lab) XcatdUDP(ctx context.Context, h Host, port int, request string) Result {
	return l.goClient(ctx, h, xcatdProbeName("udp", port), func(ctx context.Context) (string, error) {
		return retryOnTimeout(ctx, func() (string, error) {
			var conn net.Conn
			err := inNetns(h.Netns, func() error {
				c, err := net.Dial("udp", netip.AddrPortFrom(l.topo.mn.Addr, uint16(port)).String())
				conn = c
				return err
			})
			if err != nil {
				return "", err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(retryWait))
			if _, err := conn.Write([]byte(request)); err != nil {
				return "", err
			}
			buf := make([]byte, 512)
			n, err := conn.Read(buf)
			return checkXcatdAnswer(string(buf[:n]), err)
		})
	})
}

// retryOnTimeout runs attempt until it ends otherwise than by a timeout,
// at most retryAttempts times.
func retryOnTimeout(ctx context.Context, attempt func() (string, error)) (string, error) {
	var out string
	var err error
	for i := 1; i <= retryAttempts; i++ {
		out, err = attempt()
		if classifyErr(err) != OutcomeTimeout || ctx.Err() != nil {
			return out, err
		}
		if i == retryAttempts {
			return out, fmt.Errorf("%d attempts, no answer: %w", i, err)
		}
	}
	return out, err
}

// checkXcatdAnswer accepts the simulator's "ok ..." answer.
func checkXcatdAnswer(answer string, err error) (string, error) {
	if err == nil && !strings.HasPrefix(answer, "ok ") {
		err = fmt.Errorf("unexpected answer %q", answer)
	}
	return answer, err
}

func xcatdProbeName(proto string, port int) string {
	names := map[int]string{3001: "xcatd", 3002: "status", 3003: "xcatlog"}
	if n, ok := names[port]; ok {
		return n + "-" + proto
	}
	return fmt.Sprintf("%s-%d", proto, port)
}

// DNS resolves mn's name with Go's resolver, asking mn's dnsmasq only.
func (l *Lab) DNS(ctx context.Context, h Host) Result {
	want := l.topo.mn.Addr
	return l.goClient(ctx, h, "dns", func(ctx context.Context) (string, error) {
		server := netip.AddrPortFrom(l.topo.mn.Addr, 53).String()
		res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var conn net.Conn
			err := inNetns(h.Netns, func() error {
				var d net.Dialer
				c, err := d.DialContext(ctx, "udp", server)
				conn = c
				return err
			})
			return conn, err
		}}
		ctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		addrs, err := res.LookupNetIP(ctx, "ip4", "mn."+DNSDomain+".")
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			if a == want {
				return "mn." + DNSDomain + " is " + a.String(), nil
			}
		}
		return "", fmt.Errorf("mn.%s resolved to %v, not %s", DNSDomain, addrs, want)
	})
}

// goClient runs a client written in Go and classifies its error.
func (l *Lab) goClient(ctx context.Context, h Host, probe string, fn func(context.Context) (string, error)) Result {
	r := Result{Probe: probe, Host: h.Name, ExitCode: -1, Start: time.Now()}
	out, err := fn(ctx)
	r.Duration = time.Since(r.Start)
	r.Output = out
	r.Outcome = classifyErr(err)
	if err != nil {
		r.Output = strings.TrimSpace(out + "\n" + err.Error())
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsTimeout {
			r.Outcome = OutcomeTimeout
		}
	}
	return r
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }
