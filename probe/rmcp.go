package probe

import (
	"encoding/binary"
	"fmt"
)

// RMCP and ASF (DMTF DSP0136) constants of the presence ping.
const (
	rmcpVersion1     = 0x06
	rmcpSeqNoACK     = 0xff // the sender wants no RMCP ACK
	rmcpClassASF     = 0x06
	asfIANA          = 4542 // the ASF enterprise number
	asfPresencePing  = 0x80
	asfPresencePong  = 0x40
	asfPongDataBytes = 16
)

// asfPing is an RMCP ASF Presence Ping: 12 bytes. BMCs answer it before any
// IPMI session exists, so it proves the port without credentials.
func asfPing(tag byte) []byte {
	b := []byte{rmcpVersion1, 0x00, rmcpSeqNoACK, rmcpClassASF}
	b = binary.BigEndian.AppendUint32(b, asfIANA)
	return append(b, asfPresencePing, tag, 0x00, 0x00)
}

// asfPong is what a Presence Pong says.
type asfPong struct {
	// Entities: bit 7 = IPMI supported; bits 3-0 = ASF version (1 = 1.0).
	Entities byte
	// Interactions: bit 5 = RMCP security extensions, bit 0 = DASH.
	Interactions byte
}

func (p asfPong) String() string {
	s := "ASF presence pong"
	if p.Entities&0x80 != 0 {
		s += ", IPMI supported"
	}
	if v := p.Entities & 0x0f; v != 0 {
		s += fmt.Sprintf(", ASF version %d", v)
	}
	return s
}

// parseASFPong reads the pong to the ping with this tag.
func parseASFPong(b []byte, tag byte) (asfPong, error) {
	if len(b) < 12 || b[0] != rmcpVersion1 || b[3]&0x7f != rmcpClassASF ||
		binary.BigEndian.Uint32(b[4:]) != asfIANA || b[8] != asfPresencePong || b[9] != tag {
		return asfPong{}, errNotOurs
	}
	if int(b[11]) < asfPongDataBytes || len(b) < 12+asfPongDataBytes {
		// The header names the pong; its data is cut short.
		return asfPong{}, nil
	}
	return asfPong{Entities: b[20], Interactions: b[21]}, nil
}
