package main

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"ferry/control"
	"ferry/fs"
	"ferry/manifest"
)

// connectTimeout bounds finding and checking a mount's control socket (a
// mount that hangs does not hang the command).
const connectTimeout = 10 * time.Second

// connect finds the control socket of the ferry mount at mountpoint and
// checks that it is this user's. Its errors are one line that names the
// mount.
func connect(ctx context.Context, mountpoint string) (*control.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	sock, err := control.SocketOf(ctx, mountpoint)
	if err == nil {
		var c *control.Client
		if c, err = control.Dial(sock); err == nil {
			return c, nil
		}
	}
	return nil, mountError(mountpoint, err)
}

// mountError rephrases an error of the control package for the command
// line: one line, naming the mount.
func mountError(mountpoint string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "control: ")
	switch {
	case errors.Is(err, control.ErrNotRunning):
		msg = strings.TrimPrefix(msg, "the mount is not running: ")
		return fmt.Errorf("the ferry mount at %s is not running: %s", mountpoint, msg)
	case errors.Is(err, control.ErrForeign):
		msg = strings.TrimPrefix(msg, "the control socket belongs to another user: ")
		return fmt.Errorf("the ferry mount at %s belongs to another user: control socket %s", mountpoint, msg)
	}
	return fmt.Errorf("%s: %s", mountpoint, msg)
}

// mountPaths is the paths of one mount named on a command line.
type mountPaths struct {
	mountpoint string
	rels       []string // mount-relative; "" is the mount itself
	args       []string // as given, for messages
}

// groupPaths finds the mount of every path and groups them by mount, in
// the order the mounts first appear.
func groupPaths(args []string) ([]*mountPaths, error) {
	var out []*mountPaths
	byMount := map[string]*mountPaths{}
	for _, a := range args {
		mnt, rel, err := fs.MountOf(a)
		if err != nil {
			return nil, fmt.Errorf("%s is not inside a ferry mount", a)
		}
		g := byMount[mnt]
		if g == nil {
			g = &mountPaths{mountpoint: mnt}
			byMount[mnt] = g
			out = append(out, g)
		}
		g.rels = append(g.rels, rel)
		g.args = append(g.args, a)
	}
	return out, nil
}

// ctlInfo describes the command of one control.Op.
type ctlInfo struct {
	args, summary, detail, example string
}

var ctlInfos = map[control.Op]ctlInfo{
	control.OpPause: {"PATH...", "hold background transfers of files",
		`Hold the background transfer of each file (a directory names every file
below it): the request running now finishes, no new one starts. A read still
fetches what it needs. 'ferry resume' continues. Run-time only: the next
mount starts every transfer again.`,
		"  ferry pause /mnt/data/big.iso\n  cd /mnt/data && ferry pause videos"},
	control.OpResume: {"PATH...", "continue held or cancelled transfers; retry failed ones",
		`Continue the background transfer of each file held by 'ferry pause',
'ferry cancel' or 'ferry evict', and retry files that failed. For a file of
the outbox, retry its upload if it failed.`,
		"  ferry resume /mnt/data/big.iso"},
	control.OpCancel: {"PATH...", "stop background transfers now, keep what is local",
		`Stop the background transfer of each file at once (requests in flight
are cut) and start none until 'ferry resume'. What is local stays; a read
still fetches what it needs.`,
		"  ferry cancel /mnt/data/big.iso"},
	control.OpPriority: {"LEVEL PATH...", "set the background priority of files",
		`Set the background priority of each file to LEVEL: foreground, high,
normal or low (BITS' four levels; higher levels are filled first). Run-time
only: the manifest's priority returns at the next mount.`,
		"  ferry priority high /mnt/data/models"},
	control.OpPin: {"PATH...", "fetch files whole now and never evict them",
		`Pin each file: fetch it whole now (at the priority of a read) and never
evict it from the cache. The pin is durable: it holds across unmounts and
restarts until 'ferry pin --unpin'. Without --wait the fill goes on in the
mount after the command returned; 'ferry status' shows it.`,
		"  ferry pin --wait /mnt/data/models/llm.bin"},
	control.OpEvict: {"PATH...", "drop the local copy of files",
		`Drop the local copy of each file and hold its background transfer, so the
space stays free; reads fetch what they need again, and 'ferry resume' fills
the file again. Pinned files and files the kernel reads directly from the
cache (open, complete) are refused.`,
		"  ferry evict /mnt/data/old-dataset"},
}

