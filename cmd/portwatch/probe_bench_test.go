package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// farmSize is the number of BMCs the benchmark probes.
const farmSize = 1000

// farmFirst is the first BMC address; farmNet routes them all via the lab's
// BMC namespace.
var (
	farmFirst = netip.MustParseAddr("10.77.8.1")
	farmNet   = netip.MustParsePrefix("10.77.8.0/22")
)

// bmcFarm puts farmSize addresses on the BMC namespace's interface, routes
// them from fw, and starts a responder for their port 623. It returns the
// targets file.
func bmcFarm(b *testing.B, l *lab.Lab) string {
	b.Helper()
	ctx := context.Background()
	bmc, fw := l.BMC(), l.FW()
	var batch strings.Builder
	a := farmFirst
	var targets strings.Builder
	for range farmSize {
		fmt.Fprintf(&batch, "address add %s/32 dev %s\n", a, bmc.Iface)
		fmt.Fprintln(&targets, a)
		a = a.Next()
	}
	cmd := l.Command(ctx, bmc, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("adding the BMC addresses: %v: %s", err, out)
	}
	for _, args := range [][]string{
		{"ip", "route", "add", farmNet.String(), "via", bmc.Addr.String()},
	} {
		if out, err := l.Command(ctx, fw, args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	farm := l.Command(context.Background(), bmc, exe, farmFirst.String(), fmt.Sprint(farmSize))
	farm.Env = append(os.Environ(), bmcFarmEnv+"=1")
	out, err := farm.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	farm.Stderr = os.Stderr
	if err := farm.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = farm.Process.Signal(syscall.SIGTERM)
		_ = farm.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("the BMC farm did not start: %q %v", line, err)
	}
	file := filepath.Join(b.TempDir(), "bmcs.txt")
	if err := os.WriteFile(file, []byte(targets.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return file
}

// allowFarm lets the nodes reach the farm's port 623, as open.nft does for
// the lab's own BMC; without it fw drops every probe.
func allowFarm(b *testing.B, l *lab.Lab, allow bool) {
	b.Helper()
	if err := l.LoadScenario("open"); err != nil {
		b.Fatal(err)
	}
	if !allow {
		return
	}
	for _, proto := range []string{"tcp", "udp"} {
		rule := fmt.Sprintf("add rule inet portwatch_lab scenario ip daddr %s %s dport 623 accept", farmNet, proto)
		if out, err := l.Command(context.Background(), l.FW(), "nft", strings.Fields(rule)...).CombinedOutput(); err != nil {
			b.Fatalf("nft %s: %v: %s", rule, err, out)
		}
	}
}

// BenchmarkProbeBMCs probes the IPMI port (tcp and udp 623) of 1,000 BMCs
// from a node with the default concurrency and rate, and runs
// `nmap -sU -sS -p 623` on the same targets from the same node: once with
// every BMC answering, once with the firewall dropping everything (the
// slow case: every probe waits out its retries).
func BenchmarkProbeBMCs(b *testing.B) {
	l := labtest.Start(b, lab.Config{Nodes: 1})
	targets := bmcFarm(b, l)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	node := l.Node(1)
	for _, tc := range []struct {
		name  string
		allow bool
		state string
		flags []string
	}{
		{"answering", true, "open", nil},
		// Without the rate limit: what the default --rate 1000 costs.
		{"answering-unlimited", true, "open", []string{"--rate", "0", "--concurrency", "1000"}},
		{"dropped", false, "no-answer", nil},
	} {
		b.Run(tc.name+"/probe", func(b *testing.B) {
			allowFarm(b, l, tc.allow)
			for b.Loop() {
				args := append([]string{"probe", "--role", "bmc", "--format", "json", "--targets-file", targets}, tc.flags...)
				cmd := l.Command(context.Background(), node, exe, args...)
				cmd.Env = append(os.Environ(), runMainEnv+"=1")
				out, _ := cmd.Output()
				var doc probeOutput
				if err := json.Unmarshal(out, &doc); err != nil {
					b.Fatalf("probe output: %v", err)
				}
				if len(doc.Results) != 2*farmSize {
					b.Fatalf("%d results", len(doc.Results))
				}
				for _, r := range doc.Results {
					if r.Proto == "udp" && r.State != tc.state {
						b.Fatalf("%s udp/623: %s (%s)", r.Target, r.State, r.Evidence)
					}
				}
			}
			b.ReportMetric(float64(farmSize)/(b.Elapsed().Seconds()/float64(b.N)), "targets/s")
		})
		b.Run(tc.name+"/nmap", func(b *testing.B) {
			if tc.flags != nil {
				b.Skip("the same nmap run as without the flags")
			}
			if _, err := exec.LookPath("nmap"); err != nil {
				b.Skip("nmap is missing (lab/packages.txt)")
			}
			allowFarm(b, l, tc.allow)
			for b.Loop() {
				out, err := l.Command(context.Background(), node, "nmap", "-n", "-Pn", "-sU", "-sS", "-p", "U:623,T:623",
					"-iL", targets, "-oG", "-").Output()
				if err != nil {
					b.Fatalf("nmap: %v", err)
				}
				if hosts := strings.Count(string(out), "Ports: 623/"); hosts != farmSize {
					b.Fatalf("nmap reported %d hosts", hosts)
				}
			}
			b.ReportMetric(float64(farmSize)/(b.Elapsed().Seconds()/float64(b.N)), "targets/s")
		})
	}
}

// BenchmarkProbeMN probes every row of the management node from a node
// (scenario open), alone and confirmed by the observer on mn.
func BenchmarkProbeMN(b *testing.B) {
	l := labtest.Start(b, lab.Config{Nodes: 1})
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	r := &labRun{t: b, l: l, exe: exe}
	if err := l.LoadScenario("open"); err != nil {
		b.Fatal(err)
	}
	mn := l.MN().Addr.String()
	run := func(b *testing.B, args ...string) {
		for b.Loop() {
			cmd := r.command(context.Background(), l.Node(1), append([]string{"probe", "--format", "json"}, args...)...)
			if out, err := cmd.Output(); len(out) == 0 {
				b.Fatalf("probe: %v", err)
			}
		}
	}
	b.Run("alone", func(b *testing.B) { run(b, mn) })
	b.Run("observer", func(b *testing.B) {
		observer := r.startObserver()
		r.loadScenario("open")
		run(b, "--observer", observer, mn)
	})
}
