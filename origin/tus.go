package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// The server side of tus 1.0 resumable uploads (https://tus.io/protocols/
// resumable-upload), core protocol plus the creation and termination
// extensions:
//
//   - OPTIONS on any path: the protocol version, extensions and size limit.
//   - POST on an object path with Tus-Resumable: 1.0.0 and Upload-Length
//     creates an upload that becomes that object once complete (an empty
//     one at once): 201 with
//     Location PATH?tus=ID. Upload-Metadata may carry "sha256" (the base64
//     SHA-256 of the whole content, checked at completion: 460 when it
//     differs) and "filename". If-None-Match: * refuses (412) an object that
//     exists, at creation and again at completion.
//   - HEAD PATH?tus=ID: Upload-Offset and Upload-Length.
//   - PATCH PATH?tus=ID with Upload-Offset equal to the upload's offset and
//     Content-Type application/offset+octet-stream appends the body (409 on
//     an offset mismatch; it waits for a PATCH of the upload that still runs,
//     as HEAD does, so the answer is never stale). Every
//     byte read is kept, also when the connection breaks mid-body, so the
//     client resumes from where the server got to. The PATCH that completes
//     the upload stores the object (201 semantics are not part of tus: it
//     answers 204 like every PATCH).
//   - DELETE PATH?tus=ID drops an unfinished upload.
//
// Requests on PATH?tus=ID count in the Stats of PATH, and the faults of
// PATH apply to them: Status, Down and Latency to every request, ResetAfter
// and the bandwidth caps to PATCH bodies.

// tusVersion is the protocol version spoken.
const tusVersion = "1.0.0"

// statusChecksumMismatch is tus's "460 Checksum Mismatch".
const statusChecksumMismatch = 460

// tusState holds the uploads of one Server. The zero value is ready.
type tusState struct {
	mu      sync.Mutex
	next    uint64
	uploads map[string]*tusUpload // by ID
}

// tusUpload is one upload resource. Its fields are guarded by tusState.mu.
type tusUpload struct {
	path      string // object path it becomes
	length    int64
	data      []byte // len(data) is the offset; nil once done
	offset    int64
	sha256    []byte // expected digest, nil if not given
	noClobber bool   // If-None-Match: * at creation
	done      bool   // complete and stored
	// idle is closed when no PATCH is reading into the upload, and
	// replaced by an open channel while one is.
	idle chan struct{}
}

// closedChan is an idle channel.
func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// waitIdle waits until no PATCH reads into u (a client resuming after a
// broken connection may arrive before the server noticed the break), then
// runs f with tusState.mu held. It returns false when ex ended first.
func (s *Server) waitIdle(ex *exchange, u *tusUpload, f func()) bool {
	for {
		s.tus.mu.Lock()
		idle := u.idle
		select {
		case <-idle:
			f()
			s.tus.mu.Unlock()
			return true
		default:
		}
		s.tus.mu.Unlock()
		select {
		case <-idle:
		case <-ex.ctx.Done():
			ex.abandon()
			return false
		}
	}
}

// isTus reports whether r is a tus request: OPTIONS, a POST with
// Tus-Resumable, or any request on an upload resource (?tus=ID).
func isTus(r *http.Request) bool {
	return r.Method == http.MethodOptions ||
		r.Method == http.MethodPost && r.Header.Get("Tus-Resumable") != "" ||
		r.URL.Query().Has("tus")
}

// serveTus answers a request for which isTus is true.
func (s *Server) serveTus(ex *exchange) {
	h := ex.w.Header()
	h.Set("Tus-Resumable", tusVersion)
	if ex.r.Method == http.MethodOptions {
		h.Set("Tus-Version", tusVersion)
		h.Set("Tus-Extension", "creation,termination")
		h.Set("Tus-Max-Size", strconv.FormatInt(s.maxUpload, 10))
		ex.writeHeader(http.StatusNoContent)
		return
	}
	if ex.preamble() {
		return
	}
	if v := ex.r.Header.Get("Tus-Resumable"); v != tusVersion {
		h.Set("Tus-Version", tusVersion)
		ex.textError(http.StatusPreconditionFailed, fmt.Sprintf("origin: Tus-Resumable %q: want %s", v, tusVersion))
		return
	}
	id := ex.r.URL.Query().Get("tus")
	switch {
	case ex.r.Method == http.MethodPost && id == "":
		s.tusCreate(ex)
	case ex.r.Method == http.MethodHead && id != "":
		s.tusHead(ex, id)
	case ex.r.Method == http.MethodPatch && id != "":
		s.tusPatch(ex, id)
	case ex.r.Method == http.MethodDelete && id != "":
		s.tusDelete(ex, id)
	default:
		h.Set("Allow", "OPTIONS, POST (creation), HEAD, PATCH, DELETE (with ?tus=ID)")
		ex.textError(http.StatusMethodNotAllowed, "origin: method not allowed for tus")
	}
}

