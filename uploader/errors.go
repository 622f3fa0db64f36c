package uploader

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"ferry/internal/retry"
)

// statusError is an HTTP answer that is not a success.
type statusError struct {
	code       int
	msg        string // what the server said, trimmed
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.code, http.StatusText(e.code))
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

// permanentError marks an error that retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

func isPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

// errUnsure marks a transient failure after the whole body was sent: the
// server may have stored the file without us hearing about it.
var errUnsure = errors.New("no answer after the whole body was sent")

// errVerify marks staged data that does not match its recorded digest.
var errVerify = errors.New("uploader: staged data does not match its recorded SHA-256 (lost in a crash or power loss?); write the file again")

// classify turns a non-2xx answer into a transient or permanent error:
// 408, 425, 429 and 5xx are retried (429 and 503 after Retry-After), other
// statuses are permanent.
func classify(resp *http.Response) error {
	se := &statusError{code: resp.StatusCode, msg: readMessage(resp.Body)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		se.retryAfter = retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return se
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooEarly:
		return se
	case resp.StatusCode >= 500:
		se.retryAfter = retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return se
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return permanent(fmt.Errorf("%w (redirects are not followed for uploads; Location %q)", se, resp.Header.Get("Location")))
	}
	return permanent(se)
}

// readMessage returns the start of an error body, on one line.
func readMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
