package uploader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// errStalled ends an attempt whose server took nothing for StallTimeout.
var errStalled = errors.New("uploader: the server took no bytes for too long")

// attempt runs one upload of j and returns the ETag the server answered.
func (u *Uploader) attempt(j *job) (string, error) {
	if err := checkPath(j.rec.Path); err != nil {
		return "", permanent(err)
	}
	src, err := u.openSource(j)
	if err != nil {
		return "", err
	}
	defer src.close()
	if u.opts.Protocol == "tus" {
		return u.sendTus(j, src)
	}
	return u.sendPut(j, src)
}

// newRequest builds a request with the configured headers and a context
// that a stall cancels; call the returned stop when done.
func (u *Uploader) newRequest(j *job, method, target string, b *body) (*http.Request, func(), error) {
	ctx, cancel := context.WithCancelCause(j.ctx)
	var rd io.Reader = http.NoBody
	if b != nil && b.end > b.off {
		rd = b
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		cancel(nil)
		return nil, nil, permanent(fmt.Errorf("uploader: %w", err))
	}
	for k, vs := range u.opts.Header {
		req.Header[k] = vs
	}
	stall := time.AfterFunc(u.opts.StallTimeout, func() { cancel(errStalled) })
	if b != nil {
		req.ContentLength = b.end - b.off
		b.stall, b.stallFor = stall, u.opts.StallTimeout
	}
	return req, func() { stall.Stop(); cancel(nil) }, nil
}

// do sends req and turns a failure to get an answer into the error to
// report: errChanged, the job's cancellation, a stall, or a transient
// network error (marked errUnsure when the whole body went out).
func (u *Uploader) do(j *job, req *http.Request, b *body) (*http.Response, error) {
	resp, err := u.client.Do(req)
	if err == nil {
		return resp, nil
	}
	switch {
	case j.changed():
		return nil, errChanged
	case j.ctx.Err() != nil:
		return nil, j.ctx.Err()
	case errors.Is(context.Cause(req.Context()), errStalled):
		return nil, errStalled
	case b != nil && b.whole():
		return nil, fmt.Errorf("%w: %v", errUnsure, err)
	}
	return nil, err
}

// sendPut uploads src with one PUT.
func (u *Uploader) sendPut(j *job, src *source) (string, error) {
	target := u.URL(j.rec.Path)
	b := &body{r: src.f, end: src.size, last: src.size, total: j.rec.Size, j: j, sent: &j.it.sent}
	req, stop, err := u.newRequest(j, http.MethodPut, target, b)
	if err != nil {
		return "", err
	}
	defer stop()
	req.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(src.digest)+":")
	if src.encoding != "" {
		req.Header.Set("Content-Encoding", src.encoding)
	}
	u.setPrecondition(req, j)
	if src.size == 0 && j.changed() {
		return "", errChanged // the headers alone would complete it
	}
	start := time.Now()
	resp, err := u.do(j, req, b)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if src.encoding == "" {
			u.notePutRate(src.size, time.Since(start))
		}
		return resp.Header.Get("ETag"), nil
	case resp.StatusCode == http.StatusPreconditionFailed:
		return u.refused(j, target, resp)
	}
	return "", classify(resp)
}

// setPrecondition asks the server not to overwrite a file it has: with
// If-Match the ETag of our own earlier upload of this file, else with
// If-None-Match: *. Nothing with Overwrite.
func (u *Uploader) setPrecondition(req *http.Request, j *job) {
	switch {
	case u.opts.Overwrite:
	case j.rec.ETag != "":
		req.Header.Set("If-Match", j.rec.ETag)
	default:
		req.Header.Set("If-None-Match", "*")
	}
}

// refused handles a 412. After an attempt whose answer was lost, the file
// the server has may be our own upload: when its bytes match the commit it
// counts as sent. Otherwise the file fails with the reason.
func (u *Uploader) refused(j *job, target string, resp *http.Response) (string, error) {
	msg := readMessage(resp.Body)
	if j.unsure && j.rec.SHA256 != nil {
		if etag, same, err := u.sameRemote(j, target); err == nil && same {
			u.log.Info("uploader: the server already has this upload (an answer was lost)", "path", j.rec.Path)
			return etag, nil
		} else if err != nil {
			u.log.Warn("uploader: cannot compare with the server's copy", "path", j.rec.Path, "err", err)
		}
	}
	if j.rec.ETag != "" && !u.opts.Overwrite {
		return "", permanent(fmt.Errorf("uploader: %s changed on the server since ferry uploaded it (If-Match %s failed: HTTP 412 %s); not overwritten",
			target, j.rec.ETag, msg))
	}
	return "", permanent(fmt.Errorf("uploader: the server already has %s (HTTP 412 to If-None-Match: *: %s); not overwritten — set \"overwrite\": true in the manifest's outbox to replace it",
		target, msg))
}

// sameRemote GETs target and reports whether its bytes are the committed
// content of j.
func (u *Uploader) sameRemote(j *job, target string) (string, bool, error) {
	req, err := http.NewRequestWithContext(j.ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", false, err
	}
	for k, vs := range u.opts.Header {
		req.Header[k] = vs
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("GET %s: HTTP %d", target, resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, j.rec.Size+1))
	if err != nil {
		return "", false, err
	}
	return resp.Header.Get("ETag"), n == j.rec.Size && bytes.Equal(h.Sum(nil), j.rec.SHA256), nil
}