// tusCreate answers a creation POST.
func (s *Server) tusCreate(ex *exchange) {
	length, err := strconv.ParseInt(ex.r.Header.Get("Upload-Length"), 10, 64)
	if err != nil || length < 0 {
		ex.textError(http.StatusBadRequest, "origin: Upload-Length: want a byte count (Upload-Defer-Length is not supported)")
		return
	}
	if length > s.maxUpload {
		ex.textError(http.StatusRequestEntityTooLarge, fmt.Sprintf("origin: Upload-Length larger than %d bytes", s.maxUpload))
		return
	}
	meta, err := parseTusMetadata(ex.r.Header.Get("Upload-Metadata"))
	if err != nil {
		ex.textError(http.StatusBadRequest, err.Error())
		return
	}
	u := &tusUpload{path: ex.path, length: length, data: make([]byte, 0, length),
		noClobber: isStar(ex.r.Header.Get("If-None-Match")), idle: closedChan()}
	if v, ok := meta["sha256"]; ok {
		if len(v) != sha256.Size {
			ex.textError(http.StatusBadRequest, "origin: Upload-Metadata sha256: want the base64 of 32 bytes")
			return
		}
		u.sha256 = []byte(v)
	}
	if u.noClobber && s.lookup(ex.path) != nil {
		ex.textError(http.StatusPreconditionFailed, "origin: object exists (If-None-Match: *)")
		return
	}
	s.tus.mu.Lock()
	if s.tus.uploads == nil {
		s.tus.uploads = make(map[string]*tusUpload)
	}
	s.tus.next++
	id := strconv.FormatUint(s.tus.next, 10)
	s.tus.uploads[id] = u
	if length == 0 {
		u.done = true // complete as created
	}
	s.tus.mu.Unlock()
	if length == 0 {
		if code, err := s.tusFinish(u, id); err != nil {
			ex.textError(code, err.Error())
			return
		}
	}
	loc := (&url.URL{Path: "/" + ex.path, RawQuery: "tus=" + id}).String()
	ex.w.Header().Set("Location", loc)
	ex.writeHeader(http.StatusCreated)
}

// findUpload returns the upload id of the exchange's path, or answers 404.
func (s *Server) findUpload(ex *exchange, id string) *tusUpload {
	s.tus.mu.Lock()
	u := s.tus.uploads[id]
	s.tus.mu.Unlock()
	if u == nil || u.path != ex.path {
		ex.textError(http.StatusNotFound, "origin: no such upload")
		return nil
	}
	return u
}

func (s *Server) tusHead(ex *exchange, id string) {
	u := s.findUpload(ex, id)
	if u == nil {
		return
	}
	var off, length int64
	if !s.waitIdle(ex, u, func() { off, length = u.offset, u.length }) {
		return
	}
	h := ex.w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(off, 10))
	h.Set("Upload-Length", strconv.FormatInt(length, 10))
	h.Set("Cache-Control", "no-store")
	ex.writeHeader(http.StatusOK)
}

func (s *Server) tusDelete(ex *exchange, id string) {
	if u := s.findUpload(ex, id); u == nil {
		return
	}
	s.tus.mu.Lock()
	delete(s.tus.uploads, id)
	s.tus.mu.Unlock()
	ex.writeHeader(http.StatusNoContent)
}

