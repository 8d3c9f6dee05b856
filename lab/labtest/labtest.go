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
	"testing"
	"time"

	"portwatch/lab"
)

// RequirePrivEnv makes a missing privilege or package a failure instead of
// a skip (CI sets it).
const RequirePrivEnv = "PORTWATCH_REQUIRE_PRIV"

// Tools the lab runs; lab/packages.txt installs them.
var tools = []string{"ip", "nft", "conntrack", "tcpdump", "dnsmasq", "sshd", "ssh", "ssh-keygen", "rsync",
	"nginx", "rsyslogd", "rpcbind", "rpcinfo", "snmpd", "snmpget", "ipmi_sim", "ipmitool", "busybox",
	"tftp", "curl", "logger"}

// RequirePriv skips the test when it cannot build a lab (not root, or a
// package missing), or fails it when PORTWATCH_REQUIRE_PRIV=1.
func RequirePriv(t testing.TB) {
	t.Helper()
	skip := func(reason string) {
		t.Helper()
		if os.Getenv(RequirePrivEnv) == "1" {
			t.Fatalf("%s, and %s=1 forbids skipping", reason, RequirePrivEnv)
		}
		t.Skip(reason)
	}
	if os.Geteuid() != 0 {
		skip("the lab needs root (network namespaces, nftables)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skip(tool + " is missing: run lab/install-deps.sh")
		}
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
		if left, err := lab.FindLeftovers(cfg.Prefix); err != nil || !left.Empty() {
			t.Errorf("lab %s left %s (%v)", cfg.Prefix, left, err)
		}
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}