// ctlCommands returns the commands of every control.Op.
func ctlCommands() []*command {
	var out []*command
	for _, op := range control.Ops {
		out = append(out, ctlCommand(op))
	}
	return out
}

func ctlCommand(op control.Op) *command {
	info := ctlInfos[op]
	name := string(op)
	return &command{
		name: name, args: info.args, summary: info.summary, detail: info.detail, example: info.example,
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			var wait, unpin bool
			if op == control.OpPin {
				f.BoolVar(&wait, "wait", false, "return only once the files are complete (exit 1 if one failed)")
				f.BoolVar(&unpin, "unpin", false, "remove the pin of 'ferry pin' instead (a pin of the manifest stays)")
			}
			return func(ctx context.Context, e *env, args []string) error {
				req := control.Request{Wait: wait, Unpin: unpin}
				if op == control.OpPriority {
					if len(args) == 0 {
						return usagef(name, "want LEVEL and at least one PATH")
					}
					if _, err := manifest.ParsePriority(args[0]); err != nil {
						return usagef(name, "level %q: want foreground, high, normal or low", args[0])
					}
					req.Priority, args = args[0], args[1:]
				}
				if len(args) == 0 {
					return usagef(name, "want at least one PATH")
				}
				if wait && unpin {
					return usagef(name, "--wait and --unpin do not go together")
				}
				return runCtl(ctx, e, op, req, args)
			}
		},
	}
}

// runCtl sends op for the paths args to their mounts. A single failure is
// the error; several get one line each on stderr, and the error counts
// them.
func runCtl(ctx context.Context, e *env, op control.Op, req control.Request, args []string) error {
	groups, err := groupPaths(args)
	if err != nil {
		return err
	}
	var failures []string
	for _, g := range groups {
		c, err := connect(ctx, g.mountpoint)
		if err != nil {
			return err
		}
		req.Paths = g.rels
		results, err := c.Apply(ctx, op, req)
		c.Close()
		if err != nil {
			return mountError(g.mountpoint, err)
		}
		for i, r := range results {
			if r.Error != "" {
				failures = append(failures, g.args[i]+": "+r.Error)
			}
		}
	}
	switch len(failures) {
	case 0:
		return nil
	case 1:
		return errors.New(failures[0])
	}
	for _, f := range failures {
		fmt.Fprintf(e.stderr, "ferry: %s\n", f)
	}
	return fmt.Errorf("%s failed for %d of %d paths", op, len(failures), len(args))
}

// mountOwner asks the mount at mountpoint for the pid of the process
// serving it and its cache directory; zero values when it cannot tell.
func mountOwner(ctx context.Context, mountpoint string) (pid int, cacheDir string) {
	c, err := connect(ctx, mountpoint)
	if err != nil {
		return 0, ""
	}
	defer c.Close()
	st, err := c.Status(ctx, control.Query{NoFiles: true})
	if err != nil {
		return 0, ""
	}
	return st.PID, st.CacheDir
}

// waitReleased waits until the process that served a mount has released
// its cache directory: the flock on CACHE_DIR/lock (docs/on-disk-format.md)
// that the cache holds while open, released last when the process closes
// it. A lock test rather than a pid works across pid namespaces. A mount
// served by this very process is not waited for (its owner closes it). It
// says on stderr what it waits for after a few seconds.
func waitReleased(ctx context.Context, e *env, pid int, cacheDir string) error {
	if cacheDir == "" || pid == os.Getpid() {
		return nil
	}
	f, err := os.Open(filepath.Join(cacheDir, "lock"))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("waiting for the mount process: %w", err)
	}
	defer f.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	told := time.Now().Add(5 * time.Second)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		if err == nil {
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("waiting for the mount process: %w", err)
		}
		if !told.IsZero() && time.Now().After(told) {
			fmt.Fprintf(e.stderr, "ferry: waiting for the mount process (pid %d) to release %s...\n", pid, cacheDir)
			told = time.Time{}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmounted, but stopped waiting for the mount process (pid %d): %w", pid, ctx.Err())
		case <-tick.C:
		}
	}
}
