package uploader

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Streaming PUT: the upload of a new file starts while it is still being
// written in order (cp, mv), so that sending overlaps writing. The body is
// chunked (the length is not known yet) and the SHA-256 travels in a
// Content-Digest trailer (RFC 9530 allows it there). The body ends (the
// last chunk and the trailer go out) only once the file was committed and
// its content is exactly the bytes sent and hashed; until then an abandoned
// stream cuts the connection and the server stores nothing, so the rule
// that a server never gets a half-written or mixed file holds as for a
// plain PUT.
//
// A stream that fails for any reason after its commit falls back to a
// plain PUT of the committed content at once (no backoff: the stream was
// an optimisation, not an attempt that the server refused). A server that
// answers a stream with a 4xx other than 412 (it may not take chunked
// bodies: 411, 400, 501) gets no more streams from this Uploader.

// StreamSource follows the staged data of a file being written in order:
// it hashes the bytes as they come. Package fs implements it.
type StreamSource interface {
	// Hashed is how many bytes from the start are written and hashed;
	// these bytes are final unless the source is abandoned (Abort).
	Hashed() int64
	// Sum waits until size bytes are hashed and returns their SHA-256, or
	// nil when that cannot be (the writes went out of order, a read failed,
	// the source was released).
	Sum(size int64) []byte
	// Release tells that the stream is done with the source. Called once.
	Release()
}

// StreamMinSize is the number of bytes written in order after which the
// owner should start a stream: smaller files gain nothing from one.
const StreamMinSize = 4 << 20

// errStreamAbandoned ends a stream whose file was not written in order,
// was removed or renamed before its commit.
var errStreamAbandoned = errors.New("uploader: streamed upload abandoned")

// errStreamIdle ends a stream whose writer paused (Options.StreamIdle): it
// would hold a connection open for a writer that may never come back.
var errStreamIdle = errors.New("uploader: streamed upload: the writer paused")

// Stream is an upload that started before its file was committed. Pass it
// in Content.Stream at the commit; call Abort when the file will not be
// committed as written so far.
type Stream struct {
	u    *Uploader
	seq  uint64
	path string
	// src hashes the bytes for a StartStream; nil for a FollowStream,
	// which reads the file as it grows and hashes what it sends itself.
	src    StreamSource
	f      *os.File
	ctx    context.Context
	cancel context.CancelCauseFunc
	kick   chan struct{} // a wake-up for the body: more data, a commit, Unhold

	mu      sync.Mutex
	started bool  // the request started (a FollowStream waits first)
	job     *job  // set by Commit when it adopts the stream
	size    int64 // the committed size, with job
	held    bool  // with job: the commit was Content.Held, no Unhold yet
	ended   bool  // the request is over
	whole   bool  // the body ended: every byte and the trailer went out
	sum     []byte
}

// StreamMode says when StartStream starts a stream.
type StreamMode int

const (
	// StreamAuto (the default) streams every FollowStream, and a
	// StartStream when the writer is faster than the last plain PUT
	// was: then the upload would outlast the copy, and sending while
	// writing hides the copy. On a link faster than the writer the
	// upload after the close is short, and sending during a copy that
	// goes through ferry only competes with it (measured on loopback:
	// the copy slowed by more than the upload took). Until a plain PUT
	// of at least StreamMinSize bytes was timed, no StartStream streams.
	StreamAuto StreamMode = iota
	// StreamAlways streams every file that qualifies.
	StreamAlways
	// StreamNever turns streams off.
	StreamNever
)

// StartStream starts a streamed PUT of the file seq at path, whose content
// src follows; writeRate is how fast (bytes/s) it was written so far. It
// returns nil when no stream can start: another one runs, the protocol is
// tus or uses a Content-Encoding, the file was committed before, streams
// are off (StreamMode, Options.NoStream, a server that refused one), the
// link is faster than the writer (StreamAuto), or the Uploader is closed.
// The stream owns src from then on (it calls Release).
func (u *Uploader) StartStream(seq uint64, path string, src StreamSource, writeRate float64) *Stream {
	if !u.streamsApply(path) {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.streamMayStartLocked(seq, writeRate, false) {
		return nil
	}
	s := u.newStream(seq, path, src)
	if s == nil {
		return nil
	}
	u.streaming, s.started = true, true
	u.wg.Add(1)
	go s.run()
	return s
}

// streamsApply reports whether uploads of path may be streamed at all.
func (u *Uploader) streamsApply(path string) bool {
	return checkPath(path) == nil && u.opts.Protocol == "put" && u.opts.Encoding == "" && !u.opts.NoStream
}

// streamMayStartLocked reports whether a stream of seq, written at
// writeRate bytes/s so far, may start now; follow for a FollowStream.
// Uploader.mu is held.
func (u *Uploader) streamMayStartLocked(seq uint64, writeRate float64, follow bool) bool {
	if u.closed || !u.started || u.streaming || u.noStream || u.items[seq] != nil {
		return false
	}
	switch u.streamMode {
	case StreamNever:
		return false
	case StreamAuto:
		// A followed file streams whatever the rates: its writer does
		// not wait for ferry, and without a stream its bytes would be
		// read once more to hash them before a plain PUT.
		return follow || u.putRate > 0 && writeRate > u.putRate
	}
	return true
}

// newStream opens the staged file of seq for a stream; nil when it cannot.
func (u *Uploader) newStream(seq uint64, path string, src StreamSource) *Stream {
	f, err := os.Open(StagedPath(u.opts.StagedDir, seq))
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithCancelCause(u.ctx)
	return &Stream{u: u, seq: seq, path: path, src: src, f: f, ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1)}
}

