// Command ferry mounts a manifest of remote HTTP URLs as a read-only tree of
// lazily fetched files. Run `ferry help` for the commands.
//
// Exit codes (stable, see exitCode):
//
//	0  success
//	1  failure at run time (mount, network, unmount)
//	2  usage: unknown command, bad flag or argument
//	3  bad manifest: cannot be read, parsed or validated
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
