package loader

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestLoadErrorTellsVerifierFromPrivilege: the kernel answers EACCES both
// for a program the verifier rejects (with its log) and, without a log, for
// missing privileges; EPERM is privileges. A rejection must not tell a root
// user to run as root.
func TestLoadErrorTellsVerifierFromPrivilege(t *testing.T) {
	rejected := &ebpf.VerifierError{Cause: unix.EACCES, Log: []string{"0: R1=ctx()", "invalid access to packet, off=14 size=2"}}
	var priv *PrivilegeError
	err := loadError(fmt.Errorf("load program: %w", rejected))
	if errors.As(err, &priv) || !strings.Contains(err.Error(), "the kernel's verifier rejected") || !strings.Contains(err.Error(), "invalid access to packet") {
		t.Errorf("a rejection with a log: %v", err)
	}
	for _, cause := range []error{unix.EPERM, unix.EACCES} {
		err := loadError(fmt.Errorf("load program: %w", &ebpf.VerifierError{Cause: cause}))
		if !errors.As(err, &priv) {
			t.Errorf("%v without a log: %v, want a privilege error", cause, err)
		}
	}
}
