package fetcher

import (
	"context"
	"fmt"
	"time"

	"ferry/manifest"
)

// File is one registered remote file. Its methods are safe for concurrent use.
type File struct {
	f    *Fetcher
	spec Spec
	st   Store
	bs   int64 // st.BlockSize()

	// Guarded by Fetcher.mu.
	size         int64             // known size; -1 until declared, pinned or asked
	claims       map[int64]*job    // blocks that a queued or running job will fetch
	changed      chan struct{}     // closed and replaced whenever blocks land or the state changes
	err          error             // permanent failure; reads return it
	noRange      bool              // the origin ignores Range: only streams fill it
	stream       *job              // the stream running for a noRange file
	bgNext       int64             // where background fill looks for missing blocks next
	done         bool              // complete: background fill skips it
	retryAt      time.Time         // no request before this (backoff)
	failures     int               // transient failures in a row
	lastErr      error             // the last transient error, until a success
	storeErr     error             // the last failure of the store
	storeErrs    int               // counts store failures, so readers see new ones
	opens        int               // open handles: raises background rank
	pinned       bool              // fetch whole before anything else
	paused       bool              // no background work (pause, cancel)
	running      map[*job]struct{} // jobs workers hold now
	restarts     int               // resets because the remote changed
	fetched      int64             // bytes received
	rate         *rateWindow       // made when the first byte arrives
	shaFailures  int               // whole-file digest mismatches
	hashFailures int               // per-block digest mismatches
	doneSent     bool              // OnDone was called for the current outcome
	verified     bool              // the whole-file digest matched
	verifying    bool              // a worker is checking the whole-file digest
	srcs         []*source         // the main URL, then the mirrors
	pref         *source           // where reads go: the last source that worked
	srcNext      int               // spreads background jobs over the sources
	srcFailures  int               // sources failed in a row
	mainOnly     bool              // after a digest mismatch: mirrors are not trusted
	prio         manifest.Priority // background priority
}

// changedLocked returns the channel closed when the file next changes.
// Files nobody waits on have none: a mount of a million files keeps no
// million channels. Fetcher.mu is held.
func (fl *File) changedLocked() chan struct{} {
	if fl.changed == nil {
		fl.changed = make(chan struct{})
	}
	return fl.changed
}

// claimLocked records that job j will fetch block i. Fetcher.mu is held.
func (fl *File) claimLocked(i int64, j *job) {
	if fl.claims == nil {
		fl.claims = make(map[int64]*job)
	}
	fl.claims[i] = j
}

// Path is the file's path in the manifest.
func (fl *File) Path() string { return fl.spec.Path }

// notifyLocked wakes every reader waiting on the file. Fetcher.mu is held.
func (fl *File) notifyLocked() {
	if fl.changed != nil {
		close(fl.changed)
		fl.changed = nil
	}
}

// Size returns the size of the remote file, asking the origin when it is
// neither declared nor pinned.
func (fl *File) Size(ctx context.Context) (int64, error) {
	fl.f.mu.Lock()
	size, err := fl.size, fl.err
	fl.f.mu.Unlock()
	if size >= 0 {
		return size, nil
	}
	if err != nil {
		return -1, err
	}
	r, err := fl.f.probe(ctx, fl)
	if err != nil {
		return -1, fmt.Errorf("fetcher: size of %s: %w", fl.spec.URL, err)
	}
	fl.f.mu.Lock()
	if fl.size < 0 {
		fl.size = r.Size
	}
	size = fl.size
	fl.f.mu.Unlock()
	return size, nil
}

// blocks is the number of blocks of a file of the given size.
func (fl *File) blocks(size int64) int64 { return (size + fl.bs - 1) / fl.bs }

// Ensure waits until the bytes [off, off+n) are local, fetching missing blocks
// first at demand priority. The range is clipped to the file's size. It
// returns ctx.Err() when ctx ends, an error wrapping ErrTimeout after
// Options.ReadTimeout, ErrClosed once the fetcher closes, and the file's
// error when it failed.
func (fl *File) Ensure(ctx context.Context, off, n int64) error {
	_, err := fl.ensure(ctx, off, n, true, nil)
	return err
}

// EnsureCopy is Ensure for the bytes [off, off+len(p)), which lie within
// the file, except that it may copy them into p from a block that is
// received but not yet in the store (and then returns true): a read need
// not wait for the store's write. When it returns false with a nil error,
// the bytes are local and the caller reads them from the store.
func (fl *File) EnsureCopy(ctx context.Context, p []byte, off int64) (bool, error) {
	return fl.ensure(ctx, off, int64(len(p)), true, p)
}

