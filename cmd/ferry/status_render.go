package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"ferry/control"
)

// ANSI sequences of the --watch screen.
const (
	hideCursor = "\x1b[?25l"
	showCursor = "\x1b[?25h"
	cursorHome = "\x1b[H"
	clearEOL   = "\x1b[K"
	clearBelow = "\x1b[J"
)

// writeStatusTable writes a mount's totals, then a table of its transfers
// and one of its uploads.
func writeStatusTable(w io.Writer, st control.Status) {
	fmt.Fprintln(w, totalsLine(st))
	fmt.Fprintln(w, countsLine(st.Totals))
	if len(st.Transfers) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tSTATE\tLOCAL/SIZE\tRATE\tETA\tPRIORITY\tFLAGS\tERROR")
		for _, t := range st.Transfers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Path, t.State, progress(t.Local, t.Size),
				rate(t.Rate), etaString(t.ETASeconds), t.Priority, flags(t), oneLine(t.Error))
		}
		tw.Flush()
	}
	if len(st.Uploads) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "UPLOAD\tSTATE\tSENT/SIZE\tURL\tERROR")
		for _, u := range st.Uploads {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Path, u.State, progress(u.Sent, u.Size), u.URL, oneLine(u.Error))
		}
		tw.Flush()
	}
}

// totalsLine is "MOUNTPOINT: N files, LOCAL of SIZE local (P%), RATE, ETA".
func totalsLine(st control.Status) string {
	t := st.Totals
	return fmt.Sprintf("%s: %d files, %s of %s local (%s), %s, ETA %s", st.Mountpoint, t.Files,
		humanBytes(t.Local), humanBytes(t.Size), percent(t.Local, t.Size), rate(t.Rate), etaString(t.ETASeconds))
}

func countsLine(t control.Totals) string {
	s := fmt.Sprintf("  %d complete, %d partial, %d remote, %d failed; %d paused, %d pinned, %d retrying",
		t.Complete, t.Partial, t.Remote, t.Failed, t.Paused, t.Pinned, t.Retrying)
	if t.Uploads > 0 {
		s += fmt.Sprintf("; uploads: %d (%s of %s sent, %d done, %d failed)", t.Uploads,
			humanBytes(t.UploadSent), humanBytes(t.UploadSize), t.UploadsDone, t.UploadsFail)
	}
	return s
}

func flags(t control.Transfer) string {
	var f []string
	if t.Pinned {
		f = append(f, "pinned")
	}
	if t.Paused {
		f = append(f, "paused")
	}
	if t.Open > 0 {
		f = append(f, "open")
	}
	if len(f) == 0 {
		return "-"
	}
	return strings.Join(f, ",")
}

func progress(local, size int64) string {
	if size < 0 {
		return humanBytes(local) + "/?"
	}
	return humanBytes(local) + "/" + humanBytes(size)
}

func percent(local, size int64) string {
	if size <= 0 {
		if size == 0 {
			return "100%"
		}
		return "?%"
	}
	return fmt.Sprintf("%d%%", local*100/size)
}

func rate(r float64) string {
	if r <= 0 {
		return "-"
	}
	return humanBytes(int64(math.Round(r))) + "/s"
}

func etaString(s int64) string {
	switch {
	case s < 0:
		return "-"
	case s == 0:
		return "done"
	}
	return (time.Duration(s) * time.Second).String()
}

// humanBytes writes n in powers of 1024: 512 B, 1.5 KiB, 12.0 MiB.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// oneLine keeps an error on one line of the table.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// bar is a progress bar of width w (brackets included): [#####.....].
func bar(local, size int64, w int) string {
	inner := max(w-2, 1)
	filled := 0
	switch {
	case size > 0:
		filled = int(min(local, size) * int64(inner) / size)
	case size == 0:
		filled = inner
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", inner-filled) + "]"
}

// drawScreen redraws the terminal: for each mount its totals with a bar,
// then a bar per transfer and per upload.
func drawScreen(w io.Writer, sts []control.Status, width int) {
	var b strings.Builder
	b.WriteString(cursorHome)
	line := func(s string) {
		if r := []rune(s); len(r) > width {
			s = string(r[:width])
		}
		b.WriteString(s + clearEOL + "\n")
	}
	line(fmt.Sprintf("ferry status --watch   %s   (Ctrl-C to stop)", time.Now().Format("15:04:05")))
	for _, st := range sts {
		line("")
		line(totalsLine(st))
		line(countsLine(st.Totals))
		// name, bar, then about 60 columns of numbers and the state.
		nameW := min(max(width/4, 12), 40)
		barW := min(max(width-nameW-72, 10), 60)
		line(fmt.Sprintf("%-*s %s %5s %21s %11s %8s", nameW, "total", bar(st.Totals.Local, st.Totals.Size, barW),
			percent(st.Totals.Local, st.Totals.Size), progress(st.Totals.Local, st.Totals.Size), rate(st.Totals.Rate), etaString(st.Totals.ETASeconds)))
		for _, t := range st.Transfers {
			s := fmt.Sprintf("%-*s %s %5s %21s %11s %8s %s", nameW, shorten(t.Path, nameW), bar(t.Local, t.Size, barW),
				percent(t.Local, t.Size), progress(t.Local, t.Size), rate(t.Rate), etaString(t.ETASeconds), stateNote(t))
			line(s)
		}
		for _, u := range st.Uploads {
			line(fmt.Sprintf("%-*s %s %5s %21s %s", nameW, shorten("↑ "+u.Path, nameW), bar(u.Sent, u.Size, barW),
				percent(u.Sent, u.Size), progress(u.Sent, u.Size), u.State))
		}
	}
	b.WriteString(clearBelow)
	io.WriteString(w, b.String())
}

// stateNote is what the screen says after a transfer's bar: its state when
// it is not plainly moving, and its flags.
func stateNote(t control.Transfer) string {
	s := t.State
	if f := flags(t); f != "-" {
		s += " " + f
	}
	if t.Error != "" {
		s += ": " + oneLine(t.Error)
	}
	return s
}

// shorten keeps the end of a path that is longer than w: "…/file.bin".
func shorten(p string, w int) string {
	r := []rune(p)
	if len(r) <= w {
		return p
	}
	return "…" + string(r[len(r)-w+1:])
}

// plainLines writes --watch output for a pipe or a file: a line per
// mount with its totals at each refresh, and a line per transfer or
// upload whose state or bytes changed since it was last written.
type plainLines struct {
	last map[string]string // by mountpoint and path: what was written
}

func newPlainLines() *plainLines { return &plainLines{last: map[string]string{}} }

func (p *plainLines) write(w io.Writer, sts []control.Status) {
	now := time.Now().Format(time.RFC3339)
	for _, st := range sts {
		fmt.Fprintf(w, "%s %s\n", now, totalsLine(st))
		for _, t := range st.Transfers {
			key := st.Mountpoint + "\x00" + t.Path
			v := fmt.Sprintf("%s %s %s %s %s", t.State, percent(t.Local, t.Size), progress(t.Local, t.Size), rate(t.Rate), etaString(t.ETASeconds))
			if p.last[key] == v {
				continue
			}
			p.last[key] = v
			fmt.Fprintf(w, "%s   %s %s %s\n", now, t.Path, v, flags(t))
		}
		for _, u := range st.Uploads {
			key := st.Mountpoint + "\x00upload\x00" + u.Path
			v := fmt.Sprintf("%s %s", u.State, progress(u.Sent, u.Size))
			if p.last[key] == v {
				continue
			}
			p.last[key] = v
			fmt.Fprintf(w, "%s   upload %s %s\n", now, u.Path, v)
		}
	}
}
