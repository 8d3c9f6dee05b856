package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"portwatch/bpf"
	"portwatch/catalog"
)

// The test binary doubles as a helper process that attaches and then waits
// to be killed, so that a test can check what a killed portwatch leaves.
const (
	helperEnv      = "PORTWATCH_LOADER_HELPER"
	helperIfaceEnv = "PORTWATCH_LOADER_HELPER_IFACE"
	helperEgress   = "PORTWATCH_LOADER_HELPER_EGRESS"
	helperReady    = "PORTWATCH_LOADER_HELPER_READY"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "attach":
		os.Exit(helperAttach())
	case "open":
		os.Exit(helperOpen())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%s\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

type helperReport struct {
	XDPProg ebpf.ProgramID `json:"xdp_prog"`
	TCProg  ebpf.ProgramID `json:"tc_prog"`
	Egress  EgressAttach   `json:"egress"`
}

// helperAttach attaches to an interface of the namespace it runs in, says
// so in the ready file, and waits for its end.
func helperAttach() int {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := Open(Config{
		Interfaces: []string{os.Getenv(helperIfaceEnv)},
		Egress:     EgressAttach(os.Getenv(helperEgress)),
		Catalog:    cat,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var rep helperReport
	for _, p := range []struct {
		prog *ebpf.Program
		out  *ebpf.ProgramID
	}{{l.objs.PortwatchXdp, &rep.XDPProg}, {l.objs.PortwatchTc, &rep.TCProg}} {
		info, err := p.prog.Info()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*p.out, _ = info.ID()
	}
	rep.Egress = l.Attachments()[0].Egress
	data, _ := json.Marshal(rep)
	ready := os.Getenv(helperReady)
	if err := os.WriteFile(ready+".tmp", data, 0o644); err != nil || os.Rename(ready+".tmp", ready) != nil {
		fmt.Fprintln(os.Stderr, "writing the ready file failed")
		return 1
	}
	// Reachable until the process is killed: an unreachable Loader's
	// links would be closed by the garbage collector, detaching it.
	helperLoader = l
	select {}
}

var helperLoader *Loader

// helperOpen tries to open the loader and prints the error, for the
// test of what an unprivileged user is told.
func helperOpen() int {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	l, err := Open(Config{Interfaces: []string{"lo"}, Catalog: cat})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	_ = l.Close()
	fmt.Println("opened")
	return 0
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// openIn opens a loader in a namespace, closed when the test ends.
func openIn(t testing.TB, ns string, cfg Config) *Loader {
	t.Helper()
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog(t)
	}
	if cfg.Log == nil {
		cfg.Log = testLog(t)
	}
	var l *Loader
	mustInNetns(t, ns, func() (err error) {
		l, err = Open(cfg)
		return err
	})
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestLiveTraffic watches one side of a veth pair while real TCP and UDP
// cross it, answered, reset and refused, and checks the counters; then
// checks that Close leaves the interface as it found it.
func TestLiveTraffic(t *testing.T) {
	for _, egress := range []EgressAttach{EgressTCX, EgressClsact} {
		t.Run(string(egress), func(t *testing.T) {
			p := newVethPair(t)
			l := openIn(t, p.nsA, Config{Interfaces: []string{p.ifA}, XDPMode: XDPAuto, Egress: egress})

			att := l.Attachments()
			if len(att) != 1 || att[0].Interface != p.ifA || att[0].XDPMode != XDPNative || att[0].Egress != egress {
				t.Fatalf("attachments %+v: want %s in native XDP mode with %s egress", att, p.ifA, egress)
			}
			xdpID, tcID := progIDs(t, l)
			st, err := readHooks(p.nsA, p.ifA)
			if err != nil {
				t.Fatal(err)
			}
			if st.xdpProg != xdpID || st.xdpMode != 1 {
				t.Errorf("after Open: %s; want XDP prog %d in native mode (1)", st, xdpID)
			}
			switch egress {
			case EgressTCX:
				if len(st.tcx) != 1 || st.tcx[0] != tcID {
					t.Errorf("after Open: %s; want TCX egress prog %d", st, tcID)
				}
			case EgressClsact:
				if len(st.filters) != 1 || ebpf.ProgramID(st.filters[0].Id) != tcID || !st.filters[0].DirectAction {
					t.Errorf("after Open: %s; want one direct-action clsact filter of prog %d", st, tcID)
				}
			}

			before := mustSnapshot(t, l)
			liveTraffic(t, p)
			cat := testCatalog(t)
			id := func(key string) catalog.ServiceID { return cat.ByKey(key).ID }
			want := map[bpf.ExchangeKey]bpf.ExchangeCounters{
				{Service: id("xcatdport/tcp"), Client: p.b4, Server: p.a4}: {Attempts: 1, Answers: 1},
				{Service: id("xcatiport/tcp"), Client: p.b4, Server: p.a4}: {Attempts: 1, Resets: 1},
				{Service: id("rsync/tcp"), Client: p.b6, Server: p.a6}:     {Attempts: 1, Resets: 1},
				{Service: id("ssh-tcp/tcp"), Client: p.a4, Server: p.b4}:   {Attempts: 1, Resets: 1},
				{Service: id("ipmi/udp"), Client: p.b4, Server: p.a4}:      {Attempts: 1, Answers: 1},
				{Service: id("snmp/udp"), Client: p.b4, Server: p.a4}:      {Attempts: 1, ICMPClosed: 1},
				{Service: id("rsyslogd/udp"), Client: p.b6, Server: p.a6}:  {Attempts: 1, ICMPClosed: 1},
			}
			var after bpf.Snapshot
			eventually(t, "the counters show the traffic", 5*time.Second, func() (bool, string) {
				after = mustSnapshot(t, l)
				var problems []string
				afterExchanges, beforeExchanges := after.ExchangeMap(), before.ExchangeMap()
				for k, w := range want {
					g := subExchange(afterExchanges[k], beforeExchanges[k])
					if g != w {
						problems = append(problems, fmt.Sprintf("%s: got %s, want %s",
							exchangeName(cat, k), fmtExchange(g), fmtExchange(w)))
					}
				}
				return len(problems) == 0, strings.Join(problems, "; ")
			})
			svc := func(key string) bpf.ServiceCounters {
				return subServices(after.Services[id(key)], before.Services[id(key)])
			}
			for _, c := range []struct {
				key                      string
				syn, synack, rst, closed uint64
			}{
				{"xcatdport/tcp", 1, 1, 0, 0},
				{"xcatiport/tcp", 1, 0, 1, 0},
				{"ssh-tcp/tcp", 1, 0, 1, 0},
				{"snmp/udp", 0, 0, 0, 1},
			} {
				s := svc(c.key)
				if s.SYN != c.syn || s.SYNACK != c.synack || s.RST != c.rst || s.ICMPClosed != c.closed {
					t.Errorf("%s: %+v; want syn %d, syn-ack %d, rst %d, icmp closed %d", c.key, s, c.syn,
						c.synack, c.rst, c.closed)
				}
			}
			if n := after.Parse[bpf.ParsePackets] - before.Parse[bpf.ParsePackets]; n < 20 {
				t.Errorf("the programs saw %d packets", n)
			}

			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st, err = readHooks(p.nsA, p.ifA)
			if err != nil {
				t.Fatal(err)
			}
			if !st.empty() || st.clsactUp {
				t.Errorf("after Close: %s; want nothing attached and no clsact qdisc (portwatch added it)", st)
			}
			eventually(t, "the programs are freed", 5*time.Second, func() (bool, string) {
				return progGone(xdpID) && progGone(tcID), fmt.Sprintf("progs %d and %d", xdpID, tcID)
			})
		})
	}
}

// liveTraffic makes each kind of exchange happen once between the sides.
func liveTraffic(t *testing.T, p *vethPair) {
	t.Helper()
	var tcpLn net.Listener
	var udpLn net.PacketConn
	mustInNetns(t, p.nsA, func() (err error) {
		if tcpLn, err = net.Listen("tcp", netip.AddrPortFrom(p.a4, 3001).String()); err != nil {
			return err
		}
		udpLn, err = net.ListenPacket("udp", netip.AddrPortFrom(p.a4, 623).String())
		return err
	})
	defer tcpLn.Close()
	defer udpLn.Close()
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := udpLn.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = udpLn.WriteTo(buf[:n], from)
		}
	}()

	dial := func(ns, network string, to netip.AddrPort) error {
		return inNetns(ns, func() error {
			c, err := net.DialTimeout(network, to.String(), 3*time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
	}
	// A UDP exchange from B: the answer, or the refusal that the ICMP port
	// unreachable gives a connected socket.
	udpAsk := func(to netip.AddrPort) error {
		var conn net.Conn
		if err := inNetns(p.nsB, func() (err error) {
			conn, err = net.Dial("udp", to.String())
			return err
		}); err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("portwatch")); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := conn.Read(make([]byte, 64))
		return err
	}
	refused := func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

	if err := dial(p.nsB, "tcp", netip.AddrPortFrom(p.a4, 3001)); err != nil {
		t.Fatalf("B to A's listener on 3001: %v", err)
	}
	if err := dial(p.nsB, "tcp", netip.AddrPortFrom(p.a4, 3002)); !refused(err) {
		t.Fatalf("B to A's closed 3002: %v, want a reset", err)
	}
	if err := dial(p.nsB, "tcp6", netip.AddrPortFrom(p.a6, 873)); !refused(err) {
		t.Fatalf("B to A's closed [%s]:873: %v, want a reset", p.a6, err)
	}
	if err := dial(p.nsA, "tcp", netip.AddrPortFrom(p.b4, 22)); !refused(err) {
		t.Fatalf("A to B's closed 22: %v, want a reset", err)
	}
	if err := udpAsk(netip.AddrPortFrom(p.a4, 623)); err != nil {
		t.Fatalf("B to A's UDP echo on 623: %v", err)
	}
	if err := udpAsk(netip.AddrPortFrom(p.a4, 161)); !refused(err) {
		t.Fatalf("B to A's closed UDP 161: %v, want port unreachable", err)
	}
	if err := udpAsk(netip.AddrPortFrom(p.a6, 514)); !refused(err) {
		t.Fatalf("B to A's closed UDP [%s]:514: %v, want port unreachable", p.a6, err)
	}
}

// TestKilledProcessLeavesNothing attaches from a child process, kills it
// with SIGKILL, and checks what stays: bpf_links (XDP, TCX) go with the
// process; a clsact filter stays until the next portwatch removes it.
func TestKilledProcessLeavesNothing(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, egress := range []EgressAttach{EgressTCX, EgressClsact} {
		t.Run(string(egress), func(t *testing.T) {
			p := newVethPair(t)
			ready := filepath.Join(t.TempDir(), "ready")
			cmd := exec.Command("ip", "netns", "exec", p.nsA, exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=attach", helperIfaceEnv+"="+p.ifA,
				helperEgress+"="+string(egress), helperReady+"="+ready)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})

			var rep helperReport
			deadline := time.After(60 * time.Second)
			for rep.XDPProg == 0 {
				select {
				case err := <-exited:
					t.Fatalf("the helper exited before attaching: %v\n%s", err, stderr.String())
				case <-deadline:
					t.Fatalf("the helper did not attach within a minute\n%s", stderr.String())
				case <-time.After(20 * time.Millisecond):
				}
				if data, err := os.ReadFile(ready); err == nil {
					if err := json.Unmarshal(data, &rep); err != nil {
						t.Fatal(err)
					}
				}
			}
			st, err := readHooks(p.nsA, p.ifA)
			if err != nil {
				t.Fatal(err)
			}
			if st.xdpProg != rep.XDPProg || rep.Egress != egress {
				t.Fatalf("the helper reports %+v, the interface has %s", rep, st)
			}

			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-exited
			exited <- nil // for the cleanup

			eventually(t, "XDP and TCX detach with the killed process", 5*time.Second, func() (bool, string) {
				st, err := readHooks(p.nsA, p.ifA)
				return err == nil && st.xdpProg == 0 && len(st.tcx) == 0, fmt.Sprintf("%s %v", st, err)
			})
			eventually(t, "the XDP program is freed", 5*time.Second, func() (bool, string) {
				return progGone(rep.XDPProg), fmt.Sprintf("prog %d", rep.XDPProg)
			})
			if egress == EgressTCX {
				eventually(t, "the TC program is freed", 5*time.Second, func() (bool, string) {
					return progGone(rep.TCProg), fmt.Sprintf("prog %d", rep.TCProg)
				})
				return
			}

			// The clsact filter outlived its process, still running the
			// program: the reason Open removes stale portwatch filters.
			st, err = readHooks(p.nsA, p.ifA)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.filters) != 1 || ebpf.ProgramID(st.filters[0].Id) != rep.TCProg || progGone(rep.TCProg) {
				t.Fatalf("after the kill: %s; want the helper's filter (prog %d) still there", st, rep.TCProg)
			}
			l := openIn(t, p.nsA, Config{Interfaces: []string{p.ifA}, Egress: EgressClsact})
			_, tcID := progIDs(t, l)
			st, err = readHooks(p.nsA, p.ifA)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.filters) != 1 || ebpf.ProgramID(st.filters[0].Id) != tcID ||
				st.filters[0].Handle != uint32(os.Getpid()) {
				t.Errorf("after a new Open: %s; want only the new filter (prog %d, handle %d)", st, tcID, os.Getpid())
			}
			eventually(t, "the stale filter's program is freed", 5*time.Second, func() (bool, string) {
				return progGone(rep.TCProg), fmt.Sprintf("prog %d", rep.TCProg)
			})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			st, err = readHooks(p.nsA, p.ifA)
			if err != nil || !st.empty() {
				t.Errorf("after Close: %s %v; want nothing attached", st, err)
			}
		})
	}
}