// tusPatch appends a PATCH body to the upload, keeping every byte read.
func (s *Server) tusPatch(ex *exchange, id string) {
	if ct := ex.r.Header.Get("Content-Type"); ct != "application/offset+octet-stream" {
		ex.textError(http.StatusUnsupportedMediaType, "origin: PATCH Content-Type: want application/offset+octet-stream")
		return
	}
	off, err := strconv.ParseInt(ex.r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 {
		ex.textError(http.StatusBadRequest, "origin: Upload-Offset: want a byte offset")
		return
	}
	u := s.findUpload(ex, id)
	if u == nil {
		return
	}
	var cur int64
	mine := false
	if !s.waitIdle(ex, u, func() {
		cur = u.offset
		if !u.done && off == u.offset {
			u.idle, mine = make(chan struct{}), true
		}
	}) {
		return
	}
	if !mine {
		ex.w.Header().Set("Upload-Offset", strconv.FormatInt(cur, 10))
		ex.textError(http.StatusConflict, fmt.Sprintf("origin: Upload-Offset %d: the upload is at %d", off, cur))
		return
	}
	idle := u.idle
	release := sync.OnceFunc(func() { close(idle) })
	defer release()

	body := &wireReader{ex: ex, r: ex.r.Body, sum: sha256.New(), resetAt: -1}
	if ex.f.ResetAfter != 0 {
		body.resetAt = max(ex.f.ResetAfter, 0)
	}
	code, err := s.tusAppend(u, body)
	s.tus.mu.Lock()
	cur = u.offset
	complete := err == nil && !body.cut && u.offset == u.length
	u.done = u.done || complete
	s.tus.mu.Unlock()
	if !complete {
		release() // a HEAD or PATCH waiting may go on now
	}
	if body.cut {
		return
	}
	if err != nil && ex.ctx.Err() != nil {
		ex.abandon()
		return
	}
	if err != nil {
		ex.textError(code, err.Error())
		return
	}
	if complete {
		if code, err := s.tusFinish(u, id); err != nil {
			ex.textError(code, err.Error())
			return
		}
	}
	ex.w.Header().Set("Upload-Offset", strconv.FormatInt(cur, 10))
	ex.writeHeader(http.StatusNoContent)
}

// tusAppend reads the body into the upload until it ends, the upload is
// full (more is an error) or the connection breaks. What was read stays.
func (s *Server) tusAppend(u *tusUpload, body io.Reader) (int, error) {
	buf := make([]byte, 256<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			s.tus.mu.Lock()
			room := u.length - u.offset
			if int64(n) > room {
				u.data = append(u.data, buf[:room]...)
				u.offset = u.length
				s.tus.mu.Unlock()
				return http.StatusBadRequest, errors.New("origin: PATCH body runs past Upload-Length")
			}
			u.data = append(u.data, buf[:n]...)
			u.offset += int64(n)
			s.tus.mu.Unlock()
		}
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			return http.StatusBadRequest, fmt.Errorf("origin: reading PATCH body: %w", err)
		}
	}
}

// tusFinish checks a complete upload and stores it as its object. A
// refused upload is dropped (later requests on it get 404).
func (s *Server) tusFinish(u *tusUpload, id string) (int, error) {
	s.tus.mu.Lock()
	data := u.data
	u.data = nil
	s.tus.mu.Unlock()
	drop := func() {
		s.tus.mu.Lock()
		delete(s.tus.uploads, id)
		s.tus.mu.Unlock()
	}
	if u.sha256 != nil {
		if sum := sha256.Sum256(data); !bytes.Equal(sum[:], u.sha256) {
			drop()
			return statusChecksumMismatch, errors.New("origin: the upload's SHA-256 does not match Upload-Metadata sha256")
		}
	}
	o := dataObject(data)
	s.mu.Lock()
	if _, exists := s.objects[u.path]; exists && u.noClobber {
		s.mu.Unlock()
		drop()
		return http.StatusPreconditionFailed, errors.New("origin: object exists (If-None-Match: *)")
	}
	s.storeLocked(u.path, o)
	s.mu.Unlock()
	return 0, nil
}

// TusOffset returns the offset of the newest unfinished tus upload of path,
// and whether there is one. For tests of resumption.
func (s *Server) TusOffset(path string) (int64, bool) {
	path = cleanPath(path)
	s.tus.mu.Lock()
	defer s.tus.mu.Unlock()
	var best *tusUpload
	var bestID uint64
	for id, u := range s.tus.uploads {
		n, _ := strconv.ParseUint(id, 10, 64)
		if u.path == path && !u.done && n >= bestID {
			best, bestID = u, n
		}
	}
	if best == nil {
		return 0, false
	}
	return best.offset, true
}

// parseTusMetadata parses Upload-Metadata: comma-separated "key base64"
// pairs (the value may be absent).
func parseTusMetadata(h string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(h) == "" {
		return out, nil
	}
	for pair := range strings.SplitSeq(h, ",") {
		key, val, _ := strings.Cut(strings.TrimSpace(pair), " ")
		if key == "" {
			return nil, fmt.Errorf("origin: Upload-Metadata %q: empty key", h)
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("origin: Upload-Metadata %q: value of %q is not base64", h, key)
		}
		out[key] = string(dec)
	}
	return out, nil
}
