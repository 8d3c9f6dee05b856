package sim

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

func call(xid, rpcvers, prog, vers, proc uint32, cred []byte) []byte {
	b := appendU32(nil, xid, msgCall, rpcvers, prog, vers, proc)
	b = appendU32(b, 1, uint32(len(cred))) // AUTH_SYS flavor, body
	b = append(b, cred...)
	b = append(b, make([]byte, (4-len(cred)%4)%4)...)
	return appendU32(b, 0, 0) // verifier AUTH_NONE
}

func words(b []byte) []uint32 {
	var w []uint32
	for ; len(b) >= 4; b = b[4:] {
		w = append(w, binary.BigEndian.Uint32(b))
	}
	return w
}

func TestMountdReply(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want []uint32
	}{
		{"null v3", call(7, 2, MountProgram, 3, 0, []byte("abcde")),
			[]uint32{7, msgReply, replyAccepted, 0, 0, acceptSuccess}},
		{"null v1", call(8, 2, MountProgram, 1, 0, nil),
			[]uint32{8, msgReply, replyAccepted, 0, 0, acceptSuccess}},
		{"mount procedure", call(9, 2, MountProgram, 3, 1, nil),
			[]uint32{9, msgReply, replyAccepted, 0, 0, acceptProcUnavail}},
		{"version 4", call(10, 2, MountProgram, 4, 0, nil),
			[]uint32{10, msgReply, replyAccepted, 0, 0, acceptProgMismatch, 1, 3}},
		{"other program", call(11, 2, 100003, 3, 0, nil),
			[]uint32{11, msgReply, replyAccepted, 0, 0, acceptProgUnavail}},
		{"rpc version 3", call(12, 3, MountProgram, 3, 0, nil),
			[]uint32{12, msgReply, replyDenied, deniedRPCMismatch, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseCall(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := words(mountdReply(c)); !slices.Equal(got, tt.want) {
				t.Errorf("reply %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseCallRejects(t *testing.T) {
	good := call(1, 2, MountProgram, 3, 0, []byte("host"))
	reply := appendU32(nil, 1, msgReply, 0, 0, 0, 0)
	longCred := appendU32(appendU32(nil, 1, msgCall, 2, MountProgram, 3, 0), 1, 401)
	for name, msg := range map[string][]byte{
		"truncated header":     good[:10],
		"truncated credential": good[:30],
		"a reply":              reply,
		"credential too long":  append(longCred, make([]byte, 404)...),
		"empty":                nil,
	} {
		if _, err := parseCall(msg); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestRecordMarking(t *testing.T) {
	msg := []byte("0123456789")
	if got, err := readRecord(bytes.NewReader(record(msg))); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("round trip: %q, %v", got, err)
	}
	// Two fragments, the second marked last.
	two := append(appendU32(nil, 4), "0123"...)
	two = append(append(two, appendU32(nil, lastFragment|6)...), "456789"...)
	if got, err := readRecord(bytes.NewReader(two)); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("two fragments: %q, %v", got, err)
	}
	if _, err := readRecord(bytes.NewReader(appendU32(nil, lastFragment|1<<17))); err == nil {
		t.Error("a 128 KiB record was accepted")
	}
	if _, err := readRecord(bytes.NewReader(appendU32(nil, lastFragment|8))); err == nil {
		t.Error("a truncated record was accepted")
	}
}

func TestPortmapReply(t *testing.T) {
	ok := appendU32(nil, 5, msgReply, replyAccepted, 0, 0, acceptSuccess, 1)
	if v, err := parsePortmapReply(ok, 5); err != nil || v != 1 {
		t.Errorf("accepted: %d, %v", v, err)
	}
	if _, err := parsePortmapReply(ok, 6); err == nil {
		t.Error("a reply to another call was accepted")
	}
	denied := appendU32(nil, 5, msgReply, replyAccepted, 0, 0, acceptProgUnavail, 0)
	if _, err := parsePortmapReply(denied, 5); err == nil {
		t.Error("PROG_UNAVAIL was accepted")
	}
	if _, err := parsePortmapReply(ok[:20], 5); err == nil {
		t.Error("a short reply was accepted")
	}
}

func TestAnswer(t *testing.T) {
	if got := Answer("xcatiport", "installstatus  booted\n"); got != "ok xcatiport installstatus booted\n" {
		t.Errorf("Answer = %q", got)
	}
}
