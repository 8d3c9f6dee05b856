// Package labtest starts a lab for a Go test: with a random prefix, so
// that tests and people running at the same time never meet, and removed
// by t.Cleanup whether the test passes, fails or panics.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"portwatch/internal/privtest"
	"portwatch/lab"
)

// Tools the lab runs; lab/packages.txt installs them.
var tools = []string{"ip", "nft", "conntrack", "tcpdump", "dnsmasq", "sshd", "ssh", "ssh-keygen", "rsync",
	"nginx", "rsyslogd", "rpcbind", "rpcinfo", "snmpd", "snmpget", "ipmi_sim", "ipmitool", "busybox",
	"tftp", "curl", "logger"}

// RequirePriv skips the test when it cannot build a lab (not root, or a
// package missing), or fails it when PORTWATCH_REQUIRE_PRIV=1.
func RequirePriv(t testing.TB) {
	t.Helper()
	privtest.RequireRoot(t, "the lab needs network namespaces and nftables")
	for _, tool := range tools {
		privtest.RequireCommand(t, tool, "run lab/install-deps.sh")
	}
}

// RandomPrefix returns a prefix no one else uses: "pt" and six hex digits.
func RandomPrefix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "pt" + hex.EncodeToString(b) + "-"
}

// Start brings up a lab for the test with a random prefix (unless cfg has
// one) and removes it when the test ends. It skips or fails as RequirePriv.
func Start(t testing.TB, cfg lab.Config) *lab.Lab {
	t.Helper()
	RequirePriv(t)
	if cfg.Prefix == "" {
		cfg.Prefix = RandomPrefix()
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	// Registered even when Up failed: Up cleans up after itself, and this
	// makes sure of it.
	t.Cleanup(func() {
		if l != nil {
			if err := l.Down(); err != nil {
				t.Errorf("lab down: %v", err)
			}
		}
		if err := lab.Down(cfg.Prefix); err != nil {
			t.Errorf("lab down %s: %v", cfg.Prefix, err)
		}
		CheckGone(t, cfg.Prefix)
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}

// CheckGone fails the test if anything of the lab with this prefix is
// left: it asks lab.FindLeftovers, and, independently of the lab's own
// code, `ip netns list` and `ps`.
func CheckGone(t testing.TB, prefix string) {
	t.Helper()
	if left, err := lab.FindLeftovers(prefix); err != nil || !left.Empty() {
		t.Errorf("lab %s left %s (%v)", prefix, left, err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Errorf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			t.Errorf("ip netns list still shows %s", line)
		}
	}
	out, err = exec.Command("ps", "-eo", "pid=,stat=,args=").Output()
	if err != nil {
		t.Errorf("ps: %v", err)
	}
	runDir := lab.RunDirFor(prefix)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && !strings.HasPrefix(f[1], "Z") && strings.Contains(line, runDir+"/") {
			t.Errorf("a process of lab %s still runs: %s", prefix, strings.TrimSpace(line))
		}
	}
	if _, err := os.Stat(runDir); err == nil {
		t.Errorf("%s still exists", runDir)
	}
}
