//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"portwatch/classify"
	"portwatch/internal/privtest"
)

// buildPortwatch builds the binary once per test run.
func buildPortwatch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "portwatch")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// veth is two network namespaces joined by a veth pair: the observer's
// side "mn" (10.98.N.1) and a node (10.98.N.2). Removed at cleanup.
type veth struct {
	mn, node         string // namespace names
	mnIface          string
	mnAddr, nodeAddr string
}

func newVeth(t *testing.T) *veth {
	t.Helper()
	n := rand.IntN(200) + 20
	id := fmt.Sprintf("pwo%04x", rand.IntN(0xffff))
	v := &veth{mn: id + "-mn", node: id + "-node", mnIface: "obs0",
		mnAddr: fmt.Sprintf("10.98.%d.1", n), nodeAddr: fmt.Sprintf("10.98.%d.2", n)}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", v.mn).Run()
		exec.Command("ip", "netns", "del", v.node).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", v.mn},
		{"netns", "add", v.node},
		{"-n", v.mn, "link", "add", v.mnIface, "type", "veth", "peer", "name", "eth0", "netns", v.node},
		{"-n", v.mn, "addr", "add", v.mnAddr + "/24", "dev", v.mnIface},
		{"-n", v.node, "addr", "add", v.nodeAddr + "/24", "dev", "eth0"},
		{"-n", v.mn, "link", "set", v.mnIface, "up"},
		{"-n", v.node, "link", "set", "eth0", "up"},
		{"-n", v.mn, "link", "set", "lo", "up"},
		{"-n", v.node, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	return v
}

// connect tries a TCP connection from the node to the observer's side.
func (v *veth) connect(t *testing.T, port int) {
	t.Helper()
	// bash's /dev/tcp makes a plain connect; a closed port answers RST.
	exec.Command("ip", "netns", "exec", v.node, "timeout", "2", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", v.mnAddr, port)).Run()
}

// TestObserveLive runs `portwatch observe` on a veth in a network namespace,
// with each backend: real connections to a closed port give a reset
// verdict; SIGHUP reloads a changed site file (xcatiport moved), after
// which the moved port is counted and judged as xcatiport; /metrics shows
// the verdict; SIGTERM
// prints the summary, and nothing stays attached.
func TestObserveLive(t *testing.T) {
	privtest.RequireRoot(t, "observe attaches XDP (or opens AF_PACKET sockets) in a network namespace")
	bin := buildPortwatch(t)
	for _, backend := range []string{"xdp", "capture"} {
		t.Run(backend, func(t *testing.T) {
			v := newVeth(t)
			dir := t.TempDir()
			site := filepath.Join(dir, "site.yaml")
			events := filepath.Join(dir, "events.jsonl")
			ready := filepath.Join(dir, "ready")
			if err := os.WriteFile(site, []byte("ports:\n  xcatiport: 3002\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", v.mn, bin, "observe", "-i", v.mnIface,
				"--backend", backend, "--window", "1s", "--site", site, "--output", "jsonl:"+events,
				"--web.listen-address", "127.0.0.1:9717", "--ready-file", ready)
			var stdout, stderr lockedBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, "the ready file", &stderr)

			v.connect(t, 3002)
			waitFor(t, func() bool { return hasEvent(events, "xcatiport", 3002, classify.ReasonReset) }, "a reset verdict on 3002", &stderr)

			if err := os.WriteFile(site, []byte("ports:\n  xcatiport: 3012\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd.Process.Signal(syscall.SIGHUP)
			waitFor(t, func() bool { return strings.Contains(stderr.String(), "catalog reloaded") }, "the reload", &stderr)
			// The same client and server: the exchange is blocked already,
			// so no new event; the counters show the moved port judged
			// under xcatiport.
			v.connect(t, 3012)
			var metrics []byte
			moved := `portwatch_resets_total{port="3012",proto="tcp",service="xcatiport"} `
			waitFor(t, func() bool {
				var err error
				metrics, err = exec.Command("ip", "netns", "exec", v.mn, "curl", "-s", "--max-time", "5", "http://127.0.0.1:9717/metrics").Output()
				return err == nil && strings.Contains(string(metrics), moved) && !strings.Contains(string(metrics), moved+"0")
			}, "resets on the moved port 3012 counted under xcatiport", &stderr)
			if !strings.Contains(string(metrics), `portwatch_verdict{port="3012",proto="tcp",reason="reset",service="xcatiport",status="required"} 1`) {
				t.Errorf("/metrics has no verdict for xcatiport on 3012:\n%s", grepLines(string(metrics), "portwatch_verdict{", " 1"))
			}
			if !strings.Contains(string(metrics), "portwatch_attach_info{") {
				t.Error("/metrics has no attach info")
			}

			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("observe: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stdout.String(), "xcatiport") || !strings.Contains(stdout.String(), "blocked (reset)") {
				t.Errorf("no summary with the blocked service:\n%s", stdout.String())
			}
			link, _ := exec.Command("ip", "-n", v.mn, "link", "show", v.mnIface).Output()
			if strings.Contains(string(link), "xdp") {
				t.Errorf("XDP still attached after observe exited:\n%s", link)
			}
		})
	}
}

func waitFor(t *testing.T, ok func() bool, what string, stderr *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s; observe said:\n%s", what, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuffer is a buffer a child process writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func hasEvent(path, service string, port uint16, reason classify.Reason) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev classify.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Verdict == classify.RequiredPortBlocked &&
			ev.Service == service && ev.Port == port && ev.Reason == reason {
			return true
		}
	}
	return false
}

func grepLines(s, prefix, suffix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, suffix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestObserveAutoFallsBack: when XDP cannot be attached (here, another
// portwatch holds the interface's XDP hook), --backend auto says so and
// watches the interface with the capture backend instead, and its verdicts
// still come.
func TestObserveAutoFallsBack(t *testing.T) {
	privtest.RequireRoot(t, "observe attaches XDP in a network namespace")
	bin := buildPortwatch(t)
	v := newVeth(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := func(backend, name string) (*exec.Cmd, *lockedBuffer, string, string) {
		ready := filepath.Join(dir, name+".ready")
		events := filepath.Join(dir, name+".jsonl")
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", v.mn, bin, "observe", "-i", v.mnIface,
			"--backend", backend, "--window", "1s", "--web.listen-address", "", "--output", "jsonl:"+events, "--ready-file", ready)
		var stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, name+"'s ready file", &stderr)
		return cmd, &stderr, ready, events
	}
	first, _, _, _ := start("xdp", "first")
	second, stderr, _, events := start("auto", "second")
	if !strings.Contains(stderr.String(), "falling back to AF_PACKET capture") ||
		!strings.Contains(stderr.String(), "watching "+v.mnIface+" (capture, egress afpacket)") {
		t.Errorf("auto did not say it fell back:\n%s", stderr.String())
	}
	v.connect(t, 3001)
	waitFor(t, func() bool { return hasEvent(events, "xcatdport", 3001, classify.ReasonReset) }, "the fallback's verdict", stderr)
	for _, cmd := range []*exec.Cmd{second, first} {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("observe: %v", err)
		}
	}
}

// TestObserveInterfaceGone: when the watched interface is deleted (a bond
// rebuilt, a NIC replugged), observe says so once and /healthz turns 503,
// instead of reporting a health it no longer has.
func TestObserveInterfaceGone(t *testing.T) {
	privtest.RequireRoot(t, "observe attaches XDP in a network namespace")
	privtest.RequireCommand(t, "curl", "make deps installs it")
	bin := buildPortwatch(t)
	v := newVeth(t)
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	listen := "127.0.0.1:19717" // the namespace's own loopback
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", v.mn, bin, "observe", "-i", v.mnIface, "-q",
		"--backend", "xdp", "--window", "200ms", "--web.listen-address", listen, "--ready-file", ready)
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, "the ready file", &stderr)
	healthz := func() (int, string) {
		out, err := exec.Command("ip", "netns", "exec", v.mn, "curl", "-s", "-w", "\n%{http_code}", "http://"+listen+"/healthz").Output()
		if err != nil {
			return 0, err.Error()
		}
		text := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(text, '\n')
		n, _ := strconv.Atoi(text[i+1:])
		return n, text[:max(i, 0)]
	}
	if code, body := healthz(); code != 200 || !strings.HasPrefix(body, "ok") {
		t.Errorf("/healthz before: %d %q", code, body)
	}
	if out, err := exec.Command("ip", "-n", v.mn, "link", "del", v.mnIface).CombinedOutput(); err != nil {
		t.Fatalf("deleting %s: %v: %s", v.mnIface, err, out)
	}
	waitFor(t, func() bool { return strings.Contains(stderr.String(), v.mnIface+": the interface went away") }, "the message", &stderr)
	if code, body := healthz(); code != 503 || !strings.Contains(body, "detached: "+v.mnIface) {
		t.Errorf("/healthz after: %d %q", code, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if n := strings.Count(stderr.String(), "the interface went away"); n != 1 {
		t.Errorf("said %d times:\n%s", n, stderr.String())
	}
}

// TestObserveUsage: bad flags and arguments are refused before anything is
// attached, with exit status 2 and a message naming the flag.
func TestObserveUsage(t *testing.T) {
	checkUsageErrors(t, []usageCase{
		{[]string{"observe"}, "no interface: give one with -i IFACE"},
		{[]string{"observe", "eth0"}, `unexpected argument "eth0" (interfaces go with -i)`},
		{[]string{"observe", "-i", "nosuchif0", "--backend", "ebpf"}, `--backend "ebpf": want auto, xdp or capture`},
		{[]string{"observe", "-i", "nosuchif0", "--duration", "-5s"}, "--duration -5s: want a positive duration"},
		{[]string{"observe", "-i", "nosuchif0", "--window", "1ns"}, "--window 1ns: must be at least 100ms"},
	})
}

// TestObserveListenBeforeAttach: a busy --web.listen-address is reported
// before the interfaces are touched (here the interface does not exist,
// and the listen error must come first).
func TestObserveListenBeforeAttach(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, stderr := portwatch(t, "", "observe", "-i", "nosuchif0", "--web.listen-address", busy.Addr().String())
	if code != exitFailure || !strings.Contains(stderr, "--web.listen-address "+busy.Addr().String()) || strings.Contains(stderr, "nosuchif0") {
		t.Errorf("exit %d, %q: want %d and the listen address's error alone", code, stderr, exitFailure)
	}
}