// SetStreams sets when streams start (StreamAuto by default); it also
// forgets that a server refused one. For tests and benchmarks.
func (u *Uploader) SetStreams(m StreamMode) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.streamMode, u.noStream = m, false
}

// notePutRate records the rate of a plain PUT of size bytes that took d
// (StreamAuto compares writers with it).
func (u *Uploader) notePutRate(size int64, d time.Duration) {
	if size < StreamMinSize || d <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.putRate = float64(size) / d.Seconds()
}

// Abort abandons the stream (before its commit): the server stores
// nothing.
func (s *Stream) Abort() {
	s.cancel(errStreamAbandoned)
}

// Wake tells the stream that more bytes were hashed.
func (s *Stream) Wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Running reports whether the request is still going (a FollowStream
// that has not started its request yet is not running).
func (s *Stream) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started && !s.ended && s.ctx.Err() == nil
}

// Follows reports whether s is a FollowStream.
func (s *Stream) Follows() bool { return s.src == nil }

// adoptLocked makes s the running attempt of it, committed with size
// bytes. Uploader.mu is held; it is already persisted and not queued.
func (s *Stream) adoptLocked(it *item, size int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.ended || s.ctx.Err() != nil || s.path != it.rec.Path || it.rec.ETag != "" {
		return false
	}
	it.state = StateUploading
	it.stream = s
	s.held = it.held
	it.sent.Store(0)
	it.cancel = func() { s.cancel(errChanged) }
	s.job = &job{it: it, gen: it.gen.Load(), rec: it.rec, ctx: s.ctx}
	s.size = size
	s.Wake()
	return true
}

func (s *Stream) run() {
	defer s.u.wg.Done()
	if s.src != nil {
		defer s.src.Release()
	}
	defer s.f.Close()
	if !s.started && !s.waitStart() {
		s.cancel(errStreamAbandoned)
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		return
	}
	etag, status, err := s.send()
	s.cancel(nil)
	u := s.u
	u.mu.Lock()
	s.mu.Lock()
	s.ended = true
	j, whole, sum := s.job, s.whole, s.sum
	s.mu.Unlock()
	u.streaming = false
	if j != nil && j.it.stream == s {
		j.it.stream = nil
	}
	if err != nil && status >= 400 && status < 500 && status != http.StatusPreconditionFailed && !u.noStream {
		u.noStream = true
		u.log.Warn("uploader: the server refused a streamed (chunked) upload; uploads wait for the writer's close from now on",
			"url", u.URL(s.path), "err", err)
	}
	if j == nil {
		u.mu.Unlock()
		return
	}
	it := j.it
	current := !j.changed() && !it.removed
	if current && sum != nil {
		it.rec.SHA256 = sum
	}
	if err == nil {
		u.mu.Unlock()
		u.finish(j, etag, nil)
		return
	}
	if !current {
		u.mu.Unlock()
		return
	}
	// Fall back to a plain PUT now.
	it.cancel = nil
	if whole {
		it.unsure = true
	}
	if u.closed {
		it.state = StateQueued // so says the record
	} else {
		u.log.Debug("uploader: streamed upload failed; sending it again", "path", it.rec.Path, "err", err)
		u.queueLocked(it)
	}
	u.mu.Unlock()
}

