package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
)

// attach watches one interface: XDP on ingress first, then the stale
// clsact filters of a killed portwatch go, then TC on egress.
func (l *Loader) attach(name string) (Attachment, error) {
	nlLink, err := l.nl.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return Attachment{}, fmt.Errorf("attaching to %s: no such interface (see `ip link`)", name)
		}
		return Attachment{}, privilegeError("looking up interface "+name, err)
	}
	a := Attachment{Interface: name, Ifindex: nlLink.Attrs().Index}

	a.XDPMode, err = l.attachXDP(name, nlLink)
	if err != nil {
		return a, err
	}
	// Only now: a live portwatch holds the interface's XDP hook, so with
	// ours attached, a portwatch filter left on its egress is a killed
	// one's, whatever its handle's pid says (a pid from another pid
	// namespace may look dead from here).
	removed, err := removeStaleFilters(l.nl, nlLink)
	if err != nil {
		return a, err
	}
	for _, id := range removed {
		l.log.Warn("removed a clsact filter left by a portwatch that was killed", "interface", name, "prog_id", id)
	}
	a.Egress, err = l.attachEgress(name, nlLink)
	return a, err
}

func (l *Loader) attachXDP(name string, nlLink netlink.Link) (XDPMode, error) {
	ifindex := nlLink.Attrs().Index
	try := func(mode XDPMode) error {
		flags := link.XDPDriverMode
		if mode == XDPGeneric {
			flags = link.XDPGenericMode
		}
		lk, err := link.AttachXDP(link.XDPOptions{Program: l.objs.PortwatchXdp, Interface: ifindex, Flags: flags})
		if err != nil {
			return err
		}
		l.links = append(l.links, lk)
		if l.xdpLinks == nil {
			l.xdpLinks = map[string]link.Link{}
		}
		l.xdpLinks[name] = lk
		return nil
	}

	switch l.cfg.XDPMode {
	case XDPNative, XDPGeneric:
		if err := try(l.cfg.XDPMode); err != nil {
			return "", l.xdpError(name, l.cfg.XDPMode, err)
		}
		return l.cfg.XDPMode, nil
	}
	err := try(XDPNative)
	if err == nil {
		return XDPNative, nil
	}
	// EOPNOTSUPP: no native XDP in the driver. EINVAL or ERANGE (veth):
	// the driver has it but refuses it as configured (an MTU larger than
	// one buffer, as jumbo frames on a management network; LRO on):
	// generic XDP works with both.
	if !errors.Is(err, unix.EOPNOTSUPP) && !nativeRefused(err) {
		return "", l.xdpError(name, XDPNative, err)
	}
	if gerr := try(XDPGeneric); gerr != nil {
		return "", l.xdpError(name, XDPGeneric, gerr)
	}
	l.log.Warn("no native XDP on this interface (the driver lacks it, or refuses it as configured); attached in generic mode, which costs more per packet",
		"interface", name, "driver_error", err.Error())
	return XDPGeneric, nil
}

// nativeRefused tells a driver's refusal of native XDP in its present
// configuration (MTU, LRO) from other failures.
func nativeRefused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ERANGE)
}

// xdpError explains a failed XDP attach and what to do about it.
func (l *Loader) xdpError(name string, mode XDPMode, err error) error {
	prefix := fmt.Sprintf("attaching XDP to %s in %s mode", name, mode)
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%s: the driver does not support native XDP (use --xdp-mode=auto or --xdp-mode=generic): %w",
			prefix, err)
	case mode == XDPNative && nativeRefused(err):
		return fmt.Errorf("%s: the driver refuses native XDP here, often for an MTU larger than one page (jumbo frames) or LRO on "+
			"(use --xdp-mode=auto or --xdp-mode=generic, or lower the MTU): %w", prefix, err)
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %s: %w", prefix, l.describeAttachedXDP(name), err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%s: no such interface (see `ip link`): %w", prefix, err)
	}
	return privilegeError(prefix, err)
}

