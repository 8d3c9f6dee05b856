package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "version",
		summary: "print portwatch's version and how it was built",
		usage:   []string{"version"},
		setup: func(fs *pflag.FlagSet) func(*env, []string) int {
			return func(e *env, args []string) int {
				if len(args) > 0 {
					e.errorf("version takes no arguments")
					return exitUsage
				}
				fmt.Fprintf(e.stdout, "portwatch %s (%s, %s/%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				if info, ok := debug.ReadBuildInfo(); ok {
					for _, s := range info.Settings {
						if s.Key == "vcs.revision" {
							fmt.Fprintf(e.stdout, ", commit %.12s", s.Value)
						}
					}
				}
				fmt.Fprintln(e.stdout, ")")
				return exitOK
			}
		},
	})
}
