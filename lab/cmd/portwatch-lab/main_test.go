package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// beMainEnv makes the test binary run the command itself, so that tests
// can start it as a process and kill it.
const beMainEnv = "PORTWATCH_LAB_TEST_BE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beMainEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// labCommand runs portwatch-lab as a child process.
func labCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), beMainEnv+"=1")
	return cmd
}

// holdLab starts `portwatch-lab up --hold` and waits until the lab is up.
func holdLab(t *testing.T, prefix string) *exec.Cmd {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := labCommand("up", "--hold", "--prefix", prefix, "--nodes", "2", "--ready-file", ready)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = lab.Down(prefix)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab did not come up:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The process holding the lab is killed with SIGKILL: it can clean
// nothing, its daemons go on running, and `down` removes them all.
func TestDownAfterKill(t *testing.T) {
	labtest.RequirePriv(t)
	prefix := labtest.RandomPrefix()
	holder := holdLab(t, prefix)
	l, err := lab.Attach(prefix)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]string{}
	for _, d := range l.Daemons() {
		pids[d.PID] = d.Name
	}
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	left, err := lab.FindLeftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Namespaces) != len(l.Hosts()) || len(left.Processes) < len(pids) {
		t.Fatalf("after the kill the lab should still be there: %s", left)
	}
	out, err := labCommand("down", "--prefix", prefix).CombinedOutput()
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	t.Logf("down: %s", out)
	labtest.CheckGone(t, prefix)
	for pid, name := range pids {
		if alive(pid) {
			t.Errorf("daemon %s (pid %d) still runs", name, pid)
		}
	}
	// down is idempotent.
	out, err = labCommand("down", "--prefix", prefix).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to remove") {
		t.Errorf("a second down: %v\n%s", err, out)
	}
}

// SIGINT and SIGTERM make the holding process remove the lab itself.
func TestSignalRemovesLab(t *testing.T) {
	labtest.RequirePriv(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			prefix := labtest.RandomPrefix()
			holder := holdLab(t, prefix)
			l, err := lab.Attach(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if err := holder.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- holder.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("the holder exited with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the holder did not exit")
			}
			labtest.CheckGone(t, prefix)
			for _, d := range l.Daemons() {
				if alive(d.PID) {
					t.Errorf("daemon %s (pid %d) still runs", d.Name, d.PID)
				}
			}
		})
	}
}

// up is idempotent, and run hands the lab to a command and removes it.
func TestUpTwiceAndRun(t *testing.T) {
	labtest.RequirePriv(t)
	prefix := labtest.RandomPrefix()
	t.Cleanup(func() { _ = lab.Down(prefix) })
	for i, want := range []string{"up in", "already up"} {
		out, err := labCommand("up", "--prefix", prefix, "--nodes", "1").CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("up #%d: %v\n%s", i+1, err, out)
		}
	}
	out, err := labCommand("status", "--prefix", prefix).CombinedOutput()
	if err != nil || !strings.Contains(string(out), prefix+"mn/eth0") || strings.Contains(string(out), "NOT RUNNING") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = labCommand("probe", "--prefix", prefix, "xcatd-tcp", "tftp").Output()
	oks := 0
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == string(lab.OutcomeOK) {
			oks++
		}
	}
	if err != nil || oks != 2 {
		t.Errorf("probe: %v, want 2 probes ok\n%s", err, out)
	}
	if out, err := labCommand("down", "--prefix", prefix).CombinedOutput(); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}

	// run: the command sees the lab in its environment; its exit status
	// comes back; the lab is gone afterwards.
	script := `ip netns exec "$PORTWATCH_LAB_MN_NETNS" ip link show "$PORTWATCH_LAB_MN_IFACE" >/dev/null &&
ip netns exec "$PORTWATCH_LAB_FW_NETNS" ip link show "$PORTWATCH_LAB_FW_NODE_IFACE" >/dev/null && exit 7`
	cmd := labCommand("run", "--prefix", prefix, "--nodes", "1", "--", "sh", "-c", script)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
		t.Errorf("run: %v, want exit status 7\n%s", err, out)
	}
	labtest.CheckGone(t, prefix)
}

func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}
