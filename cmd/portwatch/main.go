// Command portwatch watches an xCAT cluster's management network and reports
// which required xCAT service ports are blocked and which unexpected ports are
// open: live with XDP and TC (or AF_PACKET), or from a capture.
package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// Exit statuses.
const (
	exitOK = 0
	// exitFailure: the command ran and failed (or, for probe, a required
	// port is not open).
	exitFailure = 1
	// exitUsage: bad flags, arguments or configuration; nothing was started.
	exitUsage = 2
	// exitDamagedInput: a capture was damaged; what could be read was
	// analysed and reported.
	exitDamagedInput = 3
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	// usage is the synopsis lines, without the program name.
	usage []string
	// about explains the command in a paragraph or two.
	about string
	// run parses args with fs (already holding the command's flags) and
	// does the work; it returns the exit status.
	setup func(fs *pflag.FlagSet) func(env *env, args []string) int
}

// env is what a command talks to: tests swap the streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "portwatch: "+format+"\n", args...)
}

// errorList prints err, and each error it joins on a line of its own (a
// site file with several mistakes names them all).
func (e *env) errorList(err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, one := range joined.Unwrap() {
			e.errorList(one)
		}
		return
	}
	e.errorf("%v", err)
}

var commands []*command

// commandOrder is the order of the command list in the usage: the main
// jobs first.
var commandOrder = []string{"observe", "analyze", "probe", "catalog", "version"}

func register(c *command) {
	commands = append(commands, c)
	slices.SortStableFunc(commands, func(a, b *command) int {
		return cmp.Compare(rank(a.name), rank(b.name))
	})
}

func rank(name string) int {
	if i := slices.Index(commandOrder, name); i >= 0 {
		return i
	}
	return len(commandOrder)
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

func run(args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 && args[0] == "help" && args[1] != "help" {
			return runCommand(lookup(args[1]), args[1], []string{"--help"}, e)
		}
		usage(e.stdout)
		return exitOK
	case "-v", "--version":
		args = []string{"version"}
	}
	if strings.HasPrefix(args[0], "-") {
		// Flags belong to a command: portwatch COMMAND --flag.
		e.errorf("unknown flag %s: flags follow a command, as in 'portwatch analyze --help' (run 'portwatch --help' for the commands)", args[0])
		return exitUsage
	}
	return runCommand(lookup(args[0]), args[0], args[1:], e)
}

func runCommand(c *command, name string, args []string, e *env) int {
	if c == nil {
		e.errorf("unknown command %q (run 'portwatch --help' for the list)", name)
		return exitUsage
	}
	fs := pflag.NewFlagSet("portwatch "+c.name, pflag.ContinueOnError)
	fs.SortFlags = false
	// pflag would print the whole usage on every error; say what is wrong
	// in one line instead, and print the usage only when asked.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	do := c.setup(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			commandUsage(e.stdout, c, fs)
			return exitOK
		}
		e.errorf("%s: %v (see 'portwatch %s --help')", c.name, err, c.name)
		return exitUsage
	}
	return do(e, fs.Args())
}

func usage(w io.Writer) {
	fmt.Fprint(w, `portwatch watches an xCAT cluster's management network and reports which
required xCAT service ports are blocked and which unexpected ports are open.

Usage:
  portwatch COMMAND [flags] [arguments]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'portwatch COMMAND --help' for what a command does and all its flags.
`)
}

func commandUsage(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage:\n", strings.ToUpper(c.summary[:1])+c.summary[1:])
	for _, u := range c.usage {
		fmt.Fprintf(w, "  portwatch %s\n", u)
	}
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.about))
	}
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsagesWrapped(100))
	}
}
