package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"ferry/internal/retry"
)

// errRetry asks for the job to be tried again at once: the file was reset
// under it (a new version), which is no failure of the origin.
var errRetry = errors.New("fetcher: retry")

// errProtocol marks an answer that is not what was asked for; its bytes are
// never stored.
var errProtocol = errors.New("fetcher: bad response")

// worker runs jobs until the fetcher closes.
func (f *Fetcher) worker() {
	defer f.wg.Done()
	for {
		f.mu.Lock()
		var j *job
		for {
			if f.closed {
				f.mu.Unlock()
				return
			}
			if j = f.nextLocked(); j != nil {
				break
			}
			f.work.Wait()
		}
		f.mu.Unlock()

		err := f.run(j)

		f.mu.Lock()
		f.finishLocked(j, err)
		if j.low {
			f.lowActive--
		} else if f.demandActive--; f.demandActive == 0 {
			f.demandEndedLocked()
		}
		// No wake-up: this worker looks for the next job itself, and
		// nextLocked wakes another when more work is ready.
		f.mu.Unlock()
		f.settle(j.file)
	}
}

// run waits out the file's backoff, then fetches the job's blocks.
func (f *Fetcher) run(j *job) error {
	fl := j.file
	f.mu.Lock()
	wait := time.Until(fl.retryAt)
	f.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-f.ctx.Done():
			return f.ctx.Err()
		}
	}
	return f.fetch(j)
}

// finishLocked releases what j did not fetch and records the outcome on its
// file. Fetcher.mu is held.
func (f *Fetcher) finishLocked(j *job, err error) {
	fl := j.file
	f.releaseLocked(j, j.first)
	delete(fl.running, j)
	j.cancel = nil
	switch {
	case err == nil:
		fl.failures, fl.lastErr, fl.srcFailures = 0, nil, 0
		if j.src != nil {
			fl.pref = j.src
		}
	case f.ctx.Err() != nil:
		// Closing: nothing to record.
	case errors.Is(err, errRetry), errors.Is(err, errDropped):
	case j.src != nil && !j.src.main && (isPermanent(err) || errors.Is(err, errBlockHash)):
		// A mirror that lacks the file or serves other bytes.
		fl.dropLocked(j.src, err.Error())
	case isPermanent(err):
		fl.failLocked(err)
		return
	default:
		fl.lastErr = err
		if se := (*storeErr)(nil); errors.As(err, &se) {
			fl.storeErr = se
			fl.storeErrs++
		}
		if j.src != nil && !fl.failedSourceLocked(j.src) {
			// Another source is tried at once.
			break
		}
		fl.failures++
		d := f.backoff(fl.failures)
		var se *statusError
		if errors.As(err, &se) && se.retryAfter > d {
			d = se.retryAfter
		}
		fl.retryAt = time.Now().Add(d)
		f.log.Warn("transfer error, retrying", "path", fl.spec.Path, "in", d.Round(time.Millisecond), "attempt", fl.failures, "err", err)
		f.wakeAtLocked(fl.retryAt)
	}
	// Readers re-evaluate: they requeue what they still miss.
	fl.notifyLocked()
}

// backoff is the delay before attempt n+1 (internal/retry).
func (f *Fetcher) backoff(n int) time.Duration {
	return retry.Backoff(n, f.opts.Backoff, f.opts.MaxBackoff)
}

// wakeAtLocked makes sure idle workers look for background work again at t,
// when a file's backoff ends. Fetcher.mu is held.
func (f *Fetcher) wakeAtLocked(t time.Time) {
	if f.wake != nil && !f.wakeAt.After(t) && f.wakeAt.After(time.Now()) {
		return
	}
	if f.wake != nil {
		f.wake.Stop()
	}
	f.wakeAt = t
	f.wake = time.AfterFunc(time.Until(t), func() {
		f.mu.Lock()
		f.work.Signal()
		f.mu.Unlock()
	})
}

