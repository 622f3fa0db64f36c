package uploader

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// checkPath accepts a relative, "/"-separated path without empty, "." or
// ".." segments: nothing uploaded can name a place outside the base URL.
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") {
		return fmt.Errorf("uploader: path %q: want a relative path", p)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsRune(seg, 0) {
			return fmt.Errorf("uploader: path %q: empty, \".\" or \"..\" segment", p)
		}
	}
	return nil
}

// escapePath escapes each segment of p for a URL path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// newClient returns the HTTP client of the Uploader and the transport it
// owns (nil when Options.Transport is used). Redirects are not followed: an
// upload body cannot be replayed safely to a place nobody configured.
func newClient(opts Options) (*http.Client, *http.Transport) {
	rt := opts.Transport
	var own *http.Transport
	if rt == nil {
		own = http.DefaultTransport.(*http.Transport).Clone()
		own.MaxIdleConnsPerHost = opts.Parallel + 2
		own.DisableCompression = true
		own.ResponseHeaderTimeout = opts.StallTimeout
		// Fewer, larger writes of request bodies.
		own.WriteBufferSize = 256 << 10
		rt = own
	}
	return &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, own
}

// source is what one attempt sends: the staged file, or a content-encoded
// copy of it.
type source struct {
	f        *os.File
	size     int64  // bytes to send
	digest   []byte // SHA-256 of the bytes sent
	encoding string // Content-Encoding, "" for the raw bytes
	tmp      string // encoded copy to remove, "" when none
}

func (s *source) close() {
	s.f.Close()
	if s.tmp != "" {
		os.Remove(s.tmp)
	}
}

// openSource opens the staged file of j, checks it against the commit,
// computes its digest when it is not known yet (or must be verified) and
// encodes it when PUT uses a Content-Encoding.
func (u *Uploader) openSource(j *job) (*source, error) {
	f, err := os.Open(StagedPath(u.opts.StagedDir, j.rec.Seq))
	if err != nil {
		if j.changed() {
			return nil, errChanged
		}
		return nil, permanent(fmt.Errorf("uploader: staged data: %w", err))
	}
	src := &source{f: f, size: j.rec.Size, digest: j.rec.SHA256}
	fail := func(err error) (*source, error) {
		f.Close()
		if j.changed() {
			return nil, errChanged
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("uploader: staged data: %w", err))
	}
	if fi.Size() != j.rec.Size {
		return fail(permanent(fmt.Errorf("uploader: staged data has %d bytes, the committed file had %d (lost in a crash?); write the file again",
			fi.Size(), j.rec.Size)))
	}
	if src.digest == nil || j.verify {
		sum, err := hashFile(j.ctx, f, src.size)
		if err != nil {
			return fail(err)
		}
		if j.changed() {
			return fail(errChanged)
		}
		if src.digest != nil && !bytes.Equal(sum, src.digest) {
			return fail(permanent(errVerify))
		}
		src.digest = sum
		u.setDigest(j, sum)
	}
	if u.opts.Encoding == "" || u.opts.Protocol != "put" {
		return src, nil
	}
	enc, err := u.encode(j, f)
	f.Close()
	if err != nil {
		if j.changed() {
			return nil, errChanged
		}
		return nil, err
	}
	return enc, nil
}

// setDigest records the digest computed for j's content.
func (u *Uploader) setDigest(j *job, sum []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if j.changed() || j.it.removed {
		return
	}
	j.rec.SHA256 = sum
	j.it.rec.SHA256 = sum
	j.it.verify = false
	u.logPersist(j.it, false)
}

// hashFile returns the SHA-256 of the first size bytes of f.
func hashFile(ctx context.Context, f *os.File, size int64) ([]byte, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		if err != nil && off < size {
			return nil, fmt.Errorf("uploader: reading staged data: %w", err)
		}
	}
	return h.Sum(nil), nil
}

// encode writes f, content-encoded, into a temporary file and returns it as
// the source, with the length and digest of the encoded bytes.
func (u *Uploader) encode(j *job, f *os.File) (*source, error) {
	tmp, err := os.CreateTemp(u.opts.TempDir, fmt.Sprintf("%016x-*.%s", j.rec.Seq, u.opts.Encoding))
	if err != nil {
		return nil, fmt.Errorf("uploader: %w", err)
	}
	src := &source{f: tmp, encoding: u.opts.Encoding, tmp: tmp.Name()}
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, sum)}
	bw := bufio.NewWriterSize(cw, 256<<10)
	var zw io.WriteCloser
	if u.opts.Encoding == "gzip" {
		zw = gzip.NewWriter(bw)
	} else if zw, err = zstd.NewWriter(bw, zstd.WithEncoderConcurrency(1)); err != nil {
		src.close()
		return nil, fmt.Errorf("uploader: %w", err)
	}
	_, err = io.Copy(zw, &ctxReader{ctx: j.ctx, r: io.NewSectionReader(f, 0, j.rec.Size)})
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		src.close()
		return nil, fmt.Errorf("uploader: encoding %s: %w", u.opts.Encoding, err)
	}
	src.size, src.digest = cw.n, sum.Sum(nil)
	return src, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// body is a request body: bytes [off, end) of a source. Before it returns
// the bytes that end the content it checks that the file did not change
// since the job started, and fails instead if it did, so the server never
// completes an upload of a changed file.
type body struct {
	r        io.ReaderAt
	off, end int64
	last     int64 // offset where the content ends
	total    int64 // size of the committed content, when last is of an encoded copy
	j        *job
	sent     *atomic.Int64 // progress in bytes of the committed content
	stall    *time.Timer   // reset on every read; nil when none
	stallFor time.Duration
}

func (b *body) Read(p []byte) (int, error) {
	if b.off >= b.end {
		return 0, io.EOF
	}
	n, err := b.r.ReadAt(p[:min(int64(len(p)), b.end-b.off)], b.off)
	if n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if b.off+int64(n) >= b.last && b.j.changed() {
		return 0, errChanged
	}
	b.off += int64(n)
	if b.total > 0 && b.total != b.last {
		b.sent.Store(int64(float64(b.off) / float64(b.last) * float64(b.total)))
	} else {
		b.sent.Store(b.off)
	}
	if b.stall != nil {
		b.stall.Reset(b.stallFor)
	}
	return n, nil
}

// whole reports whether every byte was handed to the connection.
func (b *body) whole() bool { return b.off >= b.end }
