package lab_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// A lab whose daemon fails to start is removed by Up itself, and the error
// names the daemon and its log.
func TestFailedUpLeavesNothing(t *testing.T) {
	labtest.RequirePriv(t)
	cfg := lab.Config{Prefix: labtest.RandomPrefix(), Nodes: 2, Logf: t.Logf}
	lab.BreakDaemon(&cfg, "dnsmasq")
	t.Cleanup(func() { _ = lab.Down(cfg.Prefix) })
	l, err := lab.Up(context.Background(), cfg)
	if err == nil {
		l.Down()
		t.Fatal("Up succeeded with a broken dnsmasq")
	}
	t.Logf("Up: %v", err)
	for _, want := range []string{"dnsmasq", "exited during start-up", "dnsmasq.log", "bad option"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q", want)
		}
	}
	labtest.CheckGone(t, cfg.Prefix)
}

// failingLabEnv makes TestHelperFailingLab run: it is the failing test
// that TestFailingTestLeavesNothing runs in a child process.
const failingLabEnv = "PORTWATCH_LAB_TEST_FAILING_LAB"

func TestHelperFailingLab(t *testing.T) {
	prefixFile := os.Getenv(failingLabEnv)
	if prefixFile == "" {
		t.Skip("run by TestFailingTestLeavesNothing")
	}
	l := labtest.Start(t, lab.Config{Nodes: 2})
	if err := os.WriteFile(prefixFile, []byte(l.Prefix()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Fatal("this test fails on purpose, with its lab up")
}

// A test that fails with its lab up leaves nothing behind: labtest's
// t.Cleanup removes namespaces, links, nftables tables, daemons and files.
func TestFailingTestLeavesNothing(t *testing.T) {
	labtest.RequirePriv(t)
	prefixFile := filepath.Join(t.TempDir(), "prefix")
	before := hostLinks(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFailingLab$", "-test.v")
	cmd.Env = append(os.Environ(), failingLabEnv+"="+prefixFile)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fails on purpose") {
		t.Fatalf("the helper test should have failed on purpose: %v\n%s", err, out)
	}
	prefix, err := os.ReadFile(prefixFile)
	if err != nil {
		t.Fatalf("the helper did not bring its lab up: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = lab.Down(string(prefix)) })
	labtest.CheckGone(t, string(prefix))
	if after := hostLinks(t); after != before {
		t.Errorf("the host's links changed:\nbefore %s\nafter  %s", before, after)
	}
}