// describeAttachedXDP names the XDP program that holds an interface and
// says how to remove it.
func (l *Loader) describeAttachedXDP(name string) string {
	nlLink, err := l.nl.LinkByName(name)
	if err != nil || nlLink.Attrs().Xdp == nil || !nlLink.Attrs().Xdp.Attached {
		return "another XDP program is attached (see `ip link show dev " + name + "`); remove it with " +
			"`ip link set dev " + name + " xdp off`, or watch another interface"
	}
	xdp := nlLink.Attrs().Xdp
	id := ebpf.ProgramID(xdp.ProgId)
	progName := "unnamed"
	prog, err := ebpf.NewProgramFromID(id)
	if err == nil {
		if info, err := prog.Info(); err == nil && info.Name != "" {
			progName = info.Name
		}
		_ = prog.Close()
	} else if isPermission(err) {
		// Opening another process's program, and walking the links,
		// takes CAP_SYS_ADMIN, which portwatch does not otherwise need:
		// say what cannot be told, and how to find out.
		return fmt.Sprintf("another XDP program is attached (prog id %d, %s mode; naming it, and the process that holds it, "+
			"needs CAP_SYS_ADMIN): see `bpftool net show dev %s` and `bpftool link show`; "+
			"if no bpf_link holds it, remove it with `ip link set dev %s xdp off`",
			id, xdpAttachModeName(xdp.AttachMode), name, name)
	}
	what := fmt.Sprintf("another XDP program is attached: %s (prog id %d, %s mode)",
		progName, id, xdpAttachModeName(xdp.AttachMode))
	if progName == bpf.PortwatchProgPortwatchXdp {
		what += "; another portwatch is watching this interface"
	}
	if linkID, ok := xdpLinkOf(id); ok {
		return what + fmt.Sprintf("; it is held by bpf_link %d: stop the process that holds it (`bpftool link show id %d`)",
			linkID, linkID)
	}
	return what + "; remove it with `ip link set dev " + name + " xdp off`"
}

func xdpAttachModeName(mode uint32) string {
	switch mode {
	case 1: // XDP_ATTACHED_DRV
		return "native"
	case 2: // XDP_ATTACHED_SKB
		return "generic"
	case 3: // XDP_ATTACHED_HW
		return "offload"
	case 4: // XDP_ATTACHED_MULTI
		return "several"
	}
	return "unknown"
}

// xdpLinkOf finds the XDP bpf_link that holds a program, if one does.
func xdpLinkOf(prog ebpf.ProgramID) (link.ID, bool) {
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err == nil && info.Type == link.XDPType && info.Program == prog {
			return info.ID, true
		}
	}
	return 0, false
}

func (l *Loader) attachEgress(name string, nlLink netlink.Link) (EgressAttach, error) {
	ifindex := nlLink.Attrs().Index
	if l.cfg.Egress != EgressClsact {
		// At the head, the observer runs before any program that could end
		// the chain with a verdict; it never ends the chain itself.
		lk, err := link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   l.objs.PortwatchTc,
			Attach:    ebpf.AttachTCXEgress,
			Anchor:    link.Head(),
		})
		if err == nil {
			l.links = append(l.links, lk)
			return EgressTCX, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return "", privilegeError("attaching TC (TCX) to the egress of "+name, err)
		}
		if l.cfg.Egress == EgressTCX {
			return "", fmt.Errorf("attaching TC to the egress of %s: this kernel has no TCX (it came in 6.6); "+
				"use --egress-attach=clsact: %w", name, err)
		}
		l.log.Info("the kernel has no TCX; attaching the egress program as a clsact filter", "interface", name)
	}
	f, err := addClsactFilter(l.nl, nlLink, l.objs.PortwatchTc)
	if err != nil {
		return "", err
	}
	l.filters = append(l.filters, f)
	return EgressClsact, nil
}

// A clsact filter, unlike a bpf_link, stays in the kernel when the process
// that added it dies: the program keeps running and counting into maps that
// nobody reads. The filter's handle is the pid of the portwatch that added
// it, so that a later portwatch can tell a stale filter (its process is gone,
// or no longer holds the program) from a live one and remove only the first.
const (
	clsactFilterName = bpf.PortwatchProgPortwatchTc
	// Priority 1 runs first on the egress hook: the observer sees every
	// packet before another filter can end the chain, and it never ends
	// the chain itself (TC_ACT_UNSPEC).
	clsactPriority = 1
)

