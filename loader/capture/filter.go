package capture

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"

	"portwatch/catalog"
)

// The live socket filter keeps only the packets the twin counts, so that an
// established bulk transfer on a port the catalog does not name (a backup,
// an image copy) costs no copy to userspace. It accepts:
//   - TCP with a catalog TCP port as source or destination;
//   - any TCP segment with SYN or RST set: the answer of an unexpected
//     open (or closed) port can be on any port;
//   - all UDP: a UDP answer from a non-catalog port (TFTP's ephemeral
//     reply, an unexpected service) can only be told statefully;
//   - ICMP and ICMPv6 destination unreachable, which report blocks;
//   - IPv4 later fragments (offset != 0), so that they are counted;
//   - IPv6 packets whose first next-header is an extension header, and
//     IPv4 packets with a bogus header length: classic BPF cannot walk
//     extension chains, and the twin counts what it cannot parse.
//
// It drops the rest: TCP data and pure ACKs on other ports, ARP, other IP
// protocols, other ICMP.
//
// VLAN tags: the kernel moves the outer tag of a received frame (and of a
// sent one on a device with VLAN offload) into the packet's metadata before
// packet sockets see it; the filter then sees an untagged frame and the
// source puts the tag back from the ring header. A tag still inside the
// frame (the inner tag of QinQ, a tag sent without offload) is handled by
// the filter itself: it looks through up to two 802.1Q/802.1ad tags.
// Frames with more tags are accepted, for the twin to count.

// Offsets in an Ethernet frame and the headers after it.
const (
	etherTypeOffset = 12
	ethernetLen     = 14
	vlanTagLen      = 4
	ipv4FragOffset  = 6  // flags and fragment offset
	ipv4ProtoOffset = 9  // protocol
	ipv6NextOffset  = 6  // next header
	ipv6HeaderLen   = 40 // fixed header
	tcpFlagsOffset  = 13
	ipv4MinHeader   = 20
	fragOffsetMask  = 0x1fff
	tcpSYNorRST     = 0x02 | 0x04
	icmpUnreachable = 3
	icmp6Unreach    = 1
	protoICMP       = 1
	protoTCP        = 6
	protoUDP        = 17
	protoICMPv6     = 58
)

// ipv6ExtensionHeaders are the next-header values that start an extension
// header chain: hop-by-hop, routing, fragment, ESP, AH, destination options,
// mobility, HIP, shim6.
var ipv6ExtensionHeaders = []uint32{0, 43, 44, 50, 51, 60, 135, 139, 140}

// portRange is an inclusive range of ports.
type portRange struct{ first, last uint16 }

// tcpPortRanges collects the catalog's TCP ports as sorted, merged ranges:
// a site row may bind a range of thousands of ports, one binding each.
func tcpPortRanges(bindings []catalog.PortBinding) []portRange {
	var ports []uint16
	for _, b := range bindings {
		if b.Proto == catalog.TCP {
			ports = append(ports, b.Port)
		}
	}
	slices.Sort(ports)
	var out []portRange
	for _, p := range ports {
		if n := len(out); n > 0 && uint32(out[n-1].last)+1 >= uint32(p) {
			out[n-1].last = max(out[n-1].last, p)
			continue
		}
		out = append(out, portRange{p, p})
	}
	return out
}

// rangesPerChunk bounds a chunk of port tests to at most 2 instructions a
// range, well within a conditional jump's reach.
const rangesPerChunk = 100

// maxFilterLen is the kernel's BPF_MAXINSNS for classic socket filters.
const maxFilterLen = 4096

// catalogFilter returns the socket filter for the catalog, accepting packets
// truncated to snaplen bytes. A nil catalog accepts everything (truncated).
func catalogFilter(c *catalog.Catalog, snaplen uint32) ([]bpf.RawInstruction, error) {
	if c == nil {
		return bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: snaplen}})
	}
	return buildFilter(tcpPortRanges(c.PortBindings()), snaplen)
}