// fetch sends the request for j and stores what comes back.
func (f *Fetcher) fetch(j *job) error {
	fl := j.file
	pinned, gen, isPinned := fl.st.Remote()
	f.mu.Lock()
	if fl.noRange && !j.stream {
		// Queued before the origin was found to ignore Range: only a
		// stream can fill the file now.
		if fl.stream != nil {
			f.mu.Unlock()
			return nil
		}
		fl.stream, j.stream = j, true
	}
	size, first, last, stream := fl.size, j.first, j.last, j.stream
	src := fl.pickSourceLocked(j, isPinned)
	j.src = src
	f.mu.Unlock()
	if size < 0 || last < first {
		return nil
	}
	if !stream {
		// Blocks may have arrived since the job was queued.
		if first = fl.st.Missing(first, last); first < 0 {
			return nil
		}
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	f.mu.Lock()
	j.cancel = cancel
	f.mu.Unlock()
	req, err := fl.newRequest(ctx, http.MethodGet, src.url)
	if err != nil {
		return err
	}
	start, end := first*fl.bs, min((last+1)*fl.bs, size)-1
	if !stream {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10))
		validator, ok := pinned, isPinned
		if !src.main {
			f.mu.Lock()
			validator, ok = src.seen, src.hasSeen
			f.mu.Unlock()
		}
		if v := ifRange(validator); ok && v != "" {
			req.Header.Set("If-Range", v)
		}
	}
	stall := time.AfterFunc(f.opts.StallTimeout, cancel)
	defer stall.Stop()
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := &stallReader{r: resp.Body, timer: stall, d: f.opts.StallTimeout}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return fmt.Errorf("%w: Content-Encoding %q on %s", errProtocol, ce, fl.spec.URL)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if stream {
			return fmt.Errorf("%w: 206 to a request without Range", errProtocol)
		}
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("%w: %v", errProtocol, err)
		}
		got := remoteOf(resp, cr.total)
		if !src.main {
			if err := fl.acceptMirror(src, got, pinned, isPinned); err != nil {
				return err
			}
			got = Remote{Size: got.Size} // a mirror's validators say nothing of the main URL's
		}
		if gen, err = fl.checkVersion(gen, pinned, isPinned, got); err != nil {
			return err
		}
		if cr.first != start || cr.last != end {
			return fmt.Errorf("%w: asked for bytes %d-%d, got %d-%d", errProtocol, start, end, cr.first, cr.last)
		}
		return f.receive(ctx, j, gen, body, first, last, cr.total)
	case http.StatusOK:
		if !src.main {
			f.mu.Lock()
			defer f.mu.Unlock()
			return fl.dropLocked(src, "answered a ranged request with the whole object")
		}
		return f.receiveWhole(ctx, j, gen, pinned, isPinned, resp, body)
	}
	return classifyStatus(resp)
}

// checkVersion compares a response's validator with the pinned one. On the
// first response it pins got. When the object changed it resets the file and
// returns errRetry (with the new generation). It returns the generation the
// response's bytes belong to.
func (fl *File) checkVersion(gen uint64, pinned Remote, isPinned bool, got Remote) (uint64, error) {
	if !isPinned {
		return gen, fl.pin(gen, got)
	}
	if sameVersion(pinned, got) {
		return gen, nil
	}
	if pinned.ETag != "" && ifRange(pinned) == pinned.ETag && got.ETag == pinned.ETag {
		// A strong ETag names one representation, its length included:
		// another total is a malformed Content-Range, not a new version.
		return gen, fmt.Errorf("%w: Content-Range total %d with the ETag %s of the %d-byte version", errProtocol, got.Size, got.ETag, pinned.Size)
	}
	reason := fmt.Sprintf("remote changed: was size %d ETag %q Last-Modified %q, now size %d ETag %q Last-Modified %q",
		pinned.Size, pinned.ETag, pinned.LastModified, got.Size, got.ETag, got.LastModified)
	ngen, err := fl.reset(gen, reason)
	if err != nil {
		return gen, err
	}
	return ngen, errRetry
}

