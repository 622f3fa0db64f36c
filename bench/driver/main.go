// Command driver runs the measurements of bench/run.sh: ferry, rclone mount,
// a minimal go-fuse file system and plain curl on the same data from the
// same nginx, several rounds each, and writes a markdown report. run.sh
// installs the tools, generates the data and starts nginx; the driver
// mounts, measures and unmounts. Not a stable API.
//
// Every mount is a child process in its own process group; the driver
// stops each one (SIGTERM, then a lazy unmount and SIGKILL) after its
// figure, and all of them on an error, SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	work         string // scratch directory on disk: mountpoints, cache directories, logs
	data         string // what nginx serves (tmpfs)
	manifests    string // big.json, small.json, million.json
	base         string // the origin's URL
	accessLog    string // nginx's access log: body bytes per request
	ferry        string // binaries
	fusebound    string
	rounds       int
	tools        []string
	figures      []string
	out          string // markdown report ("" : stdout only)
	mountTimeout time.Duration
	stepTimeout  time.Duration
	primeMiB     int // memory touched and freed before figures 1, 5 and 7 (see primeMemory)
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == primeArg {
		primeChild(os.Args[2])
		return
	}
	var cfg config
	var tools, figures string
	flag.StringVar(&cfg.work, "work", "", "scratch directory on disk (required)")
	flag.StringVar(&cfg.data, "data", "", "directory nginx serves (required)")
	flag.StringVar(&cfg.manifests, "manifests", "", "directory of big.json, small.json, million.json (required)")
	flag.StringVar(&cfg.base, "base", "", "origin URL, e.g. http://127.0.0.1:18080 (required)")
	flag.StringVar(&cfg.accessLog, "access-log", "", "nginx access log of body byte counts")
	flag.StringVar(&cfg.ferry, "ferry", "ferry", "ferry binary")
	flag.StringVar(&cfg.fusebound, "fusebound", "fusebound", "fusebound binary")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of each measurement")
	flag.StringVar(&tools, "tools", "ferry,fusebound,rclone,curl", "tools to measure")
	flag.StringVar(&figures, "figures", "1,3,4,5,7,8", "figures to measure (2 and 6 come with 1)")
	flag.StringVar(&cfg.out, "out", "", "also write the report to this file")
	flag.DurationVar(&cfg.mountTimeout, "mount-timeout", 3*time.Minute, "longest wait for a mount")
	flag.DurationVar(&cfg.stepTimeout, "step-timeout", 5*time.Minute, "longest single measurement")
	flag.IntVar(&cfg.primeMiB, "prime-mib", 3072, "MiB of memory to touch and free before figures 1, 5 and 7, so that every tool starts with memory the VM holds (0: off)")
	flag.Parse()
	if cfg.work == "" || cfg.data == "" || cfg.manifests == "" || cfg.base == "" {
		fmt.Fprintln(os.Stderr, "driver: want -work, -data, -manifests and -base")
		exit(2)
	}
	cfg.base = strings.TrimSuffix(cfg.base, "/")
	cfg.tools = strings.Split(tools, ",")
	cfg.figures = strings.Split(figures, ",")
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		exit(1)
	}
}

// exit ends the program with code; see bench/gen for why not os.Exit.
func exit(code int) { syscall.Exit(code) }

func run(cfg config) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := os.MkdirAll(filepath.Join(cfg.work, "logs"), 0o755); err != nil {
		return err
	}
	r := &runner{ctx: ctx, cfg: cfg, live: map[*mount]bool{}, res: newResults()}
	defer r.removeKept()
	defer r.stopAll()
	r.originBytes()
	for round := 1; round <= cfg.rounds && ctx.Err() == nil; round++ {
		fmt.Fprintf(os.Stderr, "== round %d of %d\n", round, cfg.rounds)
		r.round(round)
	}
	r.stopAll()
	var md bytes.Buffer
	r.res.write(&md, machine(cfg), cfg.rounds)
	os.Stdout.Write(md.Bytes())
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, md.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "driver: report written to", cfg.out)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; the report holds the rounds done")
	}
	return nil
}

// round measures every selected figure once for every selected tool.
func (r *runner) round(round int) {
	fig := func(f string) bool { return slices.Contains(r.cfg.figures, f) && r.ctx.Err() == nil }
	mounts := []string{}
	for _, t := range []string{toolFerry, toolBound, toolRclone} {
		if slices.Contains(r.cfg.tools, t) {
			mounts = append(mounts, t)
		}
	}
	curl := slices.Contains(r.cfg.tools, toolCurl)
	step := func(name string) { fmt.Fprintf(os.Stderr, "-- %s\n", name) }
	if fig("1") {
		for _, t := range mounts {
			step("figures 1, 2, 6: " + t)
			r.figSequential(t, round)
		}
		if curl {
			step("figure 1: curl")
			r.curlSequential()
		}
	}
	if fig("3") {
		for _, t := range mounts {
			step("figure 3: " + t)
			r.figRandom(t)
		}
		if curl {
			step("figure 3: curl")
			r.curlRandom(round)
		}
	}
	if fig("4") {
		for _, t := range mounts {
			step("figure 4: " + t)
			r.figTail(t)
		}
		if curl {
			step("figure 4: curl")
			r.curlTail()
		}
	}
	if fig("5") {
		for _, t := range mounts {
			step("figure 5: " + t)
			r.figSmall(t, round)
		}
		if curl {
			step("figure 5: curl")
			r.curlSmall()
		}
	}
	if fig("7") && slices.Contains(mounts, toolFerry) {
		step("figure 7: ferry")
		r.figFill()
		if curl {
			step("figure 7: curl")
			r.curlFill()
		}
	}
	if fig("8") {
		for _, t := range mounts {
			if t != toolRclone {
				step("figure 8: " + t)
				r.figMillion(t)
			}
		}
	}
}

// machine describes the machine and the versions measured.
func machine(cfg config) []string {
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return []string{
		"date: " + time.Now().UTC().Format("2006-01-02 15:04 UTC") + "; load average at the end: " + load +
			" (other work on the machine makes every figure noisy)",
		fmt.Sprintf("machine: %d CPUs (%s), %s memory, kernel %s", runtime.NumCPU(), cpu, mem, out("uname", "-r")),
		"ferry: commit " + out("git", "describe", "--always", "--dirty") + ", default flags (block size 64 KiB, 8 connections)",
		"rclone: " + out("rclone", "version") + "; nginx: " + nginxVersion() + "; fio: " + out("fio", "--version") + "; curl: " + out("curl", "--version"),
		memory(cfg.primeMiB),
	}
}

// memory says how the run treats memory the VM's host takes back (see
// bench/run.sh, "memory", and primeMemory).
func memory(mib int) string {
	s := "memory: "
	b, err := os.ReadFile("/sys/module/page_reporting/parameters/page_reporting_order")
	switch order := strings.TrimSpace(string(b)); {
	case err != nil:
		s += "no free page reporting to a host"
	case order == "11":
		s += "free page reporting to the VM's host paused during the run (page_reporting_order 11)"
	default:
		s += "free page reporting to the VM's host on (page_reporting_order " + order + "): tools that write new pages pay host faults"
	}
	if mib > 0 {
		s += fmt.Sprintf("; %d MiB touched and freed before figures 1, 5 and 7 (-prime-mib)", mib)
	}
	return s
}

func nginxVersion() string {
	b, _ := exec.Command("nginx", "-v").CombinedOutput() // prints to stderr
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(b)), "nginx version:"))
}
