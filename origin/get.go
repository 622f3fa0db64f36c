package origin

import (
	"net/http"
	"strconv"
	"sync"
)

// longBodyExtra is how many bytes Faults.LongBody adds past the declared end.
const longBodyExtra = 4096

// bufSize is the write size of unpaced bodies.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// fillerSeed seeds the extra bytes of Faults.LongBody.
const fillerSeed = 0xF111E4

// serveGet answers GET and HEAD.
func (s *Server) serveGet(ex *exchange) {
	if ex.preamble() {
		return
	}
	if ex.f.HTMLError {
		ex.htmlError()
		return
	}
	o := s.lookup(ex.path)
	if o == nil {
		ex.textError(http.StatusNotFound, "origin: not found")
		return
	}
	h := ex.w.Header()
	h.Set("ETag", o.info.ETag)
	h.Set("Last-Modified", o.lastModified())
	h.Set("Accept-Ranges", "bytes")
	switch preconditions(ex.r, o) {
	case http.StatusNotModified:
		ex.writeHeader(http.StatusNotModified)
		return
	case http.StatusPreconditionFailed:
		ex.textError(http.StatusPreconditionFailed, "origin: If-Match does not match")
		return
	}

	size := o.info.Size
	rng, partial, unsat := ex.selectRange(o)
	if unsat {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		ex.textError(http.StatusRequestedRangeNotSatisfiable, "origin: range not satisfiable")
		return
	}
	h.Set("Content-Type", "application/octet-stream")
	if ex.f.ContentEncoding != "" {
		h.Set("Content-Encoding", ex.f.ContentEncoding)
	}
	code := http.StatusOK
	if partial {
		code = http.StatusPartialContent
		total := size
		if ex.f.WrongContentRange {
			rng, total = shiftRange(rng, size)
		}
		h.Set("Content-Range", rng.contentRange(total))
	}
	if ex.f.LongBody {
		ex.writeHeader(code)
		// Flushing the headers before the body makes net/http chunk it
		// rather than count it into a Content-Length.
		_ = http.NewResponseController(ex.w).Flush()
	} else {
		h.Set("Content-Length", strconv.FormatInt(rng.length, 10))
		ex.writeHeader(code)
	}
	if ex.r.Method == http.MethodHead {
		return
	}
	ex.sendBody(o, rng)
}

// selectRange decides what part of o the response carries: the whole object
// (partial false), one range, or nothing (unsat, for 416).
func (ex *exchange) selectRange(o *object) (r byteRange, partial, unsat bool) {
	whole := byteRange{start: 0, length: o.info.Size}
	h := ex.r.Header.Get("Range")
	if h == "" || ex.f.NoRange {
		return whole, false, false
	}
	if ir := ex.r.Header.Get("If-Range"); ir != "" && !ex.f.IgnoreIfRange && !ifRangeHolds(ir, o) {
		return whole, false, false
	}
	r, use, unsat := parseRange(h, o.info.Size)
	if !use {
		return whole, false, false
	}
	return r, !unsat, unsat
}

// sendBody writes the bytes of rng from o, applying the body faults.
func (ex *exchange) sendBody(o *object, rng byteRange) {
	limit := rng.length
	cut, rst := false, false
	if ex.f.ShortBody {
		limit, cut = rng.length/2, true
	}
	if ra := max(ex.f.ResetAfter, 0); ex.f.ResetAfter != 0 && ra < limit && ex.s.takeReset(ex.rule) {
		limit, cut, rst = ra, true, true
	}
	if err := ex.copyContent(o, rng.start, limit); err != nil {
		ex.abandon() // the client left or the server is closing
		return
	}
	switch {
	case cut:
		ex.cutConn(rst)
	case ex.f.LongBody:
		filler := &object{info: ObjectInfo{Size: longBodyExtra, Generated: true, Seed: fillerSeed}}
		if err := ex.copyBytes(filler, 0, longBodyExtra, false); err != nil {
			ex.abandon()
		}
	}
}

// copyContent writes n bytes of o from off as object content.
func (ex *exchange) copyContent(o *object, off, n int64) error {
	return ex.copyBytes(o, off, n, true)
}

// copyBytes writes n bytes of o from off, paced when a cap applies.
func (ex *exchange) copyBytes(o *object, off, n int64, content bool) error {
	buf := bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(buf)
	step := int64(ex.step(bufSize))
	paced := ex.paced()
	for n > 0 {
		k := min(n, step)
		if paced {
			if err := ex.pace(int(k)); err != nil {
				return err
			}
		}
		w, err := ex.write(o.read(off, buf[:k]), content)
		if err != nil {
			return err
		}
		if paced {
			// Let each paced step reach the client now, not when the
			// connection's buffer fills.
			if err := http.NewResponseController(ex.w).Flush(); err != nil {
				return err
			}
		}
		off += int64(w)
		n -= int64(w)
	}
	return nil
}
