package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DNS types and the response codes the evidence names (RFC 1035, 6895).
const (
	dnsTypeA   = 1
	dnsTypePTR = 12
	dnsClassIN = 1
)

var dnsRCodes = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}

// dnsQueryType is PTR for a reverse name and A for any other.
func dnsQueryType(name string) uint16 {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if strings.HasSuffix(n, ".in-addr.arpa") || strings.HasSuffix(n, ".ip6.arpa") {
		return dnsTypePTR
	}
	return dnsTypeA
}

// dnsQuery is a standard query for name (dotted, with or without the final
// dot) with recursion desired, as a stub resolver on a node sends it.
func dnsQuery(id uint16, name string, qtype uint16) ([]byte, error) {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], 0x0100) // RD
	binary.BigEndian.PutUint16(b[4:], 1)      // QDCOUNT
	name = strings.TrimSuffix(name, ".")
	if name != "" {
		for label := range strings.SplitSeq(name, ".") {
			if label == "" || len(label) > 63 {
				return nil, fmt.Errorf("DNS name %q: empty label or one longer than 63 bytes", name)
			}
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	b = append(b, 0)
	if len(b)-12 > 255 {
		return nil, fmt.Errorf("DNS name %q is longer than 255 bytes", name)
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, dnsClassIN)
	return b, nil
}

// dnsAnswer is what the evidence says of a DNS response.
type dnsAnswer struct {
	RCode         int
	Authoritative bool
	Answers       int
	// PTR is the first PTR record's target, when the answer has one.
	PTR string
}

func (a dnsAnswer) String() string {
	rcode := "rcode " + strconv.Itoa(a.RCode)
	if a.RCode < len(dnsRCodes) {
		rcode = dnsRCodes[a.RCode]
	}
	s := fmt.Sprintf("DNS response %s, %d answers", rcode, a.Answers)
	if a.Authoritative {
		s += ", authoritative"
	}
	if a.PTR != "" {
		s += ", PTR " + a.PTR
	}
	return s
}

// parseDNSResponse reads the response to the query with this id. Any
// response proves the server answered, whatever its code.
func parseDNSResponse(b []byte, id uint16) (dnsAnswer, error) {
	if len(b) < 12 || binary.BigEndian.Uint16(b) != id || b[2]&0x80 == 0 {
		return dnsAnswer{}, errNotOurs
	}
	a := dnsAnswer{
		RCode:         int(b[3] & 0x0f),
		Authoritative: b[2]&0x04 != 0,
		Answers:       int(binary.BigEndian.Uint16(b[6:])),
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	off := 12
	for range qd {
		_, n, err := dnsName(b, off)
		if err != nil {
			return a, nil // the header alone proves the answer
		}
		off = n + 4
	}
	for range a.Answers {
		_, n, err := dnsName(b, off)
		if err != nil || n+10 > len(b) {
			break
		}
		rtype := binary.BigEndian.Uint16(b[n:])
		rdlen := int(binary.BigEndian.Uint16(b[n+8:]))
		rdata := n + 10
		if rdata+rdlen > len(b) {
			break
		}
		if rtype == dnsTypePTR && a.PTR == "" {
			if target, _, err := dnsName(b, rdata); err == nil {
				a.PTR = target
			}
		}
		off = rdata + rdlen
	}
	return a, nil
}

// dnsName reads a possibly compressed name at off; it returns the name and
// the offset just after it in the message (not after a pointer's target).
func dnsName(b []byte, off int) (string, int, error) {
	var labels []string
	end := -1
	// A name has at most 127 labels; more jumps than that is a loop.
	for hops := 0; hops < 128; hops++ {
		if off >= len(b) {
			return "", 0, errors.New("DNS name past the end")
		}
		l := int(b[off])
		switch {
		case l == 0:
			if end < 0 {
				end = off + 1
			}
			return strings.Join(labels, ".") + ".", end, nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(b) {
				return "", 0, errors.New("DNS pointer past the end")
			}
			if end < 0 {
				end = off + 2
			}
			off = int(binary.BigEndian.Uint16(b[off:]) & 0x3fff)
		case l&0xc0 != 0:
			return "", 0, errors.New("DNS label type not supported")
		default:
			if off+1+l > len(b) {
				return "", 0, errors.New("DNS label past the end")
			}
			labels = append(labels, string(b[off+1:off+1+l]))
			off += 1 + l
		}
	}
	return "", 0, errors.New("DNS name compression loop")
}

// reverseName is the PTR name of an address: 11.1.77.10.in-addr.arpa for
// 10.77.1.11, nibbles under ip6.arpa for IPv6.
func reverseName(a netip.Addr) string {
	a = a.Unmap()
	var b strings.Builder
	if a.Is4() {
		v := a.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(v[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	v := a.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[v[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[v[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}
