package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
)

// results collects every round's value per metric and tool.
type results struct {
	mu     sync.Mutex
	vals   map[string]map[string][]float64
	errs   []string // failed measurements
	wrongs []string // wrong bytes or listings
}

func newResults() *results {
	return &results{vals: map[string]map[string][]float64{}}
}

func (res *results) add(metric, tool string, v float64) {
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.vals[metric] == nil {
		res.vals[metric] = map[string][]float64{}
	}
	res.vals[metric][tool] = append(res.vals[metric][tool], v)
	fmt.Fprintf(os.Stderr, "  %-12s %-10s %.4g\n", metric, tool, v)
}

func (res *results) fail(tool string, err error, metrics ...string) {
	if err == errSkipped {
		return
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	msg := fmt.Sprintf("%s (%s): %v", tool, strings.Join(metrics, ", "), err)
	res.errs = append(res.errs, msg)
	fmt.Fprintln(os.Stderr, "  FAILED", msg)
}

func (res *results) wrong(tool, msg string) {
	res.mu.Lock()
	defer res.mu.Unlock()
	res.wrongs = append(res.wrongs, tool+": "+msg)
	fmt.Fprintln(os.Stderr, "  WRONG", tool+":", msg)
}

// median of the rounds of metric for tool; ok is false when there is none.
func (res *results) median(metric, tool string) (float64, bool) {
	v := append([]float64(nil), res.vals[metric][tool]...)
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

// row is one line of the main table.
type row struct {
	fig, metric, label, unit string
	prec                     int
	base                     string // the tool of the last column
}

var rows = []row{
	{"1", mCold, "cold sequential read, 1 GiB", "GiB/s", 2, toolCurl},
	{"1", mColdOrigin, "origin bytes, mount to unmount (1 and 2)", "MiB", 0, toolCurl},
	{"2", mWarmFirst, "first re-read, right after 1", "GiB/s", 2, ""},
	{"2", mWarm, "warm re-read: the next one (last column: ferry's data file read directly, between the two)", "GiB/s", 2, toolDirect},
	{"3", mIOPS, "cold random 4 KiB reads (2,000, fio psync; ferry --no-background)", "IOPS", 0, toolCurl},
	{"3", mP50, "random 4 KiB read latency p50", "ms", 3, toolCurl},
	{"3", mP99, "random 4 KiB read latency p99", "ms", 3, toolCurl},
	{"3", mRandOrigin, "origin bytes, mount to unmount (3)", "MiB", 0, toolCurl},
	{"4", mTail, "last 4 KiB of a cold 1 GiB file (open+pread+close; ferry --no-background)", "ms", 2, toolCurl},
	{"5", mSmall, "cat of 1,000 files of 64 KiB after mount", "s", 3, toolCurl},
	{"6", mRSS, "peak RSS of the mount process during 1 (bound: holds the data; curl: max RSS)", "MiB", 0, toolCurl},
	{"7", mFill, "background fill of 1 GiB to complete (curl: `curl -o` to disk)", "s", 2, toolCurl},
	{"7", mFillSync, "`curl -o` to disk, then fsync", "s", 2, toolCurl},
	{"8", mMount, "mount of 1,000,000 entries (ferry --no-background)", "s", 2, toolCurl},
	{"8", mFind, "`find | wc -l` of 1,000,000 entries", "s", 2, toolCurl},
	{"8", mMillionRSS, "RSS after find", "MiB", 0, toolCurl},
	{"8", mMillionHWM, "peak RSS (mount and find)", "MiB", 0, toolCurl},
}

var columns = []string{toolFerry, toolBound, toolRclone}

func (res *results) cell(metric, tool string, prec int) string {
	v := res.vals[metric][tool]
	med, ok := res.median(metric, tool)
	if !ok {
		return "–"
	}
	s := fmt.Sprintf("%.*f", prec, med)
	if len(v) > 1 {
		lo, hi := v[0], v[0]
		for _, x := range v {
			lo, hi = min(lo, x), max(hi, x)
		}
		s += fmt.Sprintf(" (%.*f–%.*f)", prec, lo, prec, hi)
	}
	return s
}

// target is one of issue 7's targets.
type target struct {
	label string
	check func(res *results) (measured string, met bool, ok bool)
}

// ratioTarget: ferry's median of metric over ref's is at least (or, when
// !atLeast, at most) want.
func ratioTarget(label, metric, ref string, want float64, atLeast bool) target {
	return target{label, func(res *results) (string, bool, bool) {
		f, ok1 := res.median(metric, toolFerry)
		b, ok2 := res.median(metric, ref)
		if !ok1 || !ok2 || b == 0 {
			return "", false, false
		}
		r := f / b
		met := r >= want
		if !atLeast {
			met = r <= want
		}
		return fmt.Sprintf("%.2f × %s", r, ref), met, true
	}}
}

// limitTarget: ferry's median of metric is at most want.
func limitTarget(label, metric string, want float64, unit string) target {
	return target{label, func(res *results) (string, bool, bool) {
		f, ok := res.median(metric, toolFerry)
		if !ok {
			return "", false, false
		}
		return fmt.Sprintf("%.3g %s", f, unit), f <= want, true
	}}
}

var targets = []target{
	ratioTarget("1: cold read ≥ 0.9 × go-fuse bound", mCold, toolBound, 0.9, true),
	ratioTarget("1: cold read ≥ 4 × rclone", mCold, toolRclone, 4, true),
	ratioTarget("2: warm re-read ≥ 0.9 × the cached file read directly", mWarm, toolDirect, 0.9, true),
	limitTarget("3: random 4 KiB p99 ≤ 1 ms", mP99, 1, "ms"),
	ratioTarget("3: random 4 KiB IOPS ≥ 5 × rclone", mIOPS, toolRclone, 5, true),
	limitTarget("4: last 4 KiB ≤ 1 ms", mTail, 1, "ms"),
	limitTarget("5: 1,000 × 64 KiB ≤ 0.4 s", mSmall, 0.4, "s"),
	limitTarget("6: peak RSS ≤ 64 MiB", mRSS, 64, "MiB"),
	ratioTarget("7: background fill ≤ 1.2 × curl -o", mFill, toolCurl, 1.2, false),
	limitTarget("8: mount ≤ 10 s", mMount, 10, "s"),
	limitTarget("8: find ≤ 10 s", mFind, 10, "s"),
	limitTarget("8: RSS ≤ 500 MiB (peak)", mMillionHWM, 500, "MiB"),
}

// write renders the report as markdown.
func (res *results) write(w io.Writer, machine []string, rounds int) {
	res.mu.Lock()
	defer res.mu.Unlock()
	fmt.Fprintf(w, "# ferry side by side\n\n")
	for _, l := range machine {
		fmt.Fprintf(w, "- %s\n", l)
	}
	fmt.Fprintf(w, "\nMedian of %d rounds (min–max); every round mounts afresh on an empty cache directory, "+
		"after a sync and a drop of the page cache. The origin is nginx on 127.0.0.1 serving files from tmpfs; "+
		"the go-fuse bound serves the same bytes from its memory with ferry's mount options.\n\n", rounds)
	fmt.Fprintf(w, "| fig | measure | unit | ferry | go-fuse bound | rclone | curl / direct |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if res.vals[r.metric] == nil {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s |", r.fig, r.label, r.unit)
		for _, t := range columns {
			fmt.Fprintf(w, " %s |", res.cell(r.metric, t, r.prec))
		}
		fmt.Fprintf(w, " %s |\n", res.cell(r.metric, r.base, r.prec))
	}
	fmt.Fprintf(w, "\n## Targets (issue 7)\n\n| target | ferry | met |\n|---|---|---|\n")
	for _, t := range targets {
		m, met, ok := t.check(res)
		verdict := "no"
		switch {
		case !ok:
			m, verdict = "not measured", "–"
		case met:
			verdict = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.label, m, verdict)
	}
	if len(res.wrongs) > 0 || len(res.errs) > 0 {
		fmt.Fprintf(w, "\n## Problems\n\n")
		for _, s := range res.wrongs {
			fmt.Fprintf(w, "- WRONG: %s\n", s)
		}
		for _, s := range res.errs {
			fmt.Fprintf(w, "- failed: %s\n", s)
		}
	}
	fmt.Fprintf(w, "\n## Every round\n\n| measure | tool | rounds |\n|---|---|---|\n")
	for _, r := range rows {
		tools := append(append([]string(nil), columns...), toolCurl, toolDirect)
		for _, t := range tools {
			v := res.vals[r.metric][t]
			if len(v) == 0 {
				continue
			}
			s := make([]string, len(v))
			for i, x := range v {
				s[i] = fmt.Sprintf("%.*f", r.prec+1, x)
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", r.metric, t, strings.Join(s, ", "))
		}
	}
}
