package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// PrivilegeHint says what the kernel backend needs, for any error that is a
// refused permission.
const PrivilegeHint = "the kernel backend needs CAP_BPF and CAP_NET_ADMIN (and CAP_PERFMON for the rpcbind " +
	"event buffer): run portwatch as root, or use --backend capture, which needs no BPF"

// PrivilegeError is an operation the kernel refused for lack of privileges.
type PrivilegeError struct {
	Op  string
	Err error
}

// Error puts what to do before the library's detail, which can mislead
// (it may suggest raising RLIMIT_MEMLOCK, which no longer applies).
func (e *PrivilegeError) Error() string {
	refusal := "operation not permitted"
	if errors.Is(e.Err, unix.EACCES) && !errors.Is(e.Err, unix.EPERM) {
		refusal = "permission denied"
	}
	return fmt.Sprintf("%s: %s: %s (detail: %v)", e.Op, refusal, PrivilegeHint, e.Err)
}

func (e *PrivilegeError) Unwrap() error { return e.Err }

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// privilegeError wraps err as a PrivilegeError when the kernel refused it
// for lack of privileges, and with op as context otherwise.
func privilegeError(op string, err error) error {
	if isPermission(err) {
		return &PrivilegeError{Op: op, Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// loadError explains a failed load of the collection.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// EPERM is privileges. EACCES is also most verifier rejections
		// (an invalid access, as an older kernel may find one): those
		// come with the verifier's log; a refusal for privileges without.
		if errors.Is(ve.Cause, unix.EPERM) || (errors.Is(ve.Cause, unix.EACCES) && len(ve.Log) == 0) {
			return &PrivilegeError{Op: "loading the BPF programs", Err: err}
		}
		// The last lines of the verifier log say where it gave up.
		return fmt.Errorf("the kernel's verifier rejected portwatch's BPF program (kernel 6.6 or later is "+
			"tested; with an older kernel use --backend capture, else please report this with `uname -r`): %-30v", ve)
	}
	return privilegeError("loading the BPF programs", err)
}
