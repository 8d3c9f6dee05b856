package lab

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Leftovers is what a lab with some prefix has on the machine.
type Leftovers struct {
	Namespaces []string
	// Processes are pids in the lab's namespaces or with the run directory
	// on their command line.
	Processes []int
	// RunDir is set when the run directory exists.
	RunDir string
}

// Empty reports whether nothing is left.
func (l Leftovers) Empty() bool {
	return len(l.Namespaces) == 0 && len(l.Processes) == 0 && l.RunDir == ""
}

func (l Leftovers) String() string {
	if l.Empty() {
		return "nothing"
	}
	var parts []string
	if len(l.Namespaces) > 0 {
		parts = append(parts, fmt.Sprintf("%d namespaces (%s)", len(l.Namespaces), strings.Join(first(l.Namespaces, 5), ", ")))
	}
	if len(l.Processes) > 0 {
		var pids []string
		for _, p := range l.Processes {
			pids = append(pids, strconv.Itoa(p))
		}
		parts = append(parts, fmt.Sprintf("%d processes (%s)", len(l.Processes), strings.Join(first(pids, 10), " ")))
	}
	if l.RunDir != "" {
		parts = append(parts, "run directory "+l.RunDir)
	}
	return strings.Join(parts, "; ")
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// FindLeftovers lists what a lab with this prefix has on the machine: all
// of it while the lab is up, nothing after Down.
func FindLeftovers(prefix string) (Leftovers, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Leftovers{}, err
	}
	var out Leftovers
	names, err := labNamespaces(prefix)
	if err != nil {
		return out, err
	}
	out.Namespaces = names
	seen := map[int]bool{}
	for _, pids := range processesIn(netnsInodes(names)) {
		for _, p := range pids {
			seen[p] = true
		}
	}
	runDir := RunDirFor(prefix)
	for _, p := range processesUsing(runDir) {
		seen[p] = true
	}
	for p := range seen {
		out.Processes = append(out.Processes, p)
	}
	sort.Ints(out.Processes)
	if _, err := os.Stat(runDir); err == nil {
		out.RunDir = runDir
	}
	return out, nil
}

// processesUsing lists live processes outside this process's network
// namespace whose command line names a path in dir: every daemon of the
// lab is started with its configuration there. Processes in our own
// namespace (someone's `tail -f` of a lab log) are not the lab's.
func processesUsing(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		return nil
	}
	needle := []byte(dir + "/")
	var out []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var ns unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &ns) != nil || ns.Ino == own.Ino {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			continue
		}
		cmdline = append(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), ' ')
		if (bytes.Contains(cmdline, needle) || bytes.Contains(cmdline, []byte(dir+" "))) && !isZombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}