func (fl *File) ensure(ctx context.Context, off, n int64, useTimeout bool, p []byte) (copied bool, err error) {
	size, err := fl.Size(ctx)
	if err != nil {
		return false, err
	}
	if off >= size || n <= 0 {
		return false, nil
	}
	if off+n > size {
		p = nil // only whole requests are copied
	}
	n = min(n, size-off)
	first, last := off/fl.bs, (off+n-1)/fl.bs
	var timeout <-chan time.Time
	if d := fl.f.opts.ReadTimeout; d > 0 && useTimeout {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	fl.f.mu.Lock()
	storeErrs := fl.storeErrs
	fl.f.mu.Unlock()
	counted := false
	defer func() {
		if counted {
			fl.f.mu.Lock()
			fl.endWaitLocked()
			fl.f.mu.Unlock()
		}
	}()
	for {
		fl.f.mu.Lock()
		ch, err, closed := fl.changedLocked(), fl.err, fl.f.closed
		if fl.storeErrs != storeErrs {
			// The store failed to keep bytes while this read waited.
			err = fl.storeErr
		}
		fl.f.mu.Unlock()
		switch {
		case closed:
			return false, ErrClosed
		case err != nil:
			return false, err
		}
		// ch was taken before this check, so a block landing after it
		// closes ch: no wake-up is lost.
		m := fl.st.Missing(first, last)
		if m < 0 {
			return false, nil
		}
		_, gen, _ := fl.st.Remote()
		fl.f.mu.Lock()
		if p != nil && fl.copyInFlightLocked(p, off, gen) {
			return true, nil // copyInFlightLocked released the lock
		}
		if !counted && p != nil {
			// Only now is the read known to wait: received blocks of
			// this file are published for it from here on.
			fl.beginWaitLocked()
			counted = true
		}
		fl.requestLocked(m, last, classDemand)
		fl.f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timeout:
			return false, fmt.Errorf("%w: %s: bytes %d-%d not local after %s", ErrTimeout, fl.spec.Path, off, off+n-1, fl.f.opts.ReadTimeout)
		}
	}
}

// Request asks for [off, off+n) at demand priority without waiting for it
// (a read on a non-blocking handle that answers EAGAIN meanwhile).
func (fl *File) Request(off, n int64) { fl.request(off, n, classDemand) }

// Readahead asks for [off, off+n) ahead of need; it never blocks.
func (fl *File) Readahead(off, n int64) { fl.request(off, n, classReadahead) }

func (fl *File) request(off, n int64, c class) {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	size := fl.size
	if size < 0 || off >= size || n <= 0 || fl.err != nil || fl.f.closed {
		return
	}
	n = min(n, size-off)
	first, last := off/fl.bs, (off+n-1)/fl.bs
	if m := fl.st.Missing(first, last); m >= 0 {
		fl.requestLocked(m, last, c)
	}
}

// LastError returns the last transient error of a transfer that is being
// retried, or nil.
func (fl *File) LastError() error {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	return fl.lastErr
}

// State returns the transfer state and, when failed, the reason.
func (fl *File) State() (State, error) {
	fl.f.mu.Lock()
	size, err, verified := fl.size, fl.err, fl.verified || fl.spec.SHA256 == ""
	fl.f.mu.Unlock()
	switch {
	case err != nil:
		return StateFailed, err
	case fl.complete(size) && verified:
		// A file with a digest is complete only once it matched.
		return StateComplete, nil
	case fl.st.LocalBytes() > 0:
		return StatePartial, nil
	}
	return StateRemote, nil
}

// complete reports whether every block of a file of the given size is local
// and its version is pinned.
func (fl *File) complete(size int64) bool {
	if size <= 0 {
		return size == 0
	}
	if _, _, ok := fl.st.Remote(); !ok {
		return false
	}
	return size == 0 || fl.st.Missing(0, fl.blocks(size)-1) < 0
}

// requestLocked makes sure every missing block in [first, last] is fetched
// by some job of at least class c: it queues jobs for unclaimed blocks,
// raises queued jobs to c, and steals blocks from running lower-class jobs
// that would reach them only later. Fetcher.mu is held.
func (fl *File) requestLocked(first, last int64, c class) {
	f := fl.f
	if fl.noRange {
		fl.requestStreamLocked(c)
		return
	}
	runStart := int64(-1)
	flush := func(end int64) {
		if runStart >= 0 {
			f.pushLocked(fl, runStart, end, c)
			runStart = -1
		}
	}
	maxRun := max(1, f.opts.ChunkSize/fl.bs)
	for i := first; i <= last; i++ {
		if fl.st.Present(i) {
			flush(i - 1)
			continue
		}
		if j := fl.claims[i]; j != nil {
			if !f.raiseOrStealLocked(j, i, c) {
				flush(i - 1)
				continue
			}
		}
		if runStart < 0 {
			runStart = i
		}
		if i-runStart+1 >= maxRun {
			flush(i)
		}
	}
	flush(last)
}

// requestStreamLocked makes sure a stream of class at least c runs or is
// queued for a file whose origin ignores Range. Fetcher.mu is held.
func (fl *File) requestStreamLocked(c class) {
	if j := fl.stream; j != nil {
		if !j.running && j.class < c {
			fl.f.queue.raise(j, c)
		}
		return
	}
	size := fl.size
	if size <= 0 {
		return
	}
	fl.stream = fl.f.pushLocked(fl, 0, fl.blocks(size)-1, c)
	fl.stream.stream = true
}

// fail marks the file failed for good and wakes its readers.
func (fl *File) failLocked(err error) {
	if fl.err == nil {
		fl.err = err
		fl.f.log.Error("transfer failed", "path", fl.spec.Path, "url", fl.spec.URL, "err", err)
	}
	fl.notifyLocked()
}

// backingOffLocked reports whether the file waits out a backoff. Fetcher.mu
// is held.
func (fl *File) backingOffLocked() bool { return time.Now().Before(fl.retryAt) }

// runningLocked returns the set of the file's running jobs, made on first
// use. Fetcher.mu is held.
func (fl *File) runningLocked() map[*job]struct{} {
	if fl.running == nil {
		fl.running = make(map[*job]struct{})
	}
	return fl.running
}
