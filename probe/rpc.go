package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"portwatch/catalog/rpcbind"
)

// ONC RPC (RFC 5531) programs the probes call.
const (
	programPortmapper = rpcbind.ProgramPortmapper // 100000, rpcbind
	programNFS        = 100003
	programMount      = 100005

	rpcMsgCall  = 0
	rpcMsgReply = 1

	// procNull is procedure 0 of every RPC program: no arguments, no
	// results, "are you there". Servers answer it without side effects.
	procNull = 0
	// procDump is PMAPPROC_DUMP of portmapper version 2: the whole table
	// of registered programs and their ports.
	procDump = 4
)

// rpcCall is an RPC call message with AUTH_NONE credentials and verifier
// and no arguments: 40 bytes.
func rpcCall(xid, program, version, procedure uint32) []byte {
	b := make([]byte, 0, 40)
	for _, v := range []uint32{
		xid, rpcMsgCall,
		2, // RPC protocol version
		program, version, procedure,
		0, 0, // credentials: AUTH_NONE, empty body
		0, 0, // verifier: AUTH_NONE, empty body
	} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// rpcReply is what a server said to a call.
type rpcReply struct {
	// Accepted is MSG_ACCEPTED; otherwise the call was MSG_DENIED.
	Accepted bool
	// AcceptStat is SUCCESS (0), PROG_UNAVAIL (1), PROG_MISMATCH (2),
	// PROC_UNAVAIL (3), GARBAGE_ARGS (4) or SYSTEM_ERR (5).
	AcceptStat uint32
	// Low and High are the versions offered, for PROG_MISMATCH.
	Low, High uint32
	// Results is what follows the accept status of a successful reply.
	Results []byte
}

var errNotOurs = errors.New("not an answer to this request")

// parseRPCReply reads a reply to the call with this xid. A reply with
// another xid is errNotOurs; a damaged one is another error.
func parseRPCReply(b []byte, xid uint32) (rpcReply, error) {
	r := rpcbind.NewXDR(b)
	if r.U32() != xid || r.Bad() {
		return rpcReply{}, errNotOurs
	}
	if r.U32() != rpcMsgReply {
		return rpcReply{}, errNotOurs
	}
	var rep rpcReply
	switch stat := r.U32(); stat {
	case 0: // MSG_ACCEPTED
		rep.Accepted = true
		r.U32()    // verifier flavor
		r.Opaque() // verifier body
		rep.AcceptStat = r.U32()
		if rep.AcceptStat == 2 {
			rep.Low, rep.High = r.U32(), r.U32()
		}
		rep.Results = r.Rest()
	case 1: // MSG_DENIED: RPC_MISMATCH or AUTH_ERROR; the call arrived.
	default:
		return rpcReply{}, fmt.Errorf("RPC reply with reply status %d", stat)
	}
	if r.Bad() {
		return rpcReply{}, errors.New("truncated RPC reply")
	}
	return rep, nil
}

// describe says what the reply proves, for the evidence column.
func (r rpcReply) describe(what string) string {
	if !r.Accepted {
		return what + ": call denied (RPC version or authentication), but the server answered"
	}
	switch r.AcceptStat {
	case 0:
		return what + ": accepted"
	case 1:
		return what + ": program not available on this port, but the port answered"
	case 2:
		return fmt.Sprintf("%s: version not offered (versions %d-%d), but the server answered", what, r.Low, r.High)
	case 3:
		return what + ": procedure unavailable, but the server answered"
	}
	return fmt.Sprintf("%s: accept status %d, but the server answered", what, r.AcceptStat)
}

// dumpMappings reads the mappings of a PMAPPROC_DUMP reply with the same
// parser portwatch's observer uses to learn mountd's port.
func dumpMappings(call, reply []byte, server netip.Addr) []rpcbind.Mapping {
	// The snooper pairs a call and its reply by xid and client address and
	// port; any consistent client will do.
	client := netip.AddrFrom4([4]byte{192, 0, 2, 1})
	s := rpcbind.NewSnooper()
	now := time.Now()
	s.Datagram(client, server, 1000, 111, call, now)
	return s.Datagram(server, client, 111, 1000, reply, now)
}
