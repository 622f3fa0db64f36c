package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// errCut reports that a PUT body read ended because the server cut the
// connection on purpose (Faults.ResetAfter).
var errCut = errors.New("origin: connection cut")

// servePut stores the request body as the object at the path.
func (s *Server) servePut(ex *exchange) {
	if ex.preamble() {
		return
	}
	if code, msg := s.putPreconditions(ex); code != 0 {
		ex.textError(code, msg)
		return
	}
	body := &wireReader{ex: ex, r: ex.r.Body, sum: sha256.New(), resetAt: -1}
	if ex.f.ResetAfter != 0 {
		body.resetAt = max(ex.f.ResetAfter, 0)
	}
	data, code, err := s.readUpload(ex, body)
	if body.cut {
		return // the connection is gone
	}
	if err != nil && ex.ctx.Err() != nil {
		ex.abandon() // the client left, or the server is closing
		return
	}
	if err != nil {
		ex.textError(code, err.Error())
		return
	}
	// RFC 9530 lets the digest come as a trailer after a chunked body
	// (ferry's streamed uploads); the trailer is known once the body was
	// read.
	digest := ex.r.Header.Get("Content-Digest")
	if digest == "" {
		digest = ex.r.Trailer.Get("Content-Digest")
	}
	if want, ok, err := contentDigest(digest); err != nil {
		ex.textError(http.StatusBadRequest, err.Error())
		return
	} else if ok && !bytes.Equal(want, body.sum.Sum(nil)) {
		ex.textError(http.StatusBadRequest, "origin: Content-Digest sha-256 does not match the body")
		return
	}

	o := dataObject(data)
	s.mu.Lock()
	_, existed := s.objects[ex.path]
	if existed && isStar(ex.r.Header.Get("If-None-Match")) {
		// Another PUT won the race since putPreconditions looked.
		s.mu.Unlock()
		ex.textError(http.StatusPreconditionFailed, "origin: object exists (If-None-Match: *)")
		return
	}
	s.storeLocked(ex.path, o)
	s.mu.Unlock()

	ex.w.Header().Set("ETag", o.info.ETag)
	if existed {
		ex.writeHeader(http.StatusNoContent)
		return
	}
	ex.writeHeader(http.StatusCreated)
}

// putPreconditions checks If-None-Match: * and If-Match against the stored
// object before the body is read.
func (s *Server) putPreconditions(ex *exchange) (int, string) {
	o := s.lookup(ex.path)
	if o != nil && isStar(ex.r.Header.Get("If-None-Match")) {
		return http.StatusPreconditionFailed, "origin: object exists (If-None-Match: *)"
	}
	if im := ex.r.Header.Get("If-Match"); im != "" && (o == nil || !etagListHas(im, o.info.ETag, false)) {
		return http.StatusPreconditionFailed, "origin: If-Match does not match"
	}
	return 0, ""
}

func isStar(v string) bool {
	return strings.TrimSpace(v) == "*"
}

// readUpload reads and decodes the whole body. On error it returns the
// status to answer with.
func (s *Server) readUpload(ex *exchange, body *wireReader) ([]byte, int, error) {
	var dec io.Reader = body
	switch ce := strings.ToLower(strings.TrimSpace(ex.r.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("origin: gzip body: %w", err)
		}
		dec = zr
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("origin: zstd body: %w", err)
		}
		defer zr.Close()
		dec = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("origin: unsupported Content-Encoding %q (want gzip or zstd)", ce)
	}
	data, err := io.ReadAll(io.LimitReader(dec, s.maxUpload+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("origin: reading body: %w", err)
	}
	if int64(len(data)) > s.maxUpload {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("origin: body larger than %d bytes", s.maxUpload)
	}
	// A decoder may stop before the end of what was sent; the digest and
	// the byte count cover all of it.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("origin: reading body: %w", err)
	}
	return data, 0, nil
}

// contentDigest extracts the sha-256 member of a Content-Digest header
// (RFC 9530: a dictionary of algorithm=:base64:). ok is false when the
// header is absent or names only other algorithms, which are ignored.
func contentDigest(h string) (sum []byte, ok bool, err error) {
	if h == "" {
		return nil, false, nil
	}
	for member := range strings.SplitSeq(h, ",") {
		alg, val, found := strings.Cut(strings.TrimSpace(member), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(alg), "sha-256") {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) < 2 || val[0] != ':' || val[len(val)-1] != ':' {
			return nil, false, fmt.Errorf("origin: Content-Digest %q: want sha-256=:BASE64:", h)
		}
		sum, err := base64.StdEncoding.DecodeString(val[1 : len(val)-1])
		if err != nil || len(sum) != sha256.Size {
			return nil, false, fmt.Errorf("origin: Content-Digest %q: want sha-256=:BASE64: of 32 bytes", h)
		}
		return sum, true, nil
	}
	return nil, false, nil
}

// wireReader reads a PUT body as sent: it counts and hashes the bytes,
// paces them under the bandwidth caps, and cuts the connection after
// resetAt bytes when more follow (Faults.ResetAfter).
type wireReader struct {
	ex      *exchange
	r       io.Reader
	sum     hash.Hash
	resetAt int64 // -1: never
	cut     bool
}

func (w *wireReader) Read(p []byte) (int, error) {
	if w.cut {
		return 0, errCut
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.resetAt >= 0 && w.ex.recv >= w.resetAt {
		return w.atResetPoint(p)
	}
	if w.resetAt >= 0 {
		p = p[:min(int64(len(p)), w.resetAt-w.ex.recv)]
	}
	if w.ex.paced() {
		p = p[:w.ex.step(len(p))]
		if err := w.ex.pace(len(p)); err != nil {
			return 0, err
		}
	}
	n, err := w.r.Read(p)
	w.took(p[:n])
	return n, err
}

// atResetPoint runs once resetAt bytes were read: if the body goes on and
// the fault may fire, the connection is cut; otherwise reading resumes.
func (w *wireReader) atResetPoint(p []byte) (int, error) {
	var one [1]byte
	n, err := io.ReadFull(w.r, one[:])
	if n == 0 {
		return 0, err // the body ended at the reset point: nothing to cut
	}
	w.resetAt = -1
	if w.ex.s.takeReset(w.ex.rule) {
		w.cut = true
		w.ex.cutConn(true)
		return 0, errCut
	}
	p[0] = one[0]
	w.took(p[:1])
	return 1, nil
}

// took counts and hashes bytes read from the wire.
func (w *wireReader) took(b []byte) {
	if len(b) == 0 {
		return
	}
	w.sum.Write(b)
	w.ex.recv += int64(len(b))
	w.ex.s.countReceived(w.ex.path, int64(len(b)))
}