// send runs the request; status is the server's answer when there was one.
func (s *Stream) send() (etag string, status int, err error) {
	u := s.u
	b := &streamBody{s: s, idle: time.NewTimer(u.opts.StreamIdle), stallFor: u.opts.StallTimeout}
	defer b.idle.Stop()
	if s.src == nil {
		b.follow = newFollower(s)
		defer b.follow.stop()
	}
	// A server that stops taking the body: the stall timer is reset
	// whenever the body is asked for more, so it fires only while a write
	// to the connection blocks.
	b.stall = time.AfterFunc(b.stallFor, func() { s.cancel(errStalled) })
	defer b.stall.Stop()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPut, u.URL(s.path), b)
	if err != nil {
		return "", 0, err
	}
	for k, vs := range u.opts.Header {
		req.Header[k] = vs
	}
	req.ContentLength = -1
	req.Trailer = http.Header{"Content-Digest": nil}
	b.trailer = req.Trailer
	if !u.opts.Overwrite {
		req.Header.Set("If-None-Match", "*")
	}
	resp, err := u.client.Do(req)
	if err != nil {
		if c := context.Cause(s.ctx); c != nil {
			return "", 0, c
		}
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		s.mu.Lock()
		whole := s.whole
		s.mu.Unlock()
		if !whole {
			// A success before the body ended is not one for this content.
			return "", resp.StatusCode, errors.New("uploader: the server answered a streamed upload before its end")
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.Header.Get("ETag"), resp.StatusCode, nil
	}
	return "", resp.StatusCode, classify(resp)
}

// streamBody is the body of a streamed PUT: the bytes of the staged file
// as they are hashed (StartStream) or written (FollowStream), then, once
// committed, the end and the digest.
type streamBody struct {
	s        *Stream
	off      int64
	trailer  http.Header
	idle     *time.Timer
	stall    *time.Timer
	stallFor time.Duration
	follow   *follower // FollowStream only
}

func (b *streamBody) Read(p []byte) (int, error) {
	s := b.s
	for {
		b.stall.Reset(b.stallFor)
		if s.ctx.Err() != nil {
			return 0, context.Cause(s.ctx)
		}
		s.mu.Lock()
		j, size, held := s.job, s.size, s.held
		s.mu.Unlock()
		var avail int64
		if f := b.follow; f != nil {
			if j != nil && !held {
				f.settle(b.off)
			}
			var err error
			if avail, err = f.written(b.off); err != nil {
				return 0, err
			}
		} else {
			avail = s.src.Hashed()
		}
		if j != nil {
			if b.off > size {
				// Read past the committed end: a writer the owner does
				// not see went on after the commit; it commits again.
				return 0, errChanged
			}
			avail = min(avail, size)
		}
		if b.off < avail {
			n, err := s.f.ReadAt(p[:min(int64(len(p)), avail-b.off)], b.off)
			if n == 0 {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			if b.follow != nil {
				b.follow.sent(p[:n])
			}
			b.off += int64(n)
			if j != nil {
				j.it.sent.Store(b.off)
			}
			if j == nil || held {
				b.idle.Reset(s.u.opts.StreamIdle)
			}
			return n, nil
		}
		if j != nil && b.off == size && !held {
			return 0, b.end(j, size)
		}
		// Nothing to send yet. A writer that pauses for StreamIdle (also
		// one the owner does not see, holding a committed file open)
		// ends the stream: the file goes with a plain PUT once it is
		// closed.
		var idle, poll <-chan time.Time
		if j == nil || held {
			idle = b.idle.C
		}
		if b.follow != nil {
			poll = b.follow.poll()
		}
		select {
		case <-s.kick:
		case <-s.ctx.Done():
		case <-idle:
			s.cancel(errStreamIdle)
		case <-poll:
		}
	}
}

// end finishes the body once the committed content was read: io.EOF with
// the digest in the trailer, or the error that abandons the upload.
func (b *streamBody) end(j *job, size int64) error {
	var sum []byte
	if f := b.follow; f != nil {
		// Every byte read before the file settled must still be there.
		if err := f.verified(b.s.ctx); err != nil {
			return err
		}
		if sum = f.sum(); sum == nil {
			return fmt.Errorf("%w: no digest of the content", errStreamAbandoned)
		}
	} else if sum = b.s.src.Sum(size); sum == nil {
		return fmt.Errorf("%w: no digest of the content", errStreamAbandoned)
	}
	// Modify runs before the first byte of a change is written: unchanged
	// now means every byte read and hashed was committed content.
	if j.changed() {
		return errChanged
	}
	b.trailer.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
	b.s.mu.Lock()
	b.s.sum, b.s.whole = sum, true
	b.s.mu.Unlock()
	return io.EOF
}

// WriteTo sends the body in large chunks: the transport flushes every
// chunk of a chunked body, so io.Copy's 32 KiB would mean a write per
// 32 KiB.
func (b *streamBody) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := b.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