// buildFilter returns the socket filter for the given catalog TCP ports.
func buildFilter(ranges []portRange, snaplen uint32) ([]bpf.RawInstruction, error) {
	a := &assembler{labels: map[string]int{}}
	accept := bpf.RetConstant{Val: snaplen}
	drop := bpf.RetConstant{Val: 0}

	// Link layer: find the network header at 14, 18 or 22 bytes.
	a.emit(bpf.LoadAbsolute{Off: etherTypeOffset, Size: 2})
	for tags := 0; tags <= 2; tags++ {
		l3 := uint32(ethernetLen + tags*vlanTagLen)
		a.label(fmt.Sprintf("tags%d", tags))
		if tags > 0 {
			a.emit(bpf.LoadAbsolute{Off: l3 - 2, Size: 2})
		}
		next := fmt.Sprintf("tags%d", tags+1)
		if tags == 2 {
			next = "accept"
		}
		a.jumpIf(bpf.JumpEqual, uint32(etherTypeVLAN), next, "")
		a.jumpIf(bpf.JumpEqual, uint32(etherTypeQinQ), next, "")
		a.jumpIf(bpf.JumpEqual, uint32(etherTypeQinQv1), next, "")
		a.jumpIf(bpf.JumpEqual, uint32(EtherTypeIPv4), fmt.Sprintf("ipv4at%d", l3), "")
		a.jumpIf(bpf.JumpEqual, uint32(EtherTypeIPv6), fmt.Sprintf("ipv6at%d", l3), "")
		a.emit(drop)
	}
	// Network layer: leave the protocol in A and the transport header's
	// offset in X.
	for tags := 0; tags <= 2; tags++ {
		l3 := uint32(ethernetLen + tags*vlanTagLen)
		a.label(fmt.Sprintf("ipv4at%d", l3))
		a.emit(bpf.LoadAbsolute{Off: l3 + ipv4FragOffset, Size: 2})
		a.jumpIf(bpf.JumpBitsSet, fragOffsetMask, "accept", "")
		a.emit(bpf.LoadMemShift{Off: l3})
		a.emit(bpf.TXA{})
		a.jumpIf(bpf.JumpLessThan, ipv4MinHeader, "accept", "")
		a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: l3})
		a.emit(bpf.TAX{})
		a.emit(bpf.LoadAbsolute{Off: l3 + ipv4ProtoOffset, Size: 1})
		a.jump("transport")

		a.label(fmt.Sprintf("ipv6at%d", l3))
		a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: l3 + ipv6HeaderLen})
		a.emit(bpf.LoadAbsolute{Off: l3 + ipv6NextOffset, Size: 1})
		for _, h := range ipv6ExtensionHeaders {
			a.jumpIf(bpf.JumpEqual, h, "accept", "")
		}
		a.jumpIf(bpf.JumpEqual, protoICMPv6, "icmp6", "")
		a.jump("transport")
	}
	a.label("transport")
	a.jumpIf(bpf.JumpEqual, protoTCP, "tcp", "")
	a.jumpIf(bpf.JumpEqual, protoUDP, "accept", "")
	a.jumpIf(bpf.JumpEqual, protoICMP, "icmp", "")
	a.emit(drop)
	a.label("icmp")
	a.emit(bpf.LoadIndirect{Off: 0, Size: 1})
	a.jumpIf(bpf.JumpEqual, icmpUnreachable, "accept", "")
	a.emit(drop)
	a.label("icmp6")
	a.emit(bpf.LoadIndirect{Off: 0, Size: 1})
	a.jumpIf(bpf.JumpEqual, icmp6Unreach, "accept", "")
	a.emit(drop)
	a.label("accept")
	a.emit(accept)

	// TCP: SYN or RST, or a catalog port on either side. The ranges are
	// tested in chunks, each followed by its own accept, so that no
	// conditional jump is longer than the 255 instructions it can skip,
	// however many ports the catalog has.
	a.label("tcp")
	a.emit(bpf.LoadIndirect{Off: tcpFlagsOffset, Size: 1})
	a.emit(bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: tcpSYNorRST, SkipTrue: 1})
	a.emit(accept)
	for _, portOffset := range []uint32{0, 2} { // source, destination
		a.emit(bpf.LoadIndirect{Off: portOffset, Size: 2})
		for start := 0; start < len(ranges); start += rangesPerChunk {
			chunk := ranges[start:min(start+rangesPerChunk, len(ranges))]
			id := fmt.Sprintf("ports%d.%d", portOffset, start)
			for i, r := range chunk {
				if r.first == r.last {
					a.jumpIf(bpf.JumpEqual, uint32(r.first), id+".accept", "")
					continue
				}
				next := fmt.Sprintf("%s.%d", id, i)
				a.jumpIf(bpf.JumpLessThan, uint32(r.first), next, "")
				a.jumpIf(bpf.JumpLessOrEqual, uint32(r.last), id+".accept", "")
				a.label(next)
			}
			a.jump(id + ".end")
			a.label(id + ".accept")
			a.emit(accept)
			a.label(id + ".end")
		}
	}
	a.emit(drop)
	return a.assemble()
}

