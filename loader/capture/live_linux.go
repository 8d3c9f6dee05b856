//go:build linux

package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"portwatch/catalog"
)

// liveSource captures on one interface through an AF_PACKET socket with a
// TPACKET_V3 ring: the kernel writes packets into memory shared with this
// process in blocks, and hands a block over when it is full or after
// BlockTimeout. Reading a packet is then a few loads from memory, without a
// system call per packet (recvmsg would cost one, about a microsecond).
type liveSource struct {
	iface   string
	ifindex int
	file    *os.File // the socket, in Go's poller: Next waits without a thread of its own, Close wakes it
	conn    syscall.RawConn
	snaplen uint32

	// Next holds mu while it reads the ring; Close takes it before
	// unmapping the ring.
	mu        sync.Mutex
	closed    atomic.Bool
	ring      []byte
	blockSize int
	blocks    int
	cur       int    // the block being read, or the next one to wait for
	inBlock   bool   // cur has been handed over and is being read
	left      uint32 // packets left in block cur
	next      int    // offset in block cur of the next packet
	pkt       Packet
	tagged    []byte // a frame with its VLAN tag put back
	count     uint64

	statsMu           sync.Mutex
	received, dropped uint64
}

// Offsets in the ring (linux/if_packet.h), in host byte order.
const (
	blockStatusOffset   = 8  // tpacket_block_desc.hdr.bh1.block_status
	blockNumPktsOffset  = 12 // .num_pkts
	blockFirstPktOffset = 16 // .offset_to_first_pkt
	tp3NextOffset       = 0
	tp3SecOffset        = 4
	tp3NsecOffset       = 8
	tp3SnaplenOffset    = 12
	tp3LenOffset        = 16
	tp3StatusOffset     = 20
	tp3MacOffset        = 24
	tp3VLANTCIOffset    = 32 // hv1.tp_vlan_tci
	tp3VLANTPIDOffset   = 36 // hv1.tp_vlan_tpid
	tp3HeaderLen        = unix.SizeofTpacket3Hdr
	ringFrameSize       = 2048 // only checked by the kernel in V3: packets are packed
	maxRingBlockSize    = 4 << 20
	minRingBlocks       = 4
	etherTypeAll        = unix.ETH_P_ALL
)

// OpenLive captures on the network interface iface, in both directions,
// keeping only what the catalog's socket filter accepts. It needs
// CAP_NET_RAW.
func OpenLive(iface string, opts LiveOptions) (LiveSource, error) {
	o := opts.withDefaults()
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capturing on %s: no such interface (see `ip link`): %w", iface, err)
	}
	// Protocol 0: the socket receives nothing until the filter and the
	// ring are in place and bind names the protocol.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("capturing on %s needs CAP_NET_RAW: run portwatch as root (or grant it: setcap cap_net_raw+ep portwatch): %w", iface, err)
		}
		return nil, fmt.Errorf("capturing on %s: opening an AF_PACKET socket: %w", iface, err)
	}
	l := &liveSource{iface: iface, ifindex: ifc.Index, snaplen: uint32(o.Snaplen)}
	if err := l.setup(fd, ifc, o); err != nil {
		if l.ring != nil {
			_ = unix.Munmap(l.ring)
		}
		unix.Close(fd)
		return nil, fmt.Errorf("capturing on %s: %w", iface, err)
	}
	l.file = os.NewFile(uintptr(fd), "packet socket on "+iface)
	if l.conn, err = l.file.SyscallConn(); err != nil {
		l.file.Close()
		_ = unix.Munmap(l.ring)
		return nil, fmt.Errorf("capturing on %s: %w", iface, err)
	}
	return l, nil
}

