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
		detail: `Unmount the ferry mount at MOUNTPOINT, then wait until the ferry process
serving it has made every fetched block durable and released its cache
directory (so a new mount of it can start at once). Plain umount and
fusermount3 -u work too, without the wait.`,
		example: "  ferry unmount /mnt/data",
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usagef("unmount", "want MOUNTPOINT, got %d argument(s)", len(args))
				}
				// Asked before: once unmounted, the mount cannot say.
				pid, cacheDir := mountOwner(ctx, args[0])
				if err := fs.Unmount(args[0]); err != nil {
					return err
				}
				return waitReleased(ctx, e, pid, cacheDir)
			}
		},
	}
}
