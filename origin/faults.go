package origin

import (
	"context"
	"sync"
	"time"
)

// Faults describes how a server misbehaves on a path. The zero value
// behaves. Knobs combine; where they collide, Down wins over everything,
// then Latency, then Status, then HTMLError, then the rest.
type Faults struct {
	// Status, when not 0, answers GET, HEAD and PUT with this status and a
	// short text body instead of serving them (the PUT body is not read).
	Status int
	// StatusCount limits Status to the next N requests; 0 means every
	// request while the setting stands.
	StatusCount int
	// RetryAfter is sent as the Retry-After header with Status.
	RetryAfter string

	// NoRange ignores Range and If-Range: every GET gets 200 and the whole
	// body, as from a server without range support.
	NoRange bool
	// IgnoreIfRange honours Range even when If-Range does not match, as a
	// buggy server does: the client gets bytes of the new version.
	IgnoreIfRange bool

	// ResetAfter resets the TCP connection after this many body bytes: of a
	// GET response, or of a PUT request body read by the server. Only
	// bodies longer than that are cut. A negative value cuts before the
	// first body byte (after the response headers of a GET). 0 is off.
	// Before the reset the server waits (2 s at most) until the client
	// acknowledged what was sent, so a reading client gets exactly
	// ResetAfter bytes.
	ResetAfter int64
	// ResetCount limits ResetAfter to the next N cuts; 0 means always.
	ResetCount int

	// ShortBody declares the whole requested length (Content-Length and
	// Content-Range) but sends half of it, then closes the connection in
	// order (FIN), so the client sees an unexpected EOF.
	ShortBody bool
	// LongBody sends 4096 bytes more than the response declares in
	// Content-Range (or than the object size for a 200), with no
	// Content-Length (chunked), so only a client that checks the length
	// notices.
	LongBody bool
	// WrongContentRange answers a range request with a 206 for another
	// range: the requested one shifted by its own length (one block),
	// forward when that fits in the object, else backward, else by one byte;
	// when the request covers the whole object the total size is off by
	// one instead. The body is consistent with the Content-Range sent.
	WrongContentRange bool
	// ContentEncoding is sent as the Content-Encoding header of GET and
	// HEAD responses, while the body stays unencoded.
	ContentEncoding string
	// HTMLError answers every GET and HEAD with 200 and a small text/html
	// error page, as a captive portal or a misconfigured proxy does.
	HTMLError bool

	// Latency delays the response headers (and the reading of a PUT body).
	Latency time.Duration
	// BytesPerSec caps each response body (and each PUT body read).
	BytesPerSec int64
	// TotalBytesPerSec caps all bodies of the path together; with path ""
	// it caps every path without its own setting together.
	TotalBytesPerSec int64

	// Down closes the connection with a reset without any response, as a
	// network loss does. See also Server.SetDown.
	Down bool
}

// faultRule is the live state of one SetFaults call. Counters are guarded
// by Server.mu; f and shared never change.
type faultRule struct {
	f          Faults
	statusLeft int
	resetLeft  int
	shared     *limiter // nil unless f.TotalBytesPerSec > 0
}

// SetFaults sets the faults of path, replacing its previous setting. Path ""
// sets the faults of every path that has no setting of its own; a path's own
// setting, even the zero Faults, replaces the "" one entirely. Counts
// (StatusCount, ResetCount) start afresh.
func (s *Server) SetFaults(path string, f Faults) {
	f.StatusCount = max(f.StatusCount, 0)
	f.ResetCount = max(f.ResetCount, 0)
	rule := &faultRule{f: f, statusLeft: f.StatusCount, resetLeft: f.ResetCount}
	if f.TotalBytesPerSec > 0 {
		rule.shared = newLimiter(f.TotalBytesPerSec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[cleanPath(path)] = rule
}

// ClearFaults removes every fault setting and ends SetDown.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	clear(s.faults)
	s.mu.Unlock()
	s.down.Store(false)
}

// ruleFor returns the rule that applies to path, or nil.
func (s *Server) ruleFor(path string) *faultRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.faults[path]; ok {
		return r
	}
	return s.faults[""]
}

// takeStatus reports whether the Status fault of rule applies to one more
// request, and counts it.
func (s *Server) takeStatus(rule *faultRule) bool {
	if rule == nil || rule.f.Status == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rule.f.StatusCount == 0 {
		return true
	}
	if rule.statusLeft > 0 {
		rule.statusLeft--
		return true
	}
	return false
}

// takeReset reports whether the ResetAfter fault of rule may cut one more
// body, and counts it.
func (s *Server) takeReset(rule *faultRule) bool {
	if rule == nil || rule.f.ResetAfter == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rule.f.ResetCount == 0 {
		return true
	}
	if rule.resetLeft > 0 {
		rule.resetLeft--
		return true
	}
	return false
}

// limiter paces bytes at a fixed rate by handing out send times: each
// reservation starts where the previous one ended, or now if that is past,
// so idle time never builds up a burst.
type limiter struct {
	rate int64 // bytes per second, > 0

	mu   sync.Mutex
	next time.Time // when the next reservation may start
}

func newLimiter(rate int64) *limiter {
	return &limiter{rate: rate}
}

// reserve books n bytes and returns when they may be sent.
func (l *limiter) reserve(n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = at.Add(time.Duration(float64(n) / float64(l.rate) * float64(time.Second)))
	return at
}

// chunk returns a write size that keeps about 16 steps per second at rate,
// between 1 byte and 16 KiB.
func chunkFor(rate int64) int {
	return int(min(max(rate/16, 1), 16<<10))
}

// sleepUntil waits until t or until ctx ends, and returns ctx's error then.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
