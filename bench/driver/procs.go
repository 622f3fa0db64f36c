package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// mount is one live mount made by a child process of the driver.
type mount struct {
	tool  string
	dir   string // mountpoint
	cache string // cache directory ("" when the tool has none)
	// keepCache defers the removal of cache to the end of the run (see
	// mountTool).
	keepCache bool
	log       string // the child's stdout and stderr
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the child has been reaped
	ready     time.Duration // from start to a live mount
}

// runner owns every mount and child process of a run, so that an error or a
// signal never leaves one behind.
type runner struct {
	ctx  context.Context
	cfg  config
	mu   sync.Mutex
	res  *results
	live map[*mount]bool
	seq  int

	logOff int64    // how much of the access log originBytes has read
	kept   []string // cache directories to remove at the end of the run
}

// startMount starts args as a child serving a mount at dir and waits until
// the mount is live (and, when raRaised, its readahead raised to 1 MiB).
func (r *runner) startMount(tool, dir, cache string, raRaised bool, args ...string) (*mount, error) {
	if err := ensureUnmounted(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.seq++
	logPath := filepath.Join(r.cfg.work, "logs", fmt.Sprintf("%03d-%s.log", r.seq, tool))
	r.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C of the terminal reaches the driver,
	// which then unmounts in order, not the mount processes directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", tool, err)
	}
	m := &mount{tool: tool, dir: dir, cache: cache, log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(m.exited)
	}()
	r.mu.Lock()
	r.live[m] = true
	r.mu.Unlock()
	if err := r.waitLive(m, raRaised, start); err != nil {
		r.stop(m)
		return nil, err
	}
	m.ready = time.Since(start)
	return m, nil
}

// waitLive waits for m's mount in mountinfo, its readahead, and a stat of
// its root answered by the file system.
func (r *runner) waitLive(m *mount, raRaised bool, start time.Time) error {
	deadline := start.Add(r.cfg.mountTimeout)
	dev := ""
	for dev == "" {
		if d, ok := mountDev(m.dir); ok {
			dev = d
			break
		}
		select {
		case <-m.exited:
			return fmt.Errorf("%s exited before mounting: %s", m.tool, tail(m.log))
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no mount after %s: %s", m.tool, r.cfg.mountTimeout, tail(m.log))
		}
	}
	for raRaised {
		b, _ := os.ReadFile("/sys/class/bdi/" + dev + "/read_ahead_kb")
		if strings.TrimSpace(string(b)) == "1024" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: read_ahead_kb of %s not raised: %q", m.tool, dev, b)
		}
		time.Sleep(time.Millisecond)
	}
	return r.timed(time.Until(deadline), func() error {
		_, err := os.Stat(m.dir)
		return err
	})
}

// timed runs fn, giving up after d or when the run is interrupted. fn may
// block in a FUSE call; when it does not return, it is left behind and
// returns once the mount is torn down.
func (r *runner) timed(d time.Duration, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("timed out after %s", d)
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// stop ends m: SIGTERM (every tool unmounts on it), then, if it lingers,
// a lazy unmount and SIGKILL. Its cache directory is removed.
func (r *runner) stop(m *mount) {
	r.mu.Lock()
	delete(r.live, m)
	r.mu.Unlock()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		fmt.Fprintf(os.Stderr, "driver: %s did not exit on SIGTERM; detaching %s and killing pid %d\n", m.tool, m.dir, m.cmd.Process.Pid)
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
		m.cmd.Process.Kill()
		<-m.exited
	}
	if err := ensureUnmounted(m.dir); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
	}
	switch {
	case m.cache == "":
	case m.keepCache:
		r.mu.Lock()
		r.kept = append(r.kept, m.cache)
		r.mu.Unlock()
	default:
		os.RemoveAll(m.cache)
	}
}

// removeKept removes the cache directories whose removal stop deferred.
func (r *runner) removeKept() {
	r.mu.Lock()
	kept := r.kept
	r.kept = nil
	r.mu.Unlock()
	for _, dir := range kept {
		os.RemoveAll(dir)
	}
}

// stopAll stops every live mount (at exit, also after a failure or signal).
func (r *runner) stopAll() {
	r.mu.Lock()
	var ms []*mount
	for m := range r.live {
		ms = append(ms, m)
	}
	r.mu.Unlock()
	for _, m := range ms {
		r.stop(m)
	}
}

// ensureUnmounted detaches whatever is mounted at dir.
func ensureUnmounted(dir string) error {
	for range 3 {
		if _, ok := mountDev(dir); !ok {
			return nil
		}
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return nil
}

// mountDev returns the major:minor of the mount at dir, if there is one.
func mountDev(dir string) (string, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	dev, found := "", false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			dev, found = f[2], true // the last one is on top
		}
	}
	return dev, found
}

// command runs a child in its own process group, killed as a group when
// ctx ends or after d; it returns the wall time and the child's output.
func (r *runner) command(d time.Duration, name string, args ...string) (time.Duration, []byte, *os.ProcessState, error) {
	ctx, cancel := context.WithTimeout(r.ctx, d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil && r.ctx.Err() == nil {
		err = fmt.Errorf("%s: timed out after %s", name, d)
	} else if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return took, out.Bytes(), cmd.ProcessState, err
}

// status returns a field of /proc/PID/status in MiB (VmHWM, VmRSS).
func status(pid int, field string) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v) // "123456 kB"
			kb, err := strconv.ParseFloat(f[0], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// dropCaches writes back dirty pages and drops the page cache, so that the
// next read of a mount comes from its daemon (the origin's files live in
// tmpfs, which is not dropped).
func (r *runner) dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// primeMemory touches cfg.primeMiB of anonymous memory in a child process
// and frees it again, so that the next measurement starts with memory the
// VM holds. On a VM that hands free memory back to its host (virtio_balloon
// free page reporting, DAMON pageout), the first write into a page the host
// took back costs a fault in the host: 1 GiB written by curl -o took
// 3.4–6.4 s after the machine sat idle and 1.1–1.3 s right after another
// run had freed its memory, so whichever tool a round measured first paid
// for the others. bench/run.sh pauses the reporting, and then primed memory
// stays the VM's. With reporting on, the kernel hands the freed pages back
// within seconds, and that work slows whatever runs meanwhile: with every
// mount primed, figure 4 went from 0.67 to 4.44 ms (0.94–17.74), so only
// the figures that write a lot of new memory (1, 5, 7) are primed. A child,
// because a child the driver starts later inherits the driver's peak RSS in
// its rusage (the exec replaces the memory it shared).
func (r *runner) primeMemory() error {
	if r.cfg.primeMiB <= 0 {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if out, err := exec.Command(exe, primeArg, strconv.Itoa(r.cfg.primeMiB)).CombinedOutput(); err != nil {
		return fmt.Errorf("prime %d MiB of memory: %v: %s", r.cfg.primeMiB, err, bytes.TrimSpace(out))
	}
	return nil
}

// primeArg as the driver's first argument runs primeChild.
const primeArg = "__prime"

// primeChild maps MiB of memory with every page populated and exits.
func primeChild(mib string) {
	n, err := strconv.Atoi(mib)
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "driver: bad prime size", mib)
		exit(2)
	}
	if _, err := syscall.Mmap(-1, 0, n<<20, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_POPULATE); err != nil {
		fmt.Fprintln(os.Stderr, "driver: mmap:", err)
		exit(1)
	}
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimSpace(b)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

var errSkipped = errors.New("skipped")
