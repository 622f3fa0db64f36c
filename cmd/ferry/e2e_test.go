package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/fs"
	"ferry/internal/testutil"
	"ferry/origin"
)

// The end-to-end tests run the real binary, built once with -race into a
// temporary directory. This process becomes a child subreaper, so a daemon
// whose parent (the ferry that started it) exited is re-parented here and
// can be waited for: no test leaves a process behind.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER): %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ferryBinary builds the ferry binary with -race (go test -race does not
// reach a subprocess) once per test run.
func ferryBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "ferry-e2e-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "ferry")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// result is a finished ferry run.
type result struct {
	code           int
	stdout, stderr string
}

// ferry runs the binary to completion. Output goes to files, not pipes: a
// daemon child inherits nothing of them, but a pipe would keep Wait
// waiting if it did.
func ferry(t *testing.T, args ...string) result {
	t.Helper()
	return ferryIn(t, "", args...)
}

// ferryIn is ferry run in the working directory wd.
func ferryIn(t *testing.T, wd string, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	outF, _ := os.Create(filepath.Join(dir, "stdout"))
	errF, _ := os.Create(filepath.Join(dir, "stderr"))
	defer outF.Close()
	defer errF.Close()
	cmd := exec.Command(ferryBinary(t), args...)
	cmd.Dir = wd
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir())
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running ferry %q: %v", args, err)
	}
	stdout, _ := os.ReadFile(outF.Name())
	stderr, _ := os.ReadFile(errF.Name())
	r := result{code: cmd.ProcessState.ExitCode(), stdout: string(stdout), stderr: string(stderr)}
	t.Logf("ferry %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "WARNING: DATA RACE") {
		t.Errorf("ferry %q panicked or raced", args)
	}
	return r
}

func assertNotMounted(t *testing.T, dir string) {
	t.Helper()
	if ok, err := fs.IsFerryMount(dir); err != nil || ok {
		t.Errorf("%s: still a ferry mount (%v)", dir, err)
	}
}

var pidRE = regexp.MustCompile(`\(pid (\d+),`)

// mountDaemon runs `ferry mount --daemon` and returns the daemon's pid once
// the mount is live. Cleanup unmounts and reaps it if the test did not.
func mountDaemon(t *testing.T, wd, manifestPath, mnt string, extra ...string) int {
	t.Helper()
	args := append([]string{"mount", "--daemon", "--log-level", "debug", manifestPath, mnt}, extra...)
	r := ferryIn(t, wd, args...)
	if !filepath.IsAbs(mnt) {
		mnt = filepath.Join(wd, mnt)
	}
	if r.code != 0 {
		t.Fatalf("ferry mount --daemon: exit %d: %s", r.code, r.stderr)
	}
	m := pidRE.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no pid in %q", r.stderr)
	}
	pid, _ := strconv.Atoi(m[1])
	t.Cleanup(func() {
		if ok, _ := fs.IsFerryMount(mnt); ok {
			t.Errorf("%s left mounted; detaching", mnt)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	})
	return pid
}

// waitExit reaps the daemon (re-parented to this subreaper) and returns its
// exit status.
func waitExit(t *testing.T, pid int) syscall.WaitStatus {
	t.Helper()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("wait4(%d): %v", pid, err)
		}
		return ws
	}
}

