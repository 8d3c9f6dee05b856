package rpcbind

import (
	"flag"
	"fmt"
	"testing"

	"portwatch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the committed fuzz seeds")

// seeds are call and reply pairs of every procedure the snooper reads.
func seeds() map[string][2][]byte {
	return map[string][2][]byte{
		"getport-v2":     {rpcCall(1, 2, procGetPort, 100005, 3, 17, 0), rpcReply(1, 20048)},
		"getaddr-v3":     {rpcCall(3, 3, procGetPort, 100005, 3, "tcp", "", ""), rpcReply(3, "10.0.0.1.78.80")},
		"getversaddr-v4": {rpcCall(4, 4, procGetVersAddr, 100005, 3, "udp6", "", ""), rpcReply(4, "fd00::1.78.81")},
		"dump-v2":        {rpcCall(6, 2, procDump), rpcReply(6, 1, 100000, 2, 17, 111, 1, 100005, 3, 17, 20048, 0)},
		"dump-v3":        {rpcCall(7, 3, procDump), rpcReply(7, 1, 100005, 1, "udp", "0.0.0.0.78.80", "superuser", 0)},
	}
}

// TestSnooperSeeds keeps testdata/fuzz/FuzzSnooper equal to seeds():
// go test -run TestSnooperSeeds -update.
func TestSnooperSeeds(t *testing.T) {
	for name, s := range seeds() {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", s[0], s[1])
		golden.Check(t, "fuzz/FuzzSnooper/"+name, []byte(want), *update)
	}
}
