package main

import (
	"context"

	"github.com/spf13/pflag"

	"ferry/fs"
)

func unmountCommand() *command {
	return &command{
		name:    "unmount",
		args:    "MOUNTPOINT",
		summary: "unmount a ferry mount",
		detail: `Unmount the ferry mount at MOUNTPOINT. The ferry process serving it then
makes every fetched block durable and exits. Plain umount and fusermount3 -u
work too.`,
		example: "  ferry unmount /mnt/data",
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("unmount", "want MOUNTPOINT, got %d argument(s)", len(args))
				}
				return fs.Unmount(args[0])
			}
		},
	}
}
