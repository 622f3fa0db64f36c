package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ferry/internal/retry"
)

// userAgent names ferry to origins.
const userAgent = "ferry/0.1"

// newClient builds the default client: conns connections per host, no
// transparent compression (a ranged body must be the bytes asked for), and a
// redirect policy that never sends the manifest's headers to another host.
func newClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:       conns,
		MaxIdleConnsPerHost:   conns,
		MaxIdleConns:          4 * conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, CheckRedirect: checkRedirect}
}

// checkRedirect follows up to 10 redirects and drops every header but the
// range ones when the host (name or port) changes.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("fetcher: stopped after 10 redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		for k := range req.Header {
			switch k {
			case "Range", "If-Range", "User-Agent":
			default:
				req.Header.Del(k)
			}
		}
	}
	return nil
}

// newRequest builds a request for url (fl's or a mirror's) with the
// manifest's headers.
func (fl *File) newRequest(ctx context.Context, method, url string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, permanent(fmt.Errorf("fetcher: %s: %w", url, err))
	}
	for k, vs := range fl.spec.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("User-Agent", userAgent)
	return req, nil
}

// contentRange is a parsed "bytes first-last/total" header.
type contentRange struct{ first, last, total int64 }

// parseContentRange parses a Content-Range header of a 206 response. A total
// of "*" is refused: ferry needs to know the size.
func parseContentRange(s string) (contentRange, error) {
	var cr contentRange
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return cr, fmt.Errorf("Content-Range %q: want \"bytes FIRST-LAST/TOTAL\"", s)
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return cr, fmt.Errorf("Content-Range %q: no total", s)
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return cr, fmt.Errorf("Content-Range %q: no range", s)
	}
	var err1, err2, err3 error
	cr.first, err1 = strconv.ParseInt(first, 10, 64)
	cr.last, err2 = strconv.ParseInt(last, 10, 64)
	cr.total, err3 = strconv.ParseInt(total, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || cr.first < 0 || cr.last < cr.first || cr.total <= cr.last {
		return cr, fmt.Errorf("Content-Range %q: not a valid range", s)
	}
	return cr, nil
}

// remoteOf reads the validator of a response.
func remoteOf(resp *http.Response, size int64) Remote {
	return Remote{Size: size, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
}

// ifRange is the If-Range value for a pinned version: a strong ETag, else the
// Last-Modified date, else nothing (then a change shows only in the size or
// in a new validator on a response).
func ifRange(r Remote) string {
	if r.ETag != "" && !strings.HasPrefix(r.ETag, "W/") {
		return r.ETag
	}
	return r.LastModified
}

// sameVersion reports whether a response's validator fits the pinned one.
// Validators the response lacks are not held against it; the size always
// counts.
func sameVersion(pinned, got Remote) bool {
	if pinned.Size != got.Size {
		return false
	}
	if pinned.ETag != "" && got.ETag != "" {
		return pinned.ETag == got.ETag
	}
	if pinned.LastModified != "" && got.LastModified != "" {
		return pinned.LastModified == got.LastModified
	}
	return true
}

// statusError is an HTTP status that is not what was asked for.
type statusError struct {
	code       int
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d %s", e.code, http.StatusText(e.code))
}

// StatusCode returns the HTTP status of a failed request, or 0.
func StatusCode(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}

// classifyStatus turns an unexpected status into a permanent or transient
// error.
func classifyStatus(resp *http.Response) error {
	se := &statusError{code: resp.StatusCode}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		se.retryAfter = retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return se
	case http.StatusRequestTimeout, http.StatusTooEarly:
		return se
	}
	if resp.StatusCode >= 500 {
		return se
	}
	return permanent(se)
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

// stallReader cancels its request when no byte arrives for a while.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

// probe learns the size (and validator) of fl's object without its body: a
// HEAD, or when the origin refuses HEAD, a one-byte ranged GET.
func (f *Fetcher) probe(ctx context.Context, fl *File) (Remote, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(f.ctx, cancel)
	defer stop()
	req, err := fl.newRequest(ctx, http.MethodHead, fl.spec.URL)
	if err != nil {
		return Remote{}, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return Remote{}, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 && resp.Header.Get("Content-Encoding") == "" {
		return remoteOf(resp, resp.ContentLength), nil
	}
	req, err = fl.newRequest(ctx, http.MethodGet, fl.spec.URL)
	if err != nil {
		return Remote{}, err
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err = f.client.Do(req)
	if err != nil {
		return Remote{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return Remote{}, err
		}
		return remoteOf(resp, cr.total), nil
	case http.StatusOK:
		if resp.ContentLength >= 0 {
			return remoteOf(resp, resp.ContentLength), nil
		}
		return Remote{}, permanent(errors.New("origin gives no size (no Content-Length, no Range support); declare \"size\" in the manifest"))
	case http.StatusRequestedRangeNotSatisfiable:
		// An empty object has no byte 0.
		if cr := resp.Header.Get("Content-Range"); cr == "bytes */0" {
			return remoteOf(resp, 0), nil
		}
	}
	return Remote{}, classifyStatus(resp)
}
