package rpcbind

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"portwatch/catalog"
)

// enc builds XDR: numbers as uint32, strings as counted padded opaques.
func enc(items ...any) []byte {
	var b []byte
	for _, it := range items {
		switch v := it.(type) {
		case int:
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
	}
	return b
}

var (
	client = netip.MustParseAddr("10.0.1.11")
	server = netip.MustParseAddr("10.0.0.1")
	now    = time.Unix(1700000000, 0)
)

// rpcCall is an rpcbind call with AUTH_NONE credentials and verifier.
func rpcCall(xid, vers, proc int, args ...any) []byte {
	return enc(append([]any{xid, msgCall, 2, ProgramPortmapper, vers, proc, 0, "", 0, ""}, args...)...)
}

// rpcReply is an accepted, successful reply.
func rpcReply(xid int, results ...any) []byte {
	return enc(append([]any{xid, msgReply, 0, 0, "", 0}, results...)...)
}

func TestSnooper(t *testing.T) {
	tests := []struct {
		name  string
		call  []byte
		reply []byte
		want  []Mapping
	}{
		{"getport v2", rpcCall(1, 2, procGetPort, 100005, 3, 17, 0), rpcReply(1, 20048),
			[]Mapping{{server, 100005, 3, catalog.UDP, 20048}}},
		{"getport v2 not registered", rpcCall(2, 2, procGetPort, 100005, 3, 6, 0), rpcReply(2, 0), nil},
		{"getaddr v3", rpcCall(3, 3, procGetPort, 100005, 3, "tcp", "", ""), rpcReply(3, "10.0.0.1.78.80"),
			[]Mapping{{server, 100005, 3, catalog.TCP, 20048}}},
		{"getversaddr v4 ipv6", rpcCall(4, 4, procGetVersAddr, 100005, 3, "udp6", "", ""), rpcReply(4, "fd00::1.78.81"),
			[]Mapping{{server, 100005, 3, catalog.UDP, 20049}}},
		{"getaddr not registered", rpcCall(5, 4, procGetPort, 100005, 3, "udp", "", ""), rpcReply(5, ""), nil},
		{"dump v2", rpcCall(6, 2, procDump), rpcReply(6, 1, 100000, 2, 17, 111, 1, 100005, 3, 17, 20048, 1, 100005, 3, 6, 20050, 0),
			[]Mapping{{server, 100000, 2, catalog.UDP, 111}, {server, 100005, 3, catalog.UDP, 20048}, {server, 100005, 3, catalog.TCP, 20050}}},
		{"dump v3", rpcCall(7, 3, procDump), rpcReply(7, 1, 100005, 1, "udp", "0.0.0.0.78.80", "superuser", 1, 100005, 1, "tcp6", "::.78.82", "superuser", 0),
			[]Mapping{{server, 100005, 1, catalog.UDP, 20048}, {server, 100005, 1, catalog.TCP, 20050}}},
		{"dump v2 cut short", rpcCall(8, 2, procDump), rpcReply(8, 1, 100005, 3, 17, 20048, 1, 100005), []Mapping{{server, 100005, 3, catalog.UDP, 20048}}},
		{"rejected reply", rpcCall(9, 2, procGetPort, 100005, 3, 17, 0), enc(9, msgReply, 1, 0), nil},
		{"not the portmapper", enc(10, msgCall, 2, 100003, 3, 0, 0, "", 0, ""), rpcReply(10, 20048), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnooper()
			if got := s.Datagram(client, server, 700, 111, tt.call, now); got != nil {
				t.Fatalf("a call revealed %v", got)
			}
			got := s.Datagram(server, client, 111, 700, tt.reply, now)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			// A reply is used once.
			if again := s.Datagram(server, client, 111, 700, tt.reply, now); again != nil {
				t.Errorf("the same reply twice revealed %v", again)
			}
		})
	}
}

func TestSnooperIgnoresStrangers(t *testing.T) {
	s := NewSnooper()
	s.Datagram(client, server, 700, 111, rpcCall(1, 2, procGetPort, 100005, 3, 17, 0), now)
	// The reply to another client port, and garbage, reveal nothing.
	if got := s.Datagram(server, client, 111, 701, rpcReply(1, 20048), now); got != nil {
		t.Errorf("reply to another port revealed %v", got)
	}
	for _, junk := range [][]byte{nil, {1}, enc(1, msgReply), enc(1, msgCall, 2, ProgramPortmapper, 2, 3, 0, 99)} {
		if got := s.Datagram(server, client, 111, 700, junk, now); got != nil {
			t.Errorf("junk %x revealed %v", junk, got)
		}
	}
}

func TestSnooperBoundsPendingCalls(t *testing.T) {
	s := NewSnooper()
	for i := range 3 * pendingLimit {
		s.Datagram(client, server, 700, 111, rpcCall(i, 2, procGetPort, 100005, 3, 17, 0), now.Add(time.Duration(i)*time.Second))
	}
	if len(s.pending) > pendingLimit {
		t.Errorf("%d calls pending, limit %d", len(s.pending), pendingLimit)
	}
}

func FuzzSnooper(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, c, r []byte) {
		s := NewSnooper()
		s.Datagram(client, server, 700, 111, c, now)
		for _, m := range s.Datagram(server, client, 111, 700, r, now) {
			if m.Port == 0 || (m.Proto != catalog.TCP && m.Proto != catalog.UDP) {
				t.Errorf("bad mapping %+v", m)
			}
		}
	})
}