// pin records got as the version of generation gen, checking it against the
// declared size.
func (fl *File) pin(gen uint64, got Remote) error {
	if d := fl.spec.Size; d >= 0 && got.Size != d {
		return permanent(fmt.Errorf("fetcher: %s: origin has %d bytes, the manifest says %d", fl.spec.URL, got.Size, d))
	}
	if got.Size < 0 {
		return fmt.Errorf("%w: no size in the response", errProtocol)
	}
	if err := fl.st.Pin(gen, got); err != nil {
		return fl.storeError(gen, fmt.Errorf("fetcher: pin %s: %w", fl.spec.Path, err))
	}
	fl.f.mu.Lock()
	fl.size = got.Size
	fl.f.mu.Unlock()
	return nil
}

// reset drops the old version's blocks, unless another worker already did.
func (fl *File) reset(gen uint64, reason string) (uint64, error) {
	if _, cur, _ := fl.st.Remote(); cur != gen {
		return cur, nil
	}
	fl.f.log.Warn("remote object changed; refetching", "path", fl.spec.Path, "reason", reason)
	ngen, err := fl.st.Reset(reason)
	if err != nil {
		return gen, fmt.Errorf("fetcher: reset %s: %w", fl.spec.Path, err)
	}
	fl.f.mu.Lock()
	fl.done, fl.doneSent, fl.verified = false, false, false
	fl.bgNext = 0
	fl.f.queueLocked(fl) // re-armed
	fl.restarts++
	fl.notifyLocked()
	fl.f.mu.Unlock()
	if cb := fl.f.opts.OnReset; cb != nil {
		cb(fl)
	}
	return ngen, nil
}

// receive reads blocks [first, last] of a file of the given size from body
// and stores them. A range job stops at the first block it no longer owns
// (a read stole it); a stream skips blocks already present. The last block
// of the request is stored only once the body ended where it should.
func (f *Fetcher) receive(ctx context.Context, j *job, gen uint64, body io.Reader, first, last, size int64) error {
	fl := j.file
	buf := getBuf(fl.bs)
	defer putBuf(buf)
	for idx := first; idx <= last; idx++ {
		f.mu.Lock()
		owned := j.stream || fl.claims[idx] == j
		f.mu.Unlock()
		if !owned {
			return nil
		}
		j.pos.Store(idx)
		n := min(fl.bs, size-idx*fl.bs)
		if j.class == classBackground {
			if idx > first {
				// Between two blocks only: a response of one block
				// is on its way whatever the reader does, and
				// pausing it would only hold up the fill of small
				// files.
				f.yieldToReads(j, n)
			}
			if err := f.limit.wait(ctx, n); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			return fmt.Errorf("%w: body of %s ended early at block %d: %v", errProtocol, fl.spec.Path, idx, err)
		}
		if idx == last {
			var one [1]byte
			if k, _ := io.ReadFull(body, one[:]); k > 0 {
				return fmt.Errorf("%w: body of %s is longer than its range", errProtocol, fl.spec.Path)
			}
		}
		if j.stream && fl.st.Present(idx) {
			continue
		}
		if err := fl.checkBlock(j.src, idx, buf[:n]); err != nil {
			return err
		}
		// Reads waiting for the block copy it from memory while it is
		// written.
		mb := f.publish(fl, idx, gen, buf[:n])
		if mb != nil {
			// publish woke the waiting reads: let them copy now, on
			// this P, rather than after the store's write, which may
			// hold the P in a syscall for a long time (the time from
			// publication to the copy went from 64-177 µs p50 and
			// 1.4-2.9 ms p99 to 1 µs and 27-55 µs in
			// BenchmarkDemandLatency on a busy machine).
			runtime.Gosched()
		}
		err := fl.st.WriteBlock(gen, idx, buf[:n])
		f.retire(fl, idx, mb)
		if err != nil {
			return fl.storeError(gen, fmt.Errorf("fetcher: store block %d of %s: %w", idx, fl.spec.Path, err))
		}
		f.mu.Lock()
		if fl.claims[idx] == j {
			delete(fl.claims, idx)
		}
		fl.fetched += n
		if fl.rate == nil {
			fl.rate = new(rateWindow)
		}
		fl.rate.add(time.Now(), n)
		fl.notifyLocked()
		f.mu.Unlock()
	}
	return nil
}

