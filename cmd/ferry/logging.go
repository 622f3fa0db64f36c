package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Repeating warnings and errors (an origin that is down makes every
// transfer fail the same way, again and again) are rate-limited per
// message: logBurst records of one level and message pass per logWindow;
// the rest are dropped and counted, and the count rides on the next record
// of that kind that passes, as the attribute "suppressed".
const (
	logBurst  = 10
	logWindow = time.Minute
)

// newLogger builds the mount's logger: text (slog's key=value) or JSON
// lines on w, at level and above, rate-limited.
func newLogger(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, hopts)
	case "json":
		h = slog.NewJSONHandler(w, hopts)
	default:
		return nil, fmt.Errorf("%q: want text or json", format)
	}
	return slog.New(newRateLimited(h, logBurst, logWindow, time.Now)), nil
}

// rateLimited passes every record below Warn, and at most burst records
// of one level and message per window above.
type rateLimited struct {
	next slog.Handler
	st   *limitState // shared by the handlers WithAttrs and WithGroup derive
}

type limitState struct {
	burst  int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	kinds map[string]*logKind
}

// logKind counts the records of one level and message in the current
// window.
type logKind struct {
	start   time.Time
	passed  int
	dropped int
}

func newRateLimited(next slog.Handler, burst int, window time.Duration, now func() time.Time) *rateLimited {
	return &rateLimited{next: next, st: &limitState{burst: burst, window: window, now: now, kinds: map[string]*logKind{}}}
}

func (h *rateLimited) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *rateLimited) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	pass, suppressed := h.st.admit(r.Level.String() + "\x00" + r.Message)
	if !pass {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

// admit reports whether a record of kind key passes, and how many of its
// kind were dropped since the last one that passed.
func (s *limitState) admit(key string) (pass bool, suppressed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	k := s.kinds[key]
	if k == nil {
		if len(s.kinds) >= 4096 {
			s.forgetOld(now)
		}
		k = &logKind{start: now}
		s.kinds[key] = k
	}
	if now.Sub(k.start) >= s.window {
		k.start, k.passed = now, 0
	}
	if k.passed >= s.burst {
		k.dropped++
		return false, 0
	}
	k.passed++
	suppressed, k.dropped = k.dropped, 0
	return true, suppressed
}

// forgetOld drops the kinds whose window ended with nothing dropped.
// s.mu is held.
func (s *limitState) forgetOld(now time.Time) {
	for key, k := range s.kinds {
		if now.Sub(k.start) >= s.window && k.dropped == 0 {
			delete(s.kinds, key)
		}
	}
}

func (h *rateLimited) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &rateLimited{next: h.next.WithAttrs(attrs), st: h.st}
}

func (h *rateLimited) WithGroup(name string) slog.Handler {
	return &rateLimited{next: h.next.WithGroup(name), st: h.st}
}
