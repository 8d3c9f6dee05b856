package lab

import (
	"os"

	"portwatch/lab/sim"
)

// The lab runs its simulators (xcatd, mountd) as processes inside the
// management node's namespace, so that they outlive the process that
// built the lab, as the Debian daemons do. It re-executes its own binary
// with simEnv set: whatever program links this package (portwatch-lab, a
// test binary, an end-to-end test of another package) can serve as the
// simulator, and no separate binary has to be built or found.
func init() {
	if name := os.Getenv(simEnv); name != "" {
		os.Exit(sim.Main(name, os.Args[1:]))
	}
}
