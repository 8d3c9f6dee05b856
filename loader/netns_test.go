package loader

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
	"portwatch/internal/privtest"
)

// Network namespaces for the live tests: every name carries a random
// suffix, because other people run tests on this machine at the same time,
// and everything is removed when the test ends, failed or not.

func randomSuffix(t testing.TB) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// vethPair is two namespaces joined by a veth pair: A is the watched host
// (a management node), B a client on its network.
type vethPair struct {
	nsA, nsB string
	ifA, ifB string
	a4, b4   netip.Addr
	a6, b6   netip.Addr
}

func newVethPair(t testing.TB) *vethPair {
	t.Helper()
	requirePrivileged(t)
	if _, err := exec.LookPath("ip"); err != nil {
		privtest.SkipOrFail(t, "needs ip from iproute2")
	}
	sfx := randomSuffix(t)
	p := &vethPair{
		nsA: "pw-a-" + sfx, nsB: "pw-b-" + sfx,
		ifA: "pwa" + sfx, ifB: "pwb" + sfx,
		// Documentation prefixes, only ever inside these namespaces.
		a4: netip.MustParseAddr("192.0.2.1"), b4: netip.MustParseAddr("192.0.2.2"),
		a6: netip.MustParseAddr("2001:db8::1"), b6: netip.MustParseAddr("2001:db8::2"),
	}
	ipCmd(t, "netns", "add", p.nsA)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.nsA).Run() })
	ipCmd(t, "netns", "add", p.nsB)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.nsB).Run() })
	ipCmd(t, "link", "add", p.ifA, "netns", p.nsA, "type", "veth", "peer", "name", p.ifB, "netns", p.nsB)
	for _, side := range []struct {
		ns, ifname string
		v4, v6     netip.Addr
	}{{p.nsA, p.ifA, p.a4, p.a6}, {p.nsB, p.ifB, p.b4, p.b6}} {
		ipCmd(t, "-n", side.ns, "addr", "add", side.v4.String()+"/24", "dev", side.ifname)
		ipCmd(t, "-n", side.ns, "addr", "add", side.v6.String()+"/64", "dev", side.ifname, "nodad")
		ipCmd(t, "-n", side.ns, "link", "set", "dev", side.ifname, "up")
		ipCmd(t, "-n", side.ns, "link", "set", "dev", "lo", "up")
	}
	return p
}

// inNetns runs fn on a thread that has entered the named namespace: the
// sockets and interfaces fn creates or looks up are that namespace's.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", name, err)
			return
		}
		err = fn()
		// A thread that cannot go back stays locked and dies with the
		// goroutine, so no other goroutine runs in the wrong namespace.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func mustInNetns(t testing.TB, name string, fn func() error) {
	t.Helper()
	if err := inNetns(name, fn); err != nil {
		t.Fatal(err)
	}
}

// hookState is what is attached to an interface, read in its namespace.
type hookState struct {
	xdpProg  ebpf.ProgramID // 0: none
	xdpMode  uint32
	tcx      []ebpf.ProgramID
	filters  []*netlink.BpfFilter // portwatch's clsact egress filters
	clsactUp bool                 // a clsact qdisc exists
}

func readHooks(ns, ifname string) (hookState, error) {
	var st hookState
	err := inNetns(ns, func() error {
		nl, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := nl.Attrs().Xdp; x != nil && x.Attached {
			st.xdpProg, st.xdpMode = ebpf.ProgramID(x.ProgId), x.AttachMode
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: nl.Attrs().Index, Attach: ebpf.AttachTCXEgress})
		if err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		if res != nil {
			for _, p := range res.Programs {
				st.tcx = append(st.tcx, p.ID)
			}
		}
		qdiscs, err := netlink.QdiscList(nl)
		if err != nil {
			return err
		}
		for _, q := range qdiscs {
			if q.Type() == "clsact" {
				st.clsactUp = true
			}
		}
		if !st.clsactUp {
			return nil
		}
		filters, err := netlink.FilterList(nl, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			return err
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, bpf.PortwatchProgPortwatchTc) {
				st.filters = append(st.filters, bf)
			}
		}
		return nil
	})
	return st, err
}

func (s hookState) empty() bool {
	return s.xdpProg == 0 && len(s.tcx) == 0 && len(s.filters) == 0
}

func (s hookState) String() string {
	var fs []string
	for _, f := range s.filters {
		fs = append(fs, fmt.Sprintf("%s(prog %d, handle %d)", f.Name, f.Id, f.Handle))
	}
	return fmt.Sprintf("xdp prog %d (mode %d), tcx egress %v, clsact %v filters %v", s.xdpProg, s.xdpMode, s.tcx,
		s.clsactUp, fs)
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v: %s", what, within, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// progGone reports whether the kernel has freed a program.
func progGone(id ebpf.ProgramID) bool {
	p, err := ebpf.NewProgramFromID(id)
	if err == nil {
		_ = p.Close()
		return false
	}
	return errors.Is(err, unix.ENOENT)
}

func progIDs(t *testing.T, l *Loader) (xdp, tc ebpf.ProgramID) {
	t.Helper()
	for _, p := range []struct {
		prog *ebpf.Program
		out  *ebpf.ProgramID
	}{{l.objs.PortwatchXdp, &xdp}, {l.objs.PortwatchTc, &tc}} {
		info, err := p.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("the kernel reports no program id")
		}
		*p.out = id
	}
	return xdp, tc
}
