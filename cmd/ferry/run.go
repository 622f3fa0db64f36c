package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// command is one subcommand of ferry.
type command struct {
	name    string
	args    string // argument synopsis
	summary string
	detail  string // paragraph after the synopsis
	example string
	// flags adds the command's flags to fs and returns the function that
	// runs it with the positional arguments.
	flags func(fs *pflag.FlagSet) func(ctx context.Context, env *env, args []string) error
}

// env is what a command writes to.
type env struct {
	stdout, stderr io.Writer
	args           []string // the whole command line, for a daemon child
}

func commands() []*command {
	cmds := []*command{mountCommand(), unmountCommand(), statusCommand()}
	cmds = append(cmds, ctlCommands()...)
	return append(cmds, manifestCommand(), demoCommand())
}

// run runs the command line args (without the program name). It is main
// without the exit: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// mount(8) runs ferry as a mount helper (mounthelper.go).
	if h, ok, fake, err := helperArgs(os.Args[0], args); ok {
		if err != nil || fake {
			return err
		}
		args = h
	}
	e := &env{stdout: stdout, stderr: stderr, args: args}
	if len(args) == 0 {
		printTopUsage(stderr)
		return usagef("", "no command given")
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help":
		if len(args) > 1 {
			if c := findCommand(args[1]); c != nil {
				fs := newFlagSet(c)
				c.flags(fs)
				printUsage(stdout, c, fs)
				return nil
			}
			return usagef("", "unknown command %q", args[1])
		}
		printTopUsage(stdout)
		return nil
	}
	c := findCommand(name)
	if c == nil {
		return usagef("", "unknown command %q", name)
	}
	fs := newFlagSet(c)
	runFn := c.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return usagef(c.name, "%v", err)
	}
	if help, _ := fs.GetBool("help"); help {
		printUsage(stdout, c, fs)
		return errHelp
	}
	return runFn(ctx, e, fs.Args())
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// newFlagSet returns the flag set of c with only --help defined; c.flags
// adds the rest.
func newFlagSet(c *command) *pflag.FlagSet {
	fs := pflag.NewFlagSet("ferry "+c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = true
	fs.BoolP("help", "h", false, "show this help")
	return fs
}

func printTopUsage(w io.Writer) {
	fmt.Fprintf(w, "ferry mounts a manifest of remote HTTP URLs as a read-only tree of lazily fetched files.\n\n")
	fmt.Fprintf(w, "Usage:\n  ferry COMMAND [flags] [arguments]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'ferry COMMAND --help' for a command's flags and an example.\n")
	fmt.Fprintf(w, "\nExit codes: 0 success, 1 failure, 2 usage error, 3 bad manifest.\n")
}

func printUsage(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: ferry %s [flags] %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.detail))
	if u := fs.FlagUsages(); u != "" {
		fmt.Fprintf(w, "\nFlags:\n%s", u)
	}
	fmt.Fprintf(w, "\nExample:\n%s\n", c.example)
}
