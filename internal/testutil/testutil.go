// Package testutil holds what the tests of several packages share: the
// FUSE requirement, a logger that writes to the test log, and a goroutine
// leak check. Only tests import it. Not a stable API.
package testutil

import (
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireFUSE skips the test when /dev/fuse cannot be opened, except under
// CI=true, where a missing FUSE is a failure: CI must run these tests.
func RequireFUSE(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("FUSE is required under CI=true: %v", err)
	}
	t.Skipf("skipping: FUSE not available: %v", err)
}

// Logger sends records to t.Log: warnings and up normally, everything
// under -v. Records logged after the test ended are dropped.
func Logger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	w := &logWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// CheckLeaks fails t when, after every later cleanup ran, goroutines whose
// stacks contain one of markers are still alive 10 seconds on. Register it
// first so that it runs last. Tests using it must not run in parallel.
func CheckLeaks(t testing.TB, markers ...string) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked := Leaked(markers...)
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// Leaked returns the stacks of the goroutines that contain one of markers,
// leaving out test goroutines.
func Leaked(markers ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "\ntesting.tRunner(") {
			continue
		}
		for _, m := range markers {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
