package probe

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// setRecvErr asks the kernel to queue the ICMP errors that concern the
// socket, with their type, code and sender, on its error queue
// (IP_RECVERR, IPV6_RECVERR). Without it a socket learns only an errno,
// which cannot tell "administratively prohibited" from "host unreachable".
func setRecvErr(fd uintptr, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	}
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
}

// recvErrControl sets IP_RECVERR in a net.Dialer's or net.ListenConfig's
// Control hook, before the socket connects or sends.
func recvErrControl(network, _ string, c syscall.RawConn) error {
	v6 := network == "udp6" || network == "tcp6"
	var serr error
	if err := c.Control(func(fd uintptr) { serr = setRecvErr(fd, v6) }); err != nil {
		return err
	}
	return serr
}

// keepSocket sets IP_RECVERR on a socket that the net package is about to
// connect and keeps a duplicate of its descriptor: when a TCP connect
// fails, net closes the socket at once, and the duplicate is what still
// lets the probe read the ICMP error that failed it. The caller closes the
// duplicate with releaseSocket.
func keepSocket(c syscall.RawConn, v6 bool) (int, error) {
	dup, serr := -1, error(nil)
	err := c.Control(func(fd uintptr) {
		if serr = setRecvErr(fd, v6); serr != nil {
			return
		}
		dup, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err != nil {
		return -1, err
	}
	return dup, serr
}

func releaseSocket(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// readErrQueue drains the socket's error queue and returns the last ICMP
// error in it (nil if there is none). It never blocks.
func readErrQueue(fd int) *ICMPError {
	var last *ICMPError
	buf := make([]byte, 512)
	oob := make([]byte, 512)
	for range 16 {
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return last
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if e := parseExtendedErr(m); e != nil {
				last = e
			}
		}
	}
	return last
}

// parseExtendedErr reads a struct sock_extended_err and the offender's
// address that follows it. Only errors from ICMP count; local errors (a
// message too long, say) are left to the errno.
func parseExtendedErr(m unix.SocketControlMessage) *ICMPError {
	v4 := m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR
	v6 := m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR
	if (!v4 && !v6) || len(m.Data) < sizeofExtendedErr {
		return nil
	}
	// struct sock_extended_err { u32 ee_errno; u8 ee_origin, ee_type,
	// ee_code, ee_pad; u32 ee_info, ee_data; } then SO_EE_OFFENDER.
	origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
	if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
		return nil
	}
	e := &ICMPError{V6: origin == unix.SO_EE_ORIGIN_ICMP6, Type: typ, Code: code}
	sa := m.Data[sizeofExtendedErr:]
	if len(sa) >= 8 {
		switch binary.NativeEndian.Uint16(sa) {
		case unix.AF_INET:
			e.From = netip.AddrFrom4([4]byte(sa[4:8]))
		case unix.AF_INET6:
			if len(sa) >= 24 {
				e.From = netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
			}
		}
	}
	return e
}

// sizeofExtendedErr is sizeof(struct sock_extended_err).
const sizeofExtendedErr = 16