// A filter of a portwatch that still runs is not stale: a second portwatch
// must leave it alone.
func TestLiveFilterIsNotStale(t *testing.T) {
	p := newVethPair(t)
	first := openIn(t, p.nsA, Config{Interfaces: []string{p.ifA}, Egress: EgressClsact})
	_, firstTC := progIDs(t, first)
	var removed []ebpf.ProgramID
	mustInNetns(t, p.nsA, func() error {
		nl, err := netlink.LinkByName(p.ifA)
		if err != nil {
			return err
		}
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		removed, err = removeStaleFilters(h, nl)
		return err
	})
	if len(removed) != 0 {
		t.Errorf("removed the live filter of prog %d (%v)", firstTC, removed)
	}
	st, err := readHooks(p.nsA, p.ifA)
	if err != nil || len(st.filters) != 1 {
		t.Errorf("the live filter is gone: %s %v", st, err)
	}
}

// The errors that tell the user what to do.
func TestLiveAttachErrors(t *testing.T) {
	p := newVethPair(t)
	// The loopback driver has no native XDP (and this kernel no noNative
	// module): the namespace's own lo stands for such a driver.
	const noNative = "lo"

	tryOpen := func(cfg Config) error {
		cfg.Catalog = testCatalog(t)
		cfg.Log = testLog(t)
		return inNetns(p.nsA, func() error {
			l, err := Open(cfg)
			if err == nil {
				_ = l.Close()
			}
			return err
		})
	}
	contains := func(t *testing.T, err error, parts ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("no error; want one saying %q", parts)
		}
		t.Logf("the user reads: %v", err)
		for _, s := range parts {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
	}

	t.Run("no such interface", func(t *testing.T) {
		contains(t, tryOpen(Config{Interfaces: []string{"pw-missing0"}}), "pw-missing0: no such interface (see `ip link`)")
	})
	t.Run("native mode on a driver without it", func(t *testing.T) {
		contains(t, tryOpen(Config{Interfaces: []string{noNative}, XDPMode: XDPNative}),
			"attaching XDP to "+noNative+" in native mode", "does not support native XDP", "--xdp-mode=auto")
	})
	t.Run("auto falls back to generic and says so", func(t *testing.T) {
		var logged strings.Builder
		cat := testCatalog(t)
		var att []Attachment
		mustInNetns(t, p.nsA, func() error {
			l, err := Open(Config{Interfaces: []string{p.ifA, noNative}, Catalog: cat,
				Log: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				return err
			}
			att = l.Attachments()
			return l.Close()
		})
		if len(att) != 2 || att[0].XDPMode != XDPNative || att[1].XDPMode != XDPGeneric || att[1].Interface != noNative {
			t.Errorf("attachments %+v: want %s native, %s generic", att, p.ifA, noNative)
		}
		if !strings.Contains(logged.String(), "no native XDP") || !strings.Contains(logged.String(), "xdp_mode=generic") {
			t.Errorf("the fallback was not logged:\n%s", logged.String())
		}
	})
	t.Run("jumbo frames: native refused, auto falls back to generic", func(t *testing.T) {
		// veth refuses native XDP (without multi-buffer support) when its
		// peer's MTU exceeds a page, as drivers do for jumbo frames.
		ipCmd(t, "-n", p.nsB, "link", "set", "dev", p.ifB, "mtu", "9000")
		defer ipCmd(t, "-n", p.nsB, "link", "set", "dev", p.ifB, "mtu", "1500")
		contains(t, tryOpen(Config{Interfaces: []string{p.ifA}, XDPMode: XDPNative}),
			"attaching XDP to "+p.ifA+" in native mode", "--xdp-mode=auto")
		cat := testCatalog(t)
		var att []Attachment
		mustInNetns(t, p.nsA, func() error {
			l, err := Open(Config{Interfaces: []string{p.ifA}, Catalog: cat, Log: testLog(t)})
			if err != nil {
				return err
			}
			att = l.Attachments()
			return l.Close()
		})
		if len(att) != 1 || att[0].XDPMode != XDPGeneric {
			t.Errorf("attachments %+v: want %s generic", att, p.ifA)
		}
	})
	t.Run("a failed open leaves nothing attached", func(t *testing.T) {
		contains(t, tryOpen(Config{Interfaces: []string{p.ifA, "pw-missing1"}}), "no such interface")
		if st, err := readHooks(p.nsA, p.ifA); err != nil || !st.empty() {
			t.Errorf("after the failed Open: %s %v", st, err)
		}
	})
	t.Run("another portwatch holds the interface", func(t *testing.T) {
		first := openIn(t, p.nsA, Config{Interfaces: []string{p.ifA}})
		xdpID, _ := progIDs(t, first)
		contains(t, tryOpen(Config{Interfaces: []string{p.ifA}}),
			fmt.Sprintf("another XDP program is attached: portwatch_xdp (prog id %d, native mode)", xdpID),
			"another portwatch is watching this interface", "held by bpf_link")
		_ = first.Close()
	})
	t.Run("an XDP program attached with ip link", func(t *testing.T) {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "other_xdp", Type: ebpf.XDP, License: "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		mustInNetns(t, p.nsA, func() error {
			nl, err := netlink.LinkByName(p.ifA)
			if err != nil {
				return err
			}
			return netlink.LinkSetXdpFdWithFlags(nl, prog.FD(), 1<<2) // XDP_FLAGS_DRV_MODE
		})
		defer ipCmd(t, "-n", p.nsA, "link", "set", "dev", p.ifA, "xdp", "off")
		contains(t, tryOpen(Config{Interfaces: []string{p.ifA}}), "another XDP program is attached: other_xdp",
			"ip link set dev "+p.ifA+" xdp off")
	})
}

