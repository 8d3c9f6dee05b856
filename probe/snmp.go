package probe

import (
	"errors"
	"fmt"
	"strings"
)

// BER tags of SNMP (RFC 1157, RFC 3416).
const (
	berInteger     = 0x02
	berOctetString = 0x04
	berNull        = 0x05
	berOID         = 0x06
	berSequence    = 0x30
	pduGetRequest  = 0xa0
	pduResponse    = 0xa2

	snmpVersion2c = 1
)

// oidSysDescr is SNMPv2-MIB::sysDescr.0 (1.3.6.1.2.1.1.1.0), which every
// agent answers.
var oidSysDescr = []byte{0x2b, 6, 1, 2, 1, 1, 1, 0}

// snmpGet is an SNMPv2c GetRequest for sysDescr.0.
func snmpGet(community string, requestID int32) []byte {
	varbind := berTLV(berSequence, append(berTLV(berOID, oidSysDescr), berTLV(berNull, nil)...))
	pdu := berInt(int64(requestID))
	pdu = append(pdu, berInt(0)...) // error-status
	pdu = append(pdu, berInt(0)...) // error-index
	pdu = append(pdu, berTLV(berSequence, varbind)...)
	msg := berInt(snmpVersion2c)
	msg = append(msg, berTLV(berOctetString, []byte(community))...)
	msg = append(msg, berTLV(pduGetRequest, pdu)...)
	return berTLV(berSequence, msg)
}

// berTLV encodes one tag, a definite length (short or long form) and value.
func berTLV(tag byte, value []byte) []byte {
	n := len(value)
	b := []byte{tag}
	switch {
	case n < 0x80:
		b = append(b, byte(n))
	case n <= 0xff:
		b = append(b, 0x81, byte(n))
	default:
		b = append(b, 0x82, byte(n>>8), byte(n))
	}
	return append(b, value...)
}

// berInt encodes an INTEGER in the fewest two's complement octets.
func berInt(v int64) []byte {
	var octets []byte
	for {
		octets = append([]byte{byte(v)}, octets...)
		// Done when the rest is pure sign extension of the octet's top bit.
		if (v >= -128 && v < 128) || len(octets) == 8 {
			break
		}
		v >>= 8
	}
	return berTLV(berInteger, octets)
}

// snmpAnswer is what the evidence says of an SNMP response.
type snmpAnswer struct {
	ErrorStatus int
	// Value is sysDescr, or what the agent said instead of it.
	Value string
}

func (a snmpAnswer) String() string {
	if a.ErrorStatus != 0 {
		return fmt.Sprintf("SNMP response, error-status %d", a.ErrorStatus)
	}
	return "SNMP response, sysDescr " + quoteShort(a.Value, 60)
}

// parseSNMPResponse reads the response to the request with this id.
func parseSNMPResponse(b []byte, requestID int32) (snmpAnswer, error) {
	msg, rest, err := berRead(b, berSequence)
	if err != nil || len(rest) != 0 {
		return snmpAnswer{}, errNotOurs
	}
	if _, msg, err = berRead(msg, berInteger); err != nil { // version
		return snmpAnswer{}, errNotOurs
	}
	if _, msg, err = berRead(msg, berOctetString); err != nil { // community
		return snmpAnswer{}, errNotOurs
	}
	pdu, _, err := berRead(msg, pduResponse)
	if err != nil {
		return snmpAnswer{}, errNotOurs
	}
	id, pdu, err := berReadInt(pdu)
	if err != nil || id != int64(requestID) {
		return snmpAnswer{}, errNotOurs
	}
	status, pdu, err := berReadInt(pdu)
	if err != nil {
		return snmpAnswer{}, errors.New("SNMP response without error-status")
	}
	a := snmpAnswer{ErrorStatus: int(status)}
	if _, pdu, err = berReadInt(pdu); err != nil { // error-index
		return a, nil
	}
	list, _, err := berRead(pdu, berSequence)
	if err != nil {
		return a, nil
	}
	vb, _, err := berRead(list, berSequence)
	if err != nil {
		return a, nil
	}
	if _, vb, err = berRead(vb, berOID); err != nil || len(vb) < 2 {
		return a, nil
	}
	switch vb[0] {
	case berOctetString:
		if v, _, err := berRead(vb, berOctetString); err == nil {
			a.Value = string(v)
		}
	case 0x80:
		a.Value = "(noSuchObject)"
	case 0x81:
		a.Value = "(noSuchInstance)"
	default:
		a.Value = fmt.Sprintf("(a value of type 0x%02x)", vb[0])
	}
	return a, nil
}

// berRead reads one TLV with the given tag and returns its value and what
// follows it.
func berRead(b []byte, tag byte) (value, rest []byte, err error) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, fmt.Errorf("BER: want tag 0x%02x", tag)
	}
	n, off := int(b[1]), 2
	if n&0x80 != 0 {
		octets := n & 0x7f
		if octets == 0 || octets > 2 || len(b) < 2+octets {
			return nil, nil, errors.New("BER: unsupported length")
		}
		n = 0
		for _, c := range b[2 : 2+octets] {
			n = n<<8 | int(c)
		}
		off += octets
	}
	if len(b)-off < n {
		return nil, nil, errors.New("BER: value past the end")
	}
	return b[off : off+n], b[off+n:], nil
}

func berReadInt(b []byte) (int64, []byte, error) {
	v, rest, err := berRead(b, berInteger)
	if err != nil || len(v) == 0 || len(v) > 8 {
		return 0, nil, errors.New("BER: bad INTEGER")
	}
	n := int64(int8(v[0])) // sign-extend the first octet
	for _, c := range v[1:] {
		n = n<<8 | int64(c)
	}
	return n, rest, nil
}

// quoteShort quotes s for a one-line evidence cell, cut to max runes.
func quoteShort(s string, max int) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return fmt.Sprintf("%q", s)
}
