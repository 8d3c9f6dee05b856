//go:build linux

package capture

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"portwatch/internal/privtest"
)

// testNet is two network namespaces joined by a veth pair, made for one
// test and removed after it: "a" (198.18.0.1 on ifA) and "b" (198.18.0.2 on
// ifB). Traffic never leaves them.
type testNet struct {
	nsA, nsB   string
	ifA, ifB   string
	ipA, ipB   net.IP
	macA, macB net.HardwareAddr
}

// newTestNet builds the namespaces, or skips when the test may not.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		privtest.SkipOrFail(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		privtest.SkipOrFail(t, "the ip command (iproute2) is not installed")
	}
	var suffix [3]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(suffix[:])
	n := &testNet{
		nsA: "pwcapA-" + id, nsB: "pwcapB-" + id,
		ifA: "pwa" + id, ifB: "pwb" + id,
		ipA: net.IPv4(198, 18, 0, 1).To4(), ipB: net.IPv4(198, 18, 0, 2).To4(),
	}
	for _, ns := range []string{n.nsA, n.nsB} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	run(t, "ip", "link", "add", n.ifA, "netns", n.nsA, "type", "veth", "peer", "name", n.ifB, "netns", n.nsB)
	for _, side := range []struct{ ns, ifc, addr string }{{n.nsA, n.ifA, "198.18.0.1/24"}, {n.nsB, n.ifB, "198.18.0.2/24"}} {
		run(t, "ip", "-n", side.ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", side.ns, "addr", "add", side.addr, "dev", side.ifc)
		run(t, "ip", "-n", side.ns, "link", "set", side.ifc, "up")
	}
	n.inNS(t, n.nsA, func() { n.macA = interfaceMAC(t, n.ifA) })
	n.inNS(t, n.nsB, func() { n.macB = interfaceMAC(t, n.ifB) })
	return n
}

func interfaceMAC(t *testing.T, name string) net.HardwareAddr {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Error(err)
		return nil
	}
	return ifc.HardwareAddr
}

// run runs a command, failing the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// errFnStopped is how inNS learns that fn ended its goroutine (t.Fatal).
var errFnStopped = errors.New("fn stopped its goroutine")

// inNS runs fn on an OS thread that has entered namespace ns: sockets fn
// opens belong to ns for their whole life, whichever thread uses them later.
func (n *testNet) inNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		// The one send: fn may call t.Fatal, which ends this goroutine
		// before fn returns, and the test must not wait for ever.
		result := errFnStopped
		defer func() { done <- result }()
		runtime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			result = err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			result = err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			result = err
			return
		}
		fn()
		// A thread that cannot go back stays locked and dies with the
		// goroutine, so no other goroutine runs in ns by accident.
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			result = err
			return
		}
		runtime.UnlockOSThread()
		result = nil
	}()
	switch err := <-done; {
	case errors.Is(err, errFnStopped):
		t.FailNow()
	case err != nil:
		t.Fatalf("entering network namespace %s: %v", ns, err)
	}
}