// receiveWhole handles a 200 answer: the whole object. Either the object
// changed (If-Range did not match: this body is the new version) or the
// origin ignores Range; in both cases the job becomes the file's one stream
// and stores every block it does not have yet.
func (f *Fetcher) receiveWhole(ctx context.Context, j *job, gen uint64, pinned Remote, isPinned bool, resp *http.Response, body io.Reader) error {
	fl := j.file
	got := remoteOf(resp, resp.ContentLength)
	changed := isPinned && !sameVersion(pinned, got)
	switch {
	case changed && resp.ContentLength < 0:
		return fmt.Errorf("%w: a new version of %s without Content-Length", errProtocol, fl.spec.URL)
	case changed && got.ETag == "" && got.LastModified == "":
		// An error page from a proxy or portal, not a new version.
		return fmt.Errorf("%w: 200 without ETag or Last-Modified to a ranged request for %s", errProtocol, fl.spec.URL)
	case changed && fl.spec.Size >= 0 && got.Size != fl.spec.Size:
		return fmt.Errorf("%w: 200 of %d bytes to a ranged request for %s, the manifest says %d", errProtocol, got.Size, fl.spec.URL, fl.spec.Size)
	case changed:
		reason := fmt.Sprintf("remote changed: was size %d ETag %q, now size %d ETag %q", pinned.Size, pinned.ETag, got.Size, got.ETag)
		var err error
		if gen, err = fl.reset(gen, reason); err != nil {
			return err
		}
		if err := fl.pin(gen, got); err != nil {
			return err
		}
	case !isPinned:
		if resp.ContentLength < 0 {
			return fmt.Errorf("%w: no size for %s (no Content-Length, no Range support)", errProtocol, fl.spec.URL)
		}
		if d := fl.spec.Size; d >= 0 && got.Size != d && got.ETag == "" && got.LastModified == "" {
			// An error page from a proxy or portal, not the object: retry
			// rather than fail the file on the declared size.
			return fmt.Errorf("%w: 200 of %d bytes without ETag or Last-Modified for %s, the manifest says %d", errProtocol, got.Size, fl.spec.URL, d)
		}
		if err := fl.pin(gen, got); err != nil {
			return err
		}
	}
	f.mu.Lock()
	if !j.stream && !changed && !fl.noRange {
		fl.noRange = true
		f.log.Info("origin ignores Range; streaming the file in order", "path", fl.spec.Path)
	}
	if fl.stream != nil && fl.stream != j {
		f.mu.Unlock()
		return nil
	}
	fl.stream, j.stream = j, true
	size := fl.size
	f.mu.Unlock()
	if size <= 0 {
		return nil
	}
	return f.receive(ctx, j, gen, body, 0, fl.blocks(size)-1, size)
}

// storeError tells a write refused because the file was reset meanwhile (the
// job simply retries) from a real store failure (backoff, like a network
// error).
func (fl *File) storeError(gen uint64, err error) error {
	if _, cur, _ := fl.st.Remote(); cur != gen {
		return errors.Join(err, errRetry)
	}
	return &storeErr{err}
}

// storeErr is a failure of the local store (a full or failing disk). It is
// retried like a network error, but reads that wait fail with it at once:
// the bytes they want cannot be kept.
type storeErr struct{ err error }

func (e *storeErr) Error() string { return e.err.Error() }
func (e *storeErr) Unwrap() error { return e.err }

// bufPool holds block buffers, so that a job does not allocate a block
// (1 MiB by default) each time.
var bufPool sync.Pool

func getBuf(n int64) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && int64(cap(*b)) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuf(b []byte) { bufPool.Put(&b) }