// writeManifest writes a manifest of the given files served by srv.
func writeManifest(t *testing.T, path, base string, files map[string]int64) {
	t.Helper()
	type entry struct {
		Path string `json:"path"`
		URL  string `json:"url"`
		Size int64  `json:"size"`
	}
	var m struct {
		Files []entry `json:"files"`
	}
	for p, size := range files {
		m.Files = append(m.Files, entry{Path: p, URL: base + "/" + p, Size: size})
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestE2EBadManifest(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	content := `{
  "files": [
    {"path": "ok.bin", "url": "http://127.0.0.1:1/ok.bin", "size": 10},
    {"path": "../escape", "url": "http://127.0.0.1:1/x", "size": 10}
  ]
}
`
	if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	for _, daemon := range []bool{false, true} {
		args := []string{"mount", "--cache-dir", t.TempDir(), bad, mnt}
		if daemon {
			args = append([]string{"mount", "--daemon"}, args[1:]...)
		}
		r := ferry(t, args...)
		if r.code != exitManifest {
			t.Errorf("daemon=%v: exit %d, want %d", daemon, r.code, exitManifest)
		}
		if !strings.Contains(r.stderr, bad+":4:") || !strings.Contains(r.stderr, "path") {
			t.Errorf("daemon=%v: the error does not name %s:4 and the field: %q", daemon, bad, r.stderr)
		}
		assertNotMounted(t, mnt)
	}
	r := ferry(t, "mount", filepath.Join(dir, "missing.json"), mnt)
	if r.code != exitManifest || !strings.Contains(r.stderr, "missing.json") {
		t.Errorf("missing manifest: exit %d, %q", r.code, r.stderr)
	}
	r = ferry(t, "mount", "--block-size", "3M", bad, mnt)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--block-size") {
		t.Errorf("bad flag: exit %d, %q", r.code, r.stderr)
	}
	assertNotMounted(t, mnt)
}

func TestE2EDaemonMountReadUnmount(t *testing.T) {
	requireFUSE(t)
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	srv.PutGenerated("data/a.bin", 3<<20+7, 1)
	srv.PutGenerated("b.bin", 12345, 2)
	// Relative paths: the daemon leaves its working directory once live.
	wd := t.TempDir()
	writeManifest(t, filepath.Join(wd, "m.json"), base, map[string]int64{"data/a.bin": 3<<20 + 7, "b.bin": 12345})
	mnt, cacheDir := filepath.Join(wd, "mnt"), filepath.Join(wd, "cache")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	pid := mountDaemon(t, wd, "m.json", "mnt", "--cache-dir", "cache")

	// --daemon returned: the mount is live now, no polling.
	if ok, err := fs.IsFerryMount(mnt); err != nil || !ok {
		t.Fatalf("not mounted after --daemon returned: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "data/a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3<<20+7)
	origin.GeneratedBytes(1, 0, want)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Error("data/a.bin differs from the origin")
	}
	buf := make([]byte, 200)
	n, err := syscall.Getxattr(filepath.Join(mnt, "b.bin"), "user.ferry.url", buf)
	if err != nil || string(buf[:n]) != base+"/b.bin" {
		t.Errorf("user.ferry.url = %q, %v", buf[:n], err)
	}

	r := ferry(t, "unmount", mnt)
	if r.code != 0 {
		t.Fatalf("ferry unmount: exit %d: %s", r.code, r.stderr)
	}
	if ws := waitExit(t, pid); !ws.Exited() || ws.ExitStatus() != 0 {
		log, _ := os.ReadFile(filepath.Join(cacheDir, "ferry.log"))
		t.Errorf("daemon ended with %v; log:\n%s", ws, log)
	}
	assertNotMounted(t, mnt)
	log, err := os.ReadFile(filepath.Join(cacheDir, "ferry.log"))
	if err != nil || !bytes.Contains(log, []byte("fs: mounted")) {
		t.Errorf("daemon log: %v\n%s", err, log)
	}
}

func TestE2ESignalUnmounts(t *testing.T) {
	requireFUSE(t)
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	srv.PutGenerated("x.bin", 1<<20, 3)
	man := filepath.Join(t.TempDir(), "m.json")
	writeManifest(t, man, base, map[string]int64{"x.bin": 1 << 20})
	mnt := t.TempDir()
	pid := mountDaemon(t, "", man, mnt)
	if ok, err := fs.IsFerryMount(mnt); err != nil || !ok {
		t.Fatalf("not mounted after --daemon returned: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if ws := waitExit(t, pid); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("daemon ended with %v after SIGTERM, want exit 0", ws)
	}
	assertNotMounted(t, mnt)
}

func requireFUSE(t *testing.T) { testutil.RequireFUSE(t) }
