// Package privtest decides, in tests, what happens when the environment
// lacks something a test needs (root, BPF, a command): the test is skipped
// with the reason, unless PORTWATCH_REQUIRE_PRIV=1 (CI) says the
// environment must have it, and then it fails.
package privtest

import (
	"os"
	"os/exec"
	"testing"
)

// Env is the variable that turns a skip into a failure.
const Env = "PORTWATCH_REQUIRE_PRIV"

// Required reports whether a missing privilege or tool is a failure.
func Required() bool { return os.Getenv(Env) == "1" }

// SkipOrFail skips the test with reason, or fails it when Required.
func SkipOrFail(tb testing.TB, reason string) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s, and %s=1 forbids skipping", reason, Env)
	}
	tb.Skip(reason)
}

// RequireRoot skips or fails a test that needs root, saying why.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(tb, "not root: "+why)
	}
}

// RequireCommand skips or fails a test that runs the named command when it
// is not installed, naming how to get it.
func RequireCommand(tb testing.TB, name, install string) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		SkipOrFail(tb, name+" is not installed ("+install+")")
	}
}