// assembler resolves forward jumps to labels; x/net/bpf assembles single
// instructions but leaves jump distances to its caller.
type assembler struct {
	insns  []bpf.Instruction
	labels map[string]int
	jumps  []labelJump
}

type labelJump struct {
	at              int
	ifTrue, ifFalse string // "" is the next instruction
	always          bool   // an unconditional jump to ifTrue
}

func (a *assembler) emit(i bpf.Instruction) { a.insns = append(a.insns, i) }

func (a *assembler) label(name string) { a.labels[name] = len(a.insns) }

func (a *assembler) jumpIf(cond bpf.JumpTest, val uint32, ifTrue, ifFalse string) {
	a.jumps = append(a.jumps, labelJump{at: len(a.insns), ifTrue: ifTrue, ifFalse: ifFalse})
	a.emit(bpf.JumpIf{Cond: cond, Val: val})
}

func (a *assembler) jump(to string) {
	a.jumps = append(a.jumps, labelJump{at: len(a.insns), ifTrue: to, always: true})
	a.emit(bpf.Jump{})
}

// skip returns the distance from instruction at to label.
func (a *assembler) skip(at int, label string) (int, error) {
	if label == "" {
		return 0, nil
	}
	target, ok := a.labels[label]
	if !ok {
		return 0, fmt.Errorf("socket filter: no label %q", label)
	}
	if target <= at {
		return 0, fmt.Errorf("socket filter: jump from %d back to %q", at, label)
	}
	return target - at - 1, nil
}

func (a *assembler) assemble() ([]bpf.RawInstruction, error) {
	for _, j := range a.jumps {
		t, err := a.skip(j.at, j.ifTrue)
		if err != nil {
			return nil, err
		}
		if j.always {
			a.insns[j.at] = bpf.Jump{Skip: uint32(t)}
			continue
		}
		f, err := a.skip(j.at, j.ifFalse)
		if err != nil {
			return nil, err
		}
		if t > 255 || f > 255 {
			return nil, fmt.Errorf("socket filter: conditional jump at %d is too long (%d, %d)", j.at, t, f)
		}
		ji := a.insns[j.at].(bpf.JumpIf)
		ji.SkipTrue, ji.SkipFalse = uint8(t), uint8(f)
		a.insns[j.at] = ji
	}
	if len(a.insns) > maxFilterLen {
		return nil, fmt.Errorf("socket filter: %d instructions, more than the kernel's %d: the catalog has too many separate TCP ports", len(a.insns), maxFilterLen)
	}
	return bpf.Assemble(a.insns)
}
