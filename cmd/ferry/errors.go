package main

import (
	"errors"
	"fmt"
	"io"
)

// Exit codes; part of the command line contract (see the package doc).
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitManifest = 3
)

// usageError is a bad command line; the message is followed by a hint to
// run --help.
type usageError struct {
	cmd string // "" for the top level
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// manifestError is a manifest that cannot be read or is invalid.
type manifestError struct{ err error }

func (e *manifestError) Error() string { return e.err.Error() }
func (e *manifestError) Unwrap() error { return e.err }

// codedError carries an exit code decided elsewhere (by a daemon child).
type codedError struct {
	code int
	msg  string
}

func (e *codedError) Error() string { return e.msg }

// errHelp is returned after --help printed the usage: exit 0.
var errHelp = errors.New("help requested")

// exitCode prints err (if any) to w and returns the process exit code.
func exitCode(err error, w io.Writer) int {
	if classify(err) == exitOK {
		return exitOK
	}
	fmt.Fprintf(w, "ferry: %v\n", err)
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		help := "ferry help"
		if ue.cmd != "" {
			help = "ferry " + ue.cmd + " --help"
		}
		fmt.Fprintf(w, "Run '%s' for usage.\n", help)
	}
	return classify(err)
}

// classify maps err to its exit code.
func classify(err error) int {
	var ue *usageError
	var me *manifestError
	var ce *codedError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &me):
		return exitManifest
	case errors.As(err, &ce):
		return ce.code
	}
	return exitFailure
}
