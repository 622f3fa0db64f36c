package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"ferry/origin"
)

// requireTool skips without the program, except under CI=true (.ci/run
// installs it).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v", name, err)
	}
	t.Skipf("skipping: %s not installed", name)
	return ""
}

// tmuxServer is a tmux server of the test's own (its own socket), killed
// at cleanup.
type tmuxServer struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T) *tmuxServer {
	requireTool(t, "tmux")
	tm := &tmuxServer{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	t.Cleanup(func() { exec.Command("tmux", "-S", tm.sock, "kill-server").Run() })
	return tm
}

func (tm *tmuxServer) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func (tm *tmuxServer) capture() string { return tm.run("capture-pane", "-p", "-t", "w") }

// TestE2EStatusWatchInTerminal runs `ferry status --watch` in a real
// terminal (tmux) while a file fills, and reads the screen: progress bars
// that advance, redrawn in place; Ctrl-C ends it with exit 0.
func TestE2EStatusWatchInTerminal(t *testing.T) {
	tm := newTmux(t)
	files := []ctlFile{
		{path: "tiny.txt", size: 100, seed: 12},
		{path: "big/slow.bin", size: 64 << 20, seed: 11},
	}
	_, mnt, cacheDir, pid := ctlMount(t, files, origin.Faults{BytesPerSec: 4 << 20}, "--max-conns", "2")
	// The terminal's Ctrl-C reaches ferry and the shell alike (one
	// process group); the shell only waits (its trap keeps it alive) and
	// then prints ferry's exit status, which tmux 3.3's pane_dead_status
	// does not always report.
	cmd := fmt.Sprintf("trap : INT; %s status --watch --interval 200ms %s; echo \"EXIT=$?\"", ferryBinary(t), mnt)
	tm.run("new-session", "-d", "-s", "w", "-x", "150", "-y", "30", cmd)
	tm.run("set-option", "-t", "w", "remain-on-exit", "on")

	barRE := regexp.MustCompile(`big/slow\.bin +\[(#*)(\.*)\] +(\d+)% `)
	var first []string
	waitUntil(t, "a progress bar of big/slow.bin on the screen", func() bool {
		first = barRE.FindStringSubmatch(tm.capture())
		return first != nil && len(first[2]) > 0
	})
	screen := ""
	waitUntil(t, "the bar to advance", func() bool {
		screen = tm.capture()
		m := barRE.FindStringSubmatch(screen)
		return m != nil && m[3] != first[3]
	})
	for _, want := range []string{"ferry status --watch", mnt + ": 2 files", "total", "partial"} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
	if !regexp.MustCompile(`tiny\.txt +\[#+\] +100% +100 B/100 B .* complete`).MatchString(screen) {
		t.Errorf("no full bar for tiny.txt:\n%s", screen)
	}
	// Redrawn in place, not scrolled: the header is on the screen once.
	if n := strings.Count(screen, "ferry status --watch"); n != 1 {
		t.Errorf("the header is on the screen %d times, want once:\n%s", n, screen)
	}
	t.Logf("screen:\n%s", screen)

	tm.run("send-keys", "-t", "w", "C-c")
	exitRE := regexp.MustCompile(`EXIT=(\d+)`)
	var exit []string
	waitUntil(t, "status --watch to end", func() bool {
		exit = exitRE.FindStringSubmatch(tm.capture())
		return exit != nil
	})
	if exit[1] != "0" {
		t.Errorf("status --watch exited %s after Ctrl-C, want 0 (130 is death by SIGINT)", exit[1])
	}
	unmountWait(t, mnt, cacheDir, pid)
}

// TestE2EStatusWatchPlain: without a terminal, --watch writes plain lines
// (no escape sequences), one per change.
func TestE2EStatusWatchPlain(t *testing.T) {
	files := []ctlFile{{path: "f.bin", size: 1 << 20, seed: 13}}
	_, mnt, cacheDir, pid := ctlMount(t, files, origin.Faults{})
	waitUntil(t, "f.bin complete", func() bool { return stateOf(t, mnt, "f.bin").State == "complete" })
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(ferryBinary(t), "status", "--watch", "--interval", "50ms", mnt)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	totals := regexp.MustCompile(`(?m)^\S+ ` + regexp.QuoteMeta(mnt) + `: 1 files, 1\.0 MiB of 1\.0 MiB local \(100%\)`)
	waitUntil(t, "three refreshes", func() bool {
		data, _ := os.ReadFile(out.Name())
		return len(totals.FindAll(data, -1)) >= 3
	})
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("status --watch after SIGINT: %v", err)
	}
	data, _ := os.ReadFile(out.Name())
	if strings.Contains(string(data), "\x1b") {
		t.Errorf("escape sequences in plain output:\n%q", data)
	}
	if n := strings.Count(string(data), " f.bin complete 100%"); n != 1 {
		t.Errorf("the unchanged f.bin was written %d times, want once:\n%s", n, data)
	}
	unmountWait(t, mnt, cacheDir, pid)
}
