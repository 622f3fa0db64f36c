package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"ferry/control"
	"ferry/fs"
)

// statusOptions are the flags of `ferry status`.
type statusOptions struct {
	json     bool
	watch    bool
	active   bool
	interval time.Duration
}

func (o *statusOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.json, "json", false, "print one JSON object per mount and line (stable field names: see README, \"Control\")")
	f.BoolVar(&o.watch, "watch", false, "redraw live progress bars until Ctrl-C (plain lines when stdout is not a terminal)")
	f.BoolVar(&o.active, "active", false, "list only files that are not complete and uploads that are not sent")
	f.DurationVar(&o.interval, "interval", time.Second, "how often --watch refreshes")
}

func statusCommand() *command {
	return &command{
		name:    "status",
		args:    "[MOUNTPOINT|PATH...]",
		summary: "show transfers and uploads, with totals (--watch: live)",
		detail: `Show every transfer of the mount (path, state, bytes local / size, rate,
ETA, priority, flags, last error) and every upload of its outbox, with the
totals on top. A PATH inside a mount shows only that file or what lies below
that directory. With no argument, every ferry mount of this user.`,
		example: "  ferry status /mnt/data\n  ferry status --watch /mnt/data/models\n  ferry status --json | jq '.totals'",
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			o := &statusOptions{}
			o.AddFlags(f)
			return func(ctx context.Context, e *env, args []string) error {
				if o.interval < 10*time.Millisecond {
					return usagef("status", "--interval %v: want at least 10ms", o.interval)
				}
				return runStatus(ctx, e, o, args)
			}
		},
	}
}

// statusTarget is one mount to show, and the paths to show of it.
type statusTarget struct {
	mountpoint string
	client     *control.Client
	q          control.Query
}

func runStatus(ctx context.Context, e *env, o *statusOptions, args []string) error {
	targets, err := statusTargets(ctx, e, args)
	for _, t := range targets {
		defer t.client.Close()
		t.q.Active = o.active
	}
	if err != nil && (len(args) > 0 || len(targets) == 0) {
		return err
	}
	// Without arguments, a mount that cannot be shown (err) does not
	// hide the others: they are shown, then the error is returned.
	brokenErr := err
	if len(targets) == 0 {
		if !o.json {
			fmt.Fprintln(e.stdout, "no ferry mounts")
		}
		return nil
	}
	if !o.watch {
		var report io.Writer
		if len(args) == 0 {
			// Every mount of the user: one that stops answering now is
			// reported, the others are still shown.
			report = e.stderr
		}
		sts, err := fetchStatuses(ctx, targets, report)
		switch {
		case err != nil && report == nil:
			return err
		case err != nil:
			brokenErr = err
		}
		if err := printStatuses(e.stdout, o, sts); err != nil {
			return err
		}
		return brokenErr
	}
	return watchStatus(ctx, e, o, targets)
}

// statusTargets connects to the mounts args name, or to every ferry mount
// of this user when there are none. Without arguments, mounts of other
// users are skipped and mounts that are not running are reported on
// stderr; the error then says how many could not be shown.
func statusTargets(ctx context.Context, e *env, args []string) ([]*statusTarget, error) {
	var out []*statusTarget
	if len(args) > 0 {
		groups, err := groupPaths(args)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			c, err := connect(ctx, g.mountpoint)
			if err != nil {
				return out, err
			}
			t := &statusTarget{mountpoint: g.mountpoint, client: c}
			for _, r := range g.rels {
				if r == "" { // the whole mount
					t.q.Paths = nil
					break
				}
				t.q.Paths = append(t.q.Paths, r)
			}
			out = append(out, t)
		}
		return out, nil
	}
	mounts, err := fs.Mounts()
	if err != nil {
		return nil, err
	}
	broken := 0
	for _, m := range mounts {
		if m.UID >= 0 && m.UID != os.Geteuid() {
			continue // another user's
		}
		c, err := connect(ctx, m.Dir)
		if errors.Is(err, control.ErrForeign) {
			continue
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "ferry: %v\n", err)
			broken++
			continue
		}
		out = append(out, &statusTarget{mountpoint: m.Dir, client: c})
	}
	if broken > 0 {
		return out, &codedError{code: exitFailure, msg: fmt.Sprintf("%d ferry mount(s) could not be shown", broken)}
	}
	return out, nil
}

// fetchStatuses asks every target for its status. With report nil, the
// first that fails fails the call. Otherwise each that fails is reported
// there and left out, and the error says that some could not be shown.
func fetchStatuses(ctx context.Context, targets []*statusTarget, report io.Writer) ([]control.Status, error) {
	out := make([]control.Status, 0, len(targets))
	var failed error
	for _, t := range targets {
		st, err := t.client.Status(ctx, t.q)
		if err != nil {
			if report == nil {
				return nil, mountError(t.mountpoint, err)
			}
			fmt.Fprintf(report, "ferry: %v\n", mountError(t.mountpoint, err))
			failed = &codedError{code: exitFailure, msg: "some ferry mounts could not be shown"}
			continue
		}
		out = append(out, st)
	}
	return out, failed
}

func printStatuses(w io.Writer, o *statusOptions, sts []control.Status) error {
	for i, st := range sts {
		if o.json {
			if err := writeJSONLine(w, st); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		writeStatusTable(w, st)
	}
	return nil
}

func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// watchStatus refreshes every interval until ctx ends (Ctrl-C: exit 0) or
// a mount goes away (exit 1).
func watchStatus(ctx context.Context, e *env, o *statusOptions, targets []*statusTarget) error {
	tty, width := terminal(e.stdout)
	var lines *plainLines
	if !tty {
		lines = newPlainLines()
	}
	if tty && !o.json {
		fmt.Fprint(e.stdout, hideCursor)
		defer fmt.Fprint(e.stdout, showCursor)
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		sts, err := fetchStatuses(ctx, targets, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch {
		case o.json:
			if err := printStatuses(e.stdout, o, sts); err != nil {
				return err
			}
		case tty:
			if _, w := terminal(e.stdout); w > 0 {
				width = w
			}
			drawScreen(e.stdout, sts, width)
		default:
			lines.write(e.stdout, sts)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// terminal reports whether w is a terminal, and its width (0 if unknown).
func terminal(w io.Writer) (bool, int) {
	f, ok := w.(*os.File)
	if !ok {
		return false, 0
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return false, 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return true, 80
	}
	return true, int(ws.Col)
}
