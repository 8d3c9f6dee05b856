package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	tftpRRQ   = 1
	tftpDATA  = 3
	tftpERROR = 5
	tftpOACK  = 6
)

// tftpReadRequest is an RRQ for file in octet mode, without options: the
// plainest request every TFTP server answers.
func tftpReadRequest(file string) []byte {
	b := binary.BigEndian.AppendUint16(nil, tftpRRQ)
	b = append(b, file...)
	b = append(b, 0)
	b = append(b, "octet"...)
	return append(b, 0)
}

// tftpAbort is the ERROR a client sends to end a transfer it does not want
// (error code 0, "not defined, see message"), so that the server stops
// retransmitting its first DATA block.
func tftpAbort() []byte {
	b := binary.BigEndian.AppendUint16(nil, tftpERROR)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = append(b, "portwatch probe: path checked, transfer not wanted"...)
	return append(b, 0)
}

// tftpReply is the server's first answer to a read request.
type tftpReply struct {
	Opcode uint16
	// Block is a DATA block number; ErrorCode and Message belong to ERROR.
	Block     uint16
	ErrorCode uint16
	Message   string
	DataBytes int
}

func (r tftpReply) String() string {
	switch r.Opcode {
	case tftpDATA:
		return fmt.Sprintf("TFTP DATA block %d (%d bytes)", r.Block, r.DataBytes)
	case tftpERROR:
		return fmt.Sprintf("TFTP ERROR %d %s", r.ErrorCode, quoteShort(r.Message, 60))
	case tftpOACK:
		return "TFTP OACK"
	}
	return fmt.Sprintf("TFTP opcode %d", r.Opcode)
}

// parseTFTPReply reads a server's answer to an RRQ: DATA, ERROR or OACK.
// Either one proves the path both ways: the server got the request and its
// answer, from a new port, came back.
func parseTFTPReply(b []byte) (tftpReply, error) {
	if len(b) < 4 {
		return tftpReply{}, errNotOurs
	}
	r := tftpReply{Opcode: binary.BigEndian.Uint16(b)}
	switch r.Opcode {
	case tftpDATA:
		r.Block = binary.BigEndian.Uint16(b[2:])
		r.DataBytes = len(b) - 4
		if r.Block != 1 {
			return tftpReply{}, errNotOurs
		}
	case tftpERROR:
		r.ErrorCode = binary.BigEndian.Uint16(b[2:])
		msg := b[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		r.Message = string(msg)
	case tftpOACK:
	default:
		return tftpReply{}, errNotOurs
	}
	return r, nil
}