func (l *liveSource) setup(fd int, ifc *net.Interface, o LiveOptions) error {
	ifr, err := unix.NewIfreq(ifc.Name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return fmt.Errorf("reading the link type: %w", err)
	}
	if hw := ifr.Uint16(); hw != unix.ARPHRD_ETHER && hw != unix.ARPHRD_LOOPBACK {
		return fmt.Errorf("the interface is not Ethernet (ARPHRD %d): capture it with tcpdump -i any -w - | portwatch analyze -", hw)
	}
	if err := attachFilter(fd, o.Catalog, l.snaplen); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3 rings need Linux 3.2 or later: %w", err)
	}
	page := os.Getpagesize()
	blockSize := page
	for blockSize < maxRingBlockSize && blockSize*minRingBlocks*2 <= o.RingBytes {
		blockSize *= 2
	}
	l.blockSize = blockSize
	l.blocks = max(minRingBlocks, o.RingBytes/blockSize)
	req := unix.TpacketReq3{
		Block_size:     uint32(l.blockSize),
		Block_nr:       uint32(l.blocks),
		Frame_size:     ringFrameSize,
		Frame_nr:       uint32(l.blocks * (l.blockSize / ringFrameSize)),
		Retire_blk_tov: uint32(max(1, o.BlockTimeout.Milliseconds())),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("setting up a %d MiB packet ring (LiveOptions.RingBytes): %w", l.blockSize*l.blocks>>20, err)
	}
	l.ring, err = unix.Mmap(fd, 0, l.blockSize*l.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the packet ring: %w", err)
	}
	if o.Promiscuous {
		mreq := unix.PacketMreq{Ifindex: int32(ifc.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fmt.Errorf("promiscuous mode: %w", err)
		}
	}
	// Bound to all protocols of one interface, the socket sees what the
	// interface receives and what it sends (PACKET_OUTGOING).
	sa := unix.SockaddrLinklayer{Protocol: htons(etherTypeAll), Ifindex: ifc.Index}
	if err := unix.Bind(fd, &sa); err != nil {
		return fmt.Errorf("binding the packet socket: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// attachFilter sets the socket filter; setting it again replaces it.
func attachFilter(fd int, c *catalog.Catalog, snaplen uint32) error {
	raw, err := catalogFilter(c, snaplen)
	if err != nil {
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(raw)), Filter: sockFilters(raw)}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attaching the socket filter (%d instructions): %w", len(raw), err)
	}
	return nil
}

// sockFilters converts x/net/bpf's instructions to the kernel's layout.
func sockFilters(raw []bpf.RawInstruction) *unix.SockFilter {
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &out[0]
}

// blockStatus is the status word of ring block i, shared with the kernel.
func (l *liveSource) blockStatus(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&l.ring[i*l.blockSize+blockStatusOffset]))
}

func (l *liveSource) blockReady(i int) bool {
	return atomic.LoadUint32(l.blockStatus(i))&unix.TP_STATUS_USER != 0
}

func (l *liveSource) Next() (*Packet, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed.Load() {
			return nil, io.EOF
		}
		if l.left > 0 {
			p, err := l.packet()
			if err != nil || p != nil {
				return p, err
			}
			continue
		}
		if l.inBlock {
			// Every packet of the block has been handed out and the last
			// one is no longer used: give the block back.
			atomic.StoreUint32(l.blockStatus(l.cur), unix.TP_STATUS_KERNEL)
			l.cur = (l.cur + 1) % l.blocks
			l.inBlock = false
		}
		if l.blockReady(l.cur) {
			block := l.ring[l.cur*l.blockSize:]
			l.left = binary.NativeEndian.Uint32(block[blockNumPktsOffset:])
			l.next = int(binary.NativeEndian.Uint32(block[blockFirstPktOffset:]))
			l.inBlock = true
			continue
		}
		err := l.conn.Read(func(uintptr) bool { return l.closed.Load() || l.blockReady(l.cur) })
		if err != nil {
			if l.closed.Load() {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("capturing on %s: waiting for packets: %w", l.iface, err)
		}
	}
}