// TestUnprivilegedError runs Open as an unprivileged user and checks that
// the error names the capabilities and the capture backend.
func TestUnprivilegedError(t *testing.T) {
	requirePrivileged(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is private to root: copy it where
	// nobody can run it.
	dir, err := os.MkdirTemp("", "portwatch-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExe := filepath.Join(dir, "loader.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(copyExe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	_ = dst.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, copyExe, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), helperEnv+"=open")
	const nobody = 65534
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("Open succeeded as an unprivileged user:\n%s", out)
	}
	t.Logf("the user reads: %s", out)
	for _, want := range []string{"operation not permitted", "CAP_BPF and CAP_NET_ADMIN", "CAP_PERFMON",
		"run portwatch as root", "--backend capture"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the unprivileged error does not say %q:\n%s", want, out)
		}
	}
}

// TestDetachedInterface: deleting a watched interface drops its links;
// Detached names it, and only it.
func TestDetachedInterface(t *testing.T) {
	p := newVethPair(t)
	// A second pair in the same namespace stays.
	ipCmd(t, "-n", p.nsA, "link", "add", "pwkeep0", "type", "veth", "peer", "name", "pwkeep1")
	ipCmd(t, "-n", p.nsA, "link", "set", "pwkeep0", "up")
	ipCmd(t, "-n", p.nsA, "link", "set", "pwkeep1", "up")
	l := openIn(t, p.nsA, Config{Interfaces: []string{p.ifA, "pwkeep0"}})
	if gone, err := l.Detached(); err != nil || len(gone) != 0 {
		t.Fatalf("before: detached %v, %v", gone, err)
	}
	ipCmd(t, "-n", p.nsA, "link", "del", p.ifA) // its peer goes with it
	gone, err := l.Detached()
	if err != nil || len(gone) != 1 || gone[0] != p.ifA {
		t.Errorf("after deleting %s: detached %v, %v", p.ifA, gone, err)
	}
}
