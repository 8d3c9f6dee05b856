package sim

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

// Main runs the simulator name ("xcatd" or "mountd") as a process, until
// SIGTERM or SIGINT, and returns the exit status. The lab starts it inside
// the management node's namespace.
func Main(name string, args []string) int {
	logger := log.New(os.Stdout, name+"-sim: ", log.LstdFlags|log.Lmicroseconds)
	fs := pflag.NewFlagSet(name+"-sim", pflag.ContinueOnError)
	addr := fs.String("addr", "0.0.0.0", "address to listen on (xcatd)")
	port := fs.Int("port", 20048, "port to listen on and register with rpcbind (mountd)")
	// The lab passes its run directory so that its processes can be found
	// by their command line; the simulators keep no files.
	fs.String("run-dir", "", "the lab's run directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch name {
	case "xcatd":
		var a netip.Addr
		a, err = netip.ParseAddr(*addr)
		if err == nil {
			err = ServeXcatd(ctx, a, XcatdPorts, logger)
		}
	case "mountd":
		err = ServeMountd(ctx, *port, logger)
	default:
		err = fmt.Errorf("no simulator %q (xcatd, mountd)", name)
	}
	if err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}
