package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// hookEvent is one transfer that ended, for --on-complete.
type hookEvent struct {
	kind  string // "download" or "upload"
	path  string // relative to the mountpoint
	state string // complete, failed; sent, failed
	size  int64
	url   string
	err   error
}

// hookRunner runs the --on-complete command for each event, one at a time
// and in order, like BITS' notification command line. The command runs
// through /bin/sh -c with the event in its environment; a failure is
// logged, never fatal. It owns one goroutine, stopped by close.
type hookRunner struct {
	cmd        string
	mountpoint string
	log        *slog.Logger
	timeout    time.Duration // a command running longer is killed

	events chan hookEvent
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// hookQueue bounds the events waiting for the command; more are dropped
// with a warning rather than hold up transfers.
const hookQueue = 4096

func newHookRunner(cmd, mountpoint string, log *slog.Logger) *hookRunner {
	h := &hookRunner{cmd: cmd, mountpoint: mountpoint, log: log, timeout: 10 * time.Minute,
		events: make(chan hookEvent, hookQueue)}
	h.wg.Add(1)
	go h.loop()
	return h
}

// send queues an event; it never blocks.
func (h *hookRunner) send(e hookEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	select {
	case h.events <- e:
	default:
		h.log.Warn("ferry: --on-complete is behind; event dropped", "path", e.path, "state", e.state)
	}
}

// close runs what is queued, then stops.
func (h *hookRunner) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.events)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hookRunner) loop() {
	defer h.wg.Done()
	for e := range h.events {
		h.run(e)
	}
}

// run runs the command for one event.
func (h *hookRunner) run(e hookEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", h.cmd)
	c.Env = append(os.Environ(), hookEnv(e, h.mountpoint)...)
	c.Stdin = nil
	out, err := c.CombinedOutput()
	if err != nil {
		h.log.Warn("ferry: --on-complete failed", "path", e.path, "state", e.state, "err", err, "output", string(truncate(out, 2048)))
		return
	}
	h.log.Debug("ferry: --on-complete ran", "path", e.path, "state", e.state)
}

// hookEnv is the environment the command sees (README, "--on-complete").
func hookEnv(e hookEvent, mountpoint string) []string {
	errText := ""
	if e.err != nil {
		errText = e.err.Error()
	}
	return []string{
		"FERRY_EVENT=" + e.kind,
		"FERRY_PATH=" + filepath.Join(mountpoint, e.path),
		"FERRY_RELPATH=" + e.path,
		"FERRY_STATE=" + e.state,
		"FERRY_SIZE=" + sizeText(e.size),
		"FERRY_URL=" + e.url,
		"FERRY_ERROR=" + errText,
		"FERRY_MOUNTPOINT=" + mountpoint,
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], fmt.Sprintf("… (%d bytes)", len(b))...)
	}
	return b
}

// sizeText is a size for the environment; empty when not known.
func sizeText(n int64) string {
	if n < 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}