type clsactFilter struct {
	filter     *netlink.BpfFilter
	addedQdisc *netlink.GenericQdisc // nil when the qdisc was there before
	iface      string
}

func clsactQdisc(ifindex int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

func addClsactFilter(nl *netlink.Handle, nlLink netlink.Link, prog *ebpf.Program) (*clsactFilter, error) {
	name := nlLink.Attrs().Name
	ifindex := nlLink.Attrs().Index
	f := &clsactFilter{iface: name}
	qdisc := clsactQdisc(ifindex)
	switch err := nl.QdiscAdd(qdisc); {
	case err == nil:
		f.addedQdisc = qdisc
	case errors.Is(err, unix.EEXIST):
	default:
		return nil, privilegeError("adding a clsact qdisc to "+name, err)
	}
	f.filter = &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_EGRESS,
			Handle:    uint32(os.Getpid()),
			Protocol:  unix.ETH_P_ALL,
			Priority:  clsactPriority,
		},
		Fd:           prog.FD(),
		Name:         clsactFilterName,
		DirectAction: true,
	}
	if err := nl.FilterAdd(f.filter); err != nil {
		if f.addedQdisc != nil {
			_ = nl.QdiscDel(f.addedQdisc)
		}
		return nil, privilegeError(fmt.Sprintf("adding the egress filter to %s (tc filter add dev %s egress prio %d)",
			name, name, clsactPriority), err)
	}
	return f, nil
}

// remove deletes the filter, and the clsact qdisc too when this loader
// added it and no other filter uses it.
func (f *clsactFilter) remove(nl *netlink.Handle) error {
	if err := nl.FilterDel(f.filter); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("removing the egress filter of %s (tc filter del dev %s egress prio %d handle %#x bpf): %w",
			f.iface, f.iface, clsactPriority, f.filter.Handle, err)
	}
	if f.addedQdisc == nil {
		return nil
	}
	nlLink, err := nl.LinkByIndex(f.addedQdisc.LinkIndex)
	if err != nil {
		return nil // the interface is gone, and its qdisc with it
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		if filters, err := nl.FilterList(nlLink, parent); err != nil || len(filters) > 0 {
			return nil
		}
	}
	if err := nl.QdiscDel(f.addedQdisc); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("removing the clsact qdisc of %s: %w", f.iface, err)
	}
	return nil
}

// removeStaleFilters deletes the egress filters that a killed portwatch
// left on an interface, and returns their program ids.
func removeStaleFilters(nl *netlink.Handle, nlLink netlink.Link) ([]ebpf.ProgramID, error) {
	filters, err := nl.FilterList(nlLink, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		// No clsact qdisc: no filter either.
		return nil, nil
	}
	var removed []ebpf.ProgramID
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || !strings.HasPrefix(bf.Name, clsactFilterName) {
			continue
		}
		id := ebpf.ProgramID(bf.Id)
		if processHoldsProgram(int(bf.Handle), id) {
			continue
		}
		if err := nl.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
			name := nlLink.Attrs().Name
			return removed, privilegeError(fmt.Sprintf("removing a stale portwatch filter from %s "+
				"(by hand: tc filter del dev %s egress prio %d handle %#x bpf)", name, name, bf.Priority, bf.Handle), err)
		}
		removed = append(removed, id)
	}
	return removed, nil
}

// processHoldsProgram reports whether process pid is alive and has a file
// descriptor for the BPF program id: the portwatch that added a filter keeps
// its program open for as long as it runs.
func processHoldsProgram(pid int, id ebpf.ProgramID) bool {
	if pid <= 0 {
		return false
	}
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	want := "prog_id:\t" + strconv.FormatUint(uint64(id), 10)
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || target != "anon_inode:bpf-prog" {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "fdinfo", e.Name()))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(info), "\n") {
			if line == want {
				return true
			}
		}
	}
	return false
}
