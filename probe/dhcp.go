package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// DHCP/BOOTP (RFC 2131, RFC 2132, PXE 2.1, RFC 4578) constants.
const (
	bootRequest = 1
	bootReply   = 2

	dhcpServerPort = 67
	dhcpClientPort = 68
	pxeServerPort  = 4011

	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpAck      = 5
	dhcpNak      = 6

	optPad           = 0
	optVendorOptions = 43
	optMessageType   = 53
	optServerID      = 54
	optParamRequest  = 55
	optVendorClass   = 60
	optTFTPServer    = 66
	optBootfile      = 67
	optClientArch    = 93
	optClientNDI     = 94
	optEnd           = 255

	// bootpMinSize is BOOTP's minimum message (RFC 951, RFC 1542): some
	// relay agents drop shorter ones, so requests are padded to it.
	bootpMinSize = 300
	dhcpOptions  = 240 // offset of the options, after the magic cookie
)

var dhcpMagicCookie = []byte{99, 130, 83, 99}

// pxeVendorClass is what an x86 BIOS PXE ROM (UNDI 2.1) sends as option 60,
// so that a server configured for PXE answers the probe as it would answer
// a booting node, boot file included.
const pxeVendorClass = "PXEClient:Arch:00000:UNDI:002001"

// dhcpMessage is a client's DISCOVER (to port 67) or a PXE boot-server
// REQUEST (to port 4011).
type dhcpMessage struct {
	Type byte // dhcpDiscover or dhcpRequest
	XID  uint32
	MAC  net.HardwareAddr
	// CIAddr is the client's address: zero in a DISCOVER (the node has
	// none yet), the source address in a PXE boot-server request.
	CIAddr netip.Addr
	// Broadcast asks the server or relay to broadcast its answer, which
	// reaches a client that has no address yet.
	Broadcast bool
}

// Marshal lays the message out as BOOTP with DHCP options, padded to 300
// bytes (docs/probe.md shows it byte by byte).
func (m dhcpMessage) Marshal() []byte {
	b := make([]byte, dhcpOptions, bootpMinSize)
	b[0] = bootRequest
	b[1] = 1 // htype: Ethernet
	b[2] = byte(len(m.MAC))
	binary.BigEndian.PutUint32(b[4:], m.XID)
	if m.Broadcast {
		binary.BigEndian.PutUint16(b[10:], 0x8000)
	}
	if m.CIAddr.Is4() {
		a := m.CIAddr.As4()
		copy(b[12:16], a[:])
	}
	copy(b[28:44], m.MAC)
	copy(b[236:240], dhcpMagicCookie)
	b = append(b, optMessageType, 1, m.Type)
	// Subnet mask, router, DNS, host name, domain, vendor options, vendor
	// class, TFTP server, boot file: what PXE ROMs ask for.
	b = append(b, optParamRequest, 9, 1, 3, 6, 12, 15, 43, 60, 66, 67)
	b = append(b, optClientArch, 2, 0, 0) // x86 BIOS
	b = append(b, optClientNDI, 3, 1, 2, 1)
	b = append(b, optVendorClass, byte(len(pxeVendorClass)))
	b = append(b, pxeVendorClass...)
	if m.Type == dhcpRequest {
		// PXE_BOOT_ITEM (71): boot server type 0, layer 0: "the
		// bootstrap server", what a PXE client asks a boot server for.
		b = append(b, optVendorOptions, 7, 71, 4, 0, 0, 0, 0, 255)
	}
	b = append(b, optEnd)
	for len(b) < bootpMinSize {
		b = append(b, optPad)
	}
	return b
}

// dhcpReply is what the evidence says of a server's answer.
type dhcpReply struct {
	Type     byte
	YIAddr   netip.Addr // the address offered
	SIAddr   netip.Addr // next server (TFTP)
	GIAddr   netip.Addr // the relay that passed it on
	ServerID netip.Addr // option 54: the server that answered
	Bootfile string
}

