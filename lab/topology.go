package lab

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

// fwAddr is fw's address on a segment.
func (t *topology) fwAddr(seg netip.Prefix) netip.Addr { return addrIn(seg, routerOctet) }

// Batches of `ip` commands that build the lab. They are plain text, so a
// person can read (and replay) exactly what was built; topology_test.go
// keeps a golden copy.

// hostBatch creates every namespace. `ip netns add` in batch mode returns
// to the original namespace after each one.
func (t *topology) hostBatch() []string {
	var lines []string
	for _, h := range t.all() {
		lines = append(lines, "netns add "+h.Netns)
	}
	return lines
}

// bridgeBatch runs in the bridge namespace: the bridge, fw's uplink, and a
// veth per node whose other end is created directly in the node's
// namespace, as eth0. Nothing is ever created in the host's namespace.
func (t *topology) bridgeBatch() []string {
	fwNodes := t.fwAddr(NodeNet)
	lines := []string{
		"link add " + bridgeIface + " type bridge",
		// No IPv6 link-local addresses anywhere: the lab's traffic is the
		// IPv4 of its daemons and clients, and nothing else.
		"link set " + bridgeIface + " addrgenmode none up",
		fmt.Sprintf("link add %s type veth peer name %s address %s netns %s",
			brUplinkIface, fwNodesIface, macFor(NodeNet, int(fwNodes.As4()[3])), t.fw.Netns),
		"link set " + brUplinkIface + " addrgenmode none master " + bridgeIface + " up",
	}
	for _, n := range t.nodes {
		lines = append(lines,
			fmt.Sprintf("link add %s type veth peer name %s address %s netns %s", n.Name, hostIface, n.MAC, n.Netns),
			fmt.Sprintf("link set %s addrgenmode none master %s up", n.Name, bridgeIface))
	}
	return lines
}

// fwBatch runs in fw: a veth to each of mn, bmc and sw, and the addresses
// of all four of fw's interfaces.
func (t *topology) fwBatch() []string {
	lines := []string{"link set lo up"}
	for _, seg := range []struct {
		iface string
		peer  Host
		net   netip.Prefix
	}{
		{fwMgmtIface, t.mn, MgmtNet},
		{fwBMCIface, t.bmc, BMCNet},
		{fwSwitchIface, t.sw, SwitchNet},
	} {
		lines = append(lines, fmt.Sprintf("link add %s address %s type veth peer name %s address %s netns %s",
			seg.iface, macFor(seg.net, routerOctet), hostIface, seg.peer.MAC, seg.peer.Netns))
	}
	for _, seg := range []struct {
		iface string
		net   netip.Prefix
	}{
		{fwMgmtIface, MgmtNet}, {fwNodesIface, NodeNet}, {fwBMCIface, BMCNet}, {fwSwitchIface, SwitchNet},
	} {
		lines = append(lines,
			fmt.Sprintf("addr add %s/%d dev %s", t.fwAddr(seg.net), seg.net.Bits(), seg.iface),
			fmt.Sprintf("link set %s addrgenmode none up", seg.iface))
	}
	return lines
}

// hostConfigBatch runs in a host's namespace (mn, bmc, sw or a node): its
// address, and a route to the lab's /16 through fw. No default route: no
// packet can leave for the host or beyond.
func hostConfigBatch(h Host, seg netip.Prefix) []string {
	return []string{
		"link set lo up",
		fmt.Sprintf("link set %s addrgenmode none up", h.Iface),
		fmt.Sprintf("addr add %s/%d dev %s", h.Addr, seg.Bits(), h.Iface),
		fmt.Sprintf("route add %s via %s", LabNet, addrIn(seg, routerOctet)),
	}
}

// buildTopology creates the namespaces and links.
func (l *Lab) buildTopology(ctx context.Context) error {
	t := l.topo
	if err := ipBatch(ctx, "", t.hostBatch()); err != nil {
		return err
	}
	// IPv6 off before any link exists, so that no interface sends router
	// solicitations or MLD reports; forwarding on in fw.
	for _, h := range t.all() {
		kv := [][2]string{{"ipv6/conf/all/disable_ipv6", "1"}, {"ipv6/conf/default/disable_ipv6", "1"}}
		if h.Role == RoleFW {
			kv = append(kv, [2]string{"ipv4/ip_forward", "1"})
		}
		if err := setSysctls(h.Netns, kv); err != nil {
			return err
		}
	}
	if err := ipBatch(ctx, t.br.Netns, t.bridgeBatch()); err != nil {
		return err
	}
	if err := ipBatch(ctx, t.fw.Netns, t.fwBatch()); err != nil {
		return err
	}
	type job struct {
		h   Host
		seg netip.Prefix
	}
	jobs := []job{{t.mn, MgmtNet}, {t.bmc, BMCNet}, {t.sw, SwitchNet}}
	for _, n := range t.nodes {
		jobs = append(jobs, job{n, NodeNet})
	}
	// One small `ip` per host; a few at a time keep both cores busy.
	const workers = 4
	work := make(chan job)
	errc := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				errc <- ipBatch(ctx, j.h.Netns, hostConfigBatch(j.h, j.seg))
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}
