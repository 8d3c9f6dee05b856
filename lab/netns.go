package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// ipBatch runs `ip -batch -` (inside netns, unless it is empty) with the
// given commands, one a line. One process for many commands is what makes
// a 200-node lab quick to build.
func ipBatch(ctx context.Context, netns string, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		where := "the host"
		if netns != "" {
			where = "namespace " + netns
		}
		return fmt.Errorf("ip -batch in %s: %v: %s", where, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// inNetns runs fn on an OS thread that has joined the named network
// namespace. Sockets fn creates belong to that namespace for their whole
// life, whichever thread uses them later. fn runs in its own goroutine: if
// the thread cannot return to its original namespace, it is left locked and
// so ends with the goroutine, and no other goroutine ever runs on it.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w (is the lab up? see `ip netns list`)", name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// setSysctls writes net sysctls (path under /proc/sys/net, value) inside a
// namespace: /proc/sys/net shows the namespace of the thread that opens it.
func setSysctls(netns string, kv [][2]string) error {
	return inNetns(netns, func() error {
		for _, s := range kv {
			p := filepath.Join("/proc/sys/net", s[0])
			if err := os.WriteFile(p, []byte(s[1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", p, s[1], netns, err)
			}
		}
		return nil
	})
}

// labNamespaces lists the existing namespaces that a lab with this prefix
// created, sorted.
func labNamespaces(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	re := labNetnsPattern(prefix)
	var out []string
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// netnsInodes maps the inode of each named namespace to its name.
func netnsInodes(names []string) map[uint64]string {
	out := make(map[uint64]string, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(netnsDir, n), &st); err == nil {
			out[st.Ino] = n
		}
	}
	return out
}

// processesIn finds the live processes whose network namespace is one of
// inodes (as netnsInodes returns), by namespace name. One pass over /proc
// serves any number of namespaces, where `ip netns pids` would need a
// process per namespace.
func processesIn(inodes map[uint64]string) map[string][]int {
	out := make(map[string][]int)
	if len(inodes) == 0 {
		return out
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		name, ok := inodes[st.Ino]
		if !ok || isZombie(pid) {
			continue
		}
		out[name] = append(out[name], pid)
	}
	return out
}

// isZombie reports whether pid has exited and waits only to be reaped (or
// is gone already).
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}