func (r dhcpReply) String() string {
	var kind string
	switch r.Type {
	case dhcpOffer:
		kind = "DHCPOFFER"
	case dhcpAck:
		kind = "DHCPACK"
	case dhcpNak:
		kind = "DHCPNAK"
	default:
		kind = fmt.Sprintf("DHCP message type %d", r.Type)
	}
	s := kind
	if r.ServerID.IsValid() {
		s += " from server " + r.ServerID.String()
	}
	if r.YIAddr.IsValid() && !r.YIAddr.IsUnspecified() {
		s += ", address " + r.YIAddr.String()
	}
	if r.GIAddr.IsValid() && !r.GIAddr.IsUnspecified() {
		s += ", via relay " + r.GIAddr.String()
	}
	if r.Bootfile != "" {
		s += ", boot file " + quoteShort(r.Bootfile, 40)
	}
	return s
}

// parseDHCPReply reads a BOOTREPLY to the request with this xid and client
// hardware address.
func parseDHCPReply(b []byte, xid uint32, mac net.HardwareAddr) (dhcpReply, error) {
	if len(b) < dhcpOptions || b[0] != bootReply || binary.BigEndian.Uint32(b[4:]) != xid ||
		!bytes.Equal(b[28:28+len(mac)], mac) {
		return dhcpReply{}, errNotOurs
	}
	if !bytes.Equal(b[236:240], dhcpMagicCookie) {
		return dhcpReply{}, errors.New("BOOTP reply without the DHCP magic cookie")
	}
	r := dhcpReply{
		YIAddr: netip.AddrFrom4([4]byte(b[16:20])),
		SIAddr: netip.AddrFrom4([4]byte(b[20:24])),
		GIAddr: netip.AddrFrom4([4]byte(b[24:28])),
	}
	if f := b[108:236]; f[0] != 0 {
		r.Bootfile = string(f[:max(0, bytes.IndexByte(f, 0))])
	}
	opts := b[dhcpOptions:]
	for len(opts) > 0 {
		code := opts[0]
		if code == optPad {
			opts = opts[1:]
			continue
		}
		if code == optEnd || len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			break
		}
		val := opts[2 : 2+int(opts[1])]
		switch {
		case code == optMessageType && len(val) == 1:
			r.Type = val[0]
		case code == optServerID && len(val) == 4:
			r.ServerID = netip.AddrFrom4([4]byte(val))
		case code == optBootfile && len(val) > 0:
			r.Bootfile = string(bytes.TrimRight(val, "\x00"))
		}
		opts = opts[2+len(val):]
	}
	if r.Type == 0 {
		return dhcpReply{}, errors.New("BOOTP reply without a DHCP message type")
	}
	return r, nil
}

// ipv4UDP wraps a UDP payload in IPv4 and UDP headers, checksums included,
// for the raw socket that sends a DISCOVER from 0.0.0.0.
func ipv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	const ipHeader, udpHeader = 20, 8
	total := ipHeader + udpHeader + len(payload)
	b := make([]byte, total)
	b[0] = 0x45 // version 4, IHL 5
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	b[8] = 64 // TTL
	b[9] = 17 // UDP
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ipHeader], 0))

	u := b[ipHeader:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(udpHeader+len(payload)))
	copy(u[udpHeader:], payload)
	// The pseudo-header: addresses, protocol and UDP length.
	var pseudo uint32
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	pseudo += 17 + uint32(len(u))
	sum := checksum(u, pseudo)
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(u[6:], sum)
	return b
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// udpOfIPv4 returns the source address, ports and payload of an IPv4 UDP
// packet, or ok false for anything else (fragments included).
func udpOfIPv4(p []byte) (src netip.Addr, sport, dport uint16, payload []byte, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 17 {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total < ihl+8 || total > len(p) || binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
		return
	}
	u := p[ihl:total]
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	if ulen < 8 || ulen > len(u) {
		return
	}
	return netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:]), u[8:ulen], true
}
