package origin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// exchange is one request being answered. It lives in one handler
// goroutine and needs no lock.
type exchange struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context // ends when the client leaves or the server closes
	path  string
	rule  *faultRule // nil: no faults
	f     Faults     // rule.f, or the zero Faults
	start time.Time

	own    *limiter // per-response BytesPerSec, nil when uncapped
	status int      // status sent, 0 until then
	sent   int64    // body bytes sent
	recv   int64    // body bytes received
	cut    bool     // connection cut on purpose
}

func (s *Server) newExchange(ctx context.Context, w http.ResponseWriter, r *http.Request) *exchange {
	ex := &exchange{s: s, w: w, r: r, ctx: ctx, path: cleanPath(r.URL.Path), start: time.Now()}
	if ex.rule = s.ruleFor(ex.path); ex.rule != nil {
		ex.f = ex.rule.f
	}
	if ex.f.BytesPerSec > 0 {
		ex.own = newLimiter(ex.f.BytesPerSec)
	}
	return ex
}

// writeHeader sends the status line and headers, and counts the status.
func (ex *exchange) writeHeader(code int) {
	ex.status = code
	ex.s.countStatus(ex.path, code, false)
	ex.w.WriteHeader(code)
}

// write sends body bytes and counts them. It counts before writing, so that
// a client that has read the bytes finds them in Stats, and takes back what
// the connection did not accept.
func (ex *exchange) write(p []byte, content bool) (int, error) {
	ex.s.countSent(ex.path, int64(len(p)), content)
	n, err := ex.w.Write(p)
	ex.sent += int64(n)
	if n < len(p) {
		ex.s.uncountSent(ex.path, int64(len(p)-n))
	}
	return n, err
}

// answer sends a complete response with a small body of contentType; a
// HEAD gets the same headers without the body.
func (ex *exchange) answer(code int, contentType, body string) {
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		ex.writeHeader(code)
		return
	}
	h := ex.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Content-Encoding")
	ex.writeHeader(code)
	if ex.r.Method != http.MethodHead {
		// A failed write means the client left; nothing to tell it.
		_, _ = ex.write([]byte(body), false)
	}
}

// textError answers with code and a one-line text body.
func (ex *exchange) textError(code int, msg string) {
	ex.answer(code, "text/plain; charset=utf-8", msg+"\n")
}

// htmlError answers with 200 and an HTML error page (Faults.HTMLError).
func (ex *exchange) htmlError() {
	ex.answer(http.StatusOK, "text/html; charset=utf-8",
		"<!DOCTYPE html>\n<html><head><title>Error</title></head>"+
			"<body><h1>Service temporarily unavailable</h1><p>origin: injected error page</p></body></html>\n")
}

// preamble applies the faults that come before any answer: Down, Latency
// and Status. It reports whether the request is finished.
func (ex *exchange) preamble() bool {
	if ex.f.Down {
		ex.cutConn(true)
		return true
	}
	if ex.f.Latency > 0 {
		if sleepUntil(ex.ctx, time.Now().Add(ex.f.Latency)) != nil {
			ex.abandon()
			return true
		}
	}
	if ex.s.takeStatus(ex.rule) {
		if ex.f.RetryAfter != "" {
			ex.w.Header().Set("Retry-After", ex.f.RetryAfter)
		}
		ex.textError(ex.f.Status, fmt.Sprintf("origin: injected status %d", ex.f.Status))
		return true
	}
	return false
}

// paced reports whether a bandwidth cap applies.
func (ex *exchange) paced() bool {
	return ex.own != nil || ex.rule != nil && ex.rule.shared != nil
}

// step returns the size of one write or read: def, or smaller when paced.
func (ex *exchange) step(def int) int {
	if ex.own != nil {
		def = min(def, chunkFor(ex.own.rate))
	}
	if ex.rule != nil && ex.rule.shared != nil {
		def = min(def, chunkFor(ex.rule.shared.rate))
	}
	return def
}

// pace waits until n more bytes may move under the bandwidth caps. It
// returns an error when the exchange ended first.
func (ex *exchange) pace(n int) error {
	var at time.Time
	if ex.own != nil {
		at = ex.own.reserve(n)
	}
	if ex.rule != nil && ex.rule.shared != nil {
		if t := ex.rule.shared.reserve(n); t.After(at) {
			at = t
		}
	}
	return sleepUntil(ex.ctx, at)
}

// cutConn takes the connection from net/http and closes it: with a reset
// (after the client acknowledged what was sent) when rst is set, else in
// order. Without headers sent, the client gets no response at all.
func (ex *exchange) cutConn(rst bool) {
	ex.cut = true
	if ex.status == 0 {
		ex.s.countStatus(ex.path, 0, true)
	} else {
		ex.s.countReset(ex.path)
	}
	rc := http.NewResponseController(ex.w)
	if ex.status != 0 {
		// Hijack drops what net/http still buffers; push it out first.
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		// Not hijackable (HTTP/2, a recorder): returning early is the best
		// we can do; net/http closes a connection whose body fell short.
		ex.s.log.Debug("origin: cannot cut connection", "path", ex.path, "err", err)
		return
	}
	if rst {
		drainThenReset(ex.ctx, conn)
		return
	}
	_ = conn.Close()
}

// abandon ends an exchange that the client left or that Close interrupts:
// it closes the connection, so that net/http can neither send its default
// 200 for a handler that wrote nothing nor end a chunked body in order.
func (ex *exchange) abandon() {
	if conn, _, err := http.NewResponseController(ex.w).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// logDone logs the finished exchange at Debug.
func (ex *exchange) logDone() {
	ex.s.log.Debug("origin: request",
		"method", ex.r.Method, "path", ex.path, "range", ex.r.Header.Get("Range"),
		"status", ex.status, "sent", ex.sent, "received", ex.recv, "cut", ex.cut,
		"took", time.Since(ex.start))
}