// packet decodes the next packet of the current block. It returns nil
// without error for a packet that must be skipped.
func (l *liveSource) packet() (*Packet, error) {
	block := l.ring[l.cur*l.blockSize : (l.cur+1)*l.blockSize]
	off := l.next
	if off < 0 || off+tp3HeaderLen > len(block) {
		l.left = 0
		return nil, fmt.Errorf("capturing on %s: packet ring block %d is inconsistent (packet header at %d)", l.iface, l.cur, off)
	}
	h := block[off:]
	next := binary.NativeEndian.Uint32(h[tp3NextOffset:])
	snap := int(binary.NativeEndian.Uint32(h[tp3SnaplenOffset:]))
	start := off + int(binary.NativeEndian.Uint16(h[tp3MacOffset:]))
	if start+snap > len(block) {
		l.left = 0
		return nil, fmt.Errorf("capturing on %s: packet ring block %d is inconsistent (packet data at %d+%d)", l.iface, l.cur, start, snap)
	}
	l.left--
	if next == 0 {
		l.left = 0
	}
	l.next = off + int(next)

	status := binary.NativeEndian.Uint32(h[tp3StatusOffset:])
	data := block[start : start+snap]
	wirelen := int(binary.NativeEndian.Uint32(h[tp3LenOffset:]))
	tci := binary.NativeEndian.Uint32(h[tp3VLANTCIOffset:])
	if (status&unix.TP_STATUS_VLAN_VALID != 0 || tci != 0) && len(data) >= ethernetMACsLen {
		// The kernel took the outer VLAN tag out of the frame into the
		// ring header; put it back so that the frame parses as it was on
		// the wire.
		tpid := etherTypeVLAN
		if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = binary.NativeEndian.Uint16(h[tp3VLANTPIDOffset:])
		}
		l.tagged = append(l.tagged[:0], data[:ethernetMACsLen]...)
		l.tagged = binary.BigEndian.AppendUint16(l.tagged, tpid)
		l.tagged = binary.BigEndian.AppendUint16(l.tagged, uint16(tci))
		l.tagged = append(l.tagged, data[ethernetMACsLen:]...)
		data = l.tagged
		wirelen += vlanTagLen
	}
	l.count++
	p := &l.pkt
	p.Timestamp = time.Unix(int64(binary.NativeEndian.Uint32(h[tp3SecOffset:])), int64(binary.NativeEndian.Uint32(h[tp3NsecOffset:]))).UTC()
	p.Data = data
	p.WireLen = wirelen
	p.Network, p.EtherType = false, 0
	p.Interface = l.ifindex
	p.Number = l.count
	return p, nil
}

func (l *liveSource) Stats() (received, dropped uint64, err error) {
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	if !l.closed.Load() {
		err = l.readStats()
	}
	return l.received, l.dropped, err
}

// readStats adds the kernel's counters, which reading resets, to the
// totals. Hold statsMu.
func (l *liveSource) readStats() error {
	var st *unix.TpacketStatsV3
	var serr error
	if err := l.conn.Control(func(fd uintptr) {
		st, serr = unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); err != nil {
		return fmt.Errorf("capturing on %s: reading the drop counters: %w", l.iface, err)
	}
	if serr != nil {
		return fmt.Errorf("capturing on %s: reading the drop counters: %w", l.iface, serr)
	}
	// For V3 rings the kernel's tp_packets already includes tp_drops.
	l.received += uint64(st.Packets)
	l.dropped += uint64(st.Drops)
	return nil
}

func (l *liveSource) SetCatalog(c *catalog.Catalog) error {
	var aerr error
	if err := l.conn.Control(func(fd uintptr) { aerr = attachFilter(int(fd), c, l.snaplen) }); err != nil {
		return fmt.Errorf("capturing on %s: replacing the socket filter: %w", l.iface, err)
	}
	if aerr != nil {
		return fmt.Errorf("capturing on %s: %w", l.iface, aerr)
	}
	return nil
}

// Close stops the capture; a Next waiting for packets returns io.EOF. The
// counters stay readable with Stats.
func (l *liveSource) Close() error {
	l.statsMu.Lock()
	if l.closed.Load() {
		l.statsMu.Unlock()
		return nil
	}
	statsErr := l.readStats()
	l.closed.Store(true)
	l.statsMu.Unlock()
	err := l.file.Close() // wakes a Next waiting in the poller
	l.mu.Lock()
	if l.ring != nil {
		if merr := unix.Munmap(l.ring); err == nil {
			err = merr
		}
		l.ring = nil
	}
	l.mu.Unlock()
	if err == nil && statsErr != nil {
		err = statsErr
	}
	return err
}
