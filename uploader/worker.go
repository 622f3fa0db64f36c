package uploader

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"slices"
	"time"

	"ferry/cache"
	"ferry/internal/retry"
)

// readyHeap orders queued items by (notBefore, order). An entry is stale
// when its item was queued again (order changed), left the queued state,
// is held or was removed; stale entries are dropped when they surface.
type readyHeap []readyEntry

type readyEntry struct {
	it        *item
	order     uint64
	notBefore time.Time
}

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	if !h[i].notBefore.Equal(h[j].notBefore) {
		return h[i].notBefore.Before(h[j].notBefore)
	}
	return h[i].order < h[j].order
}
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)   { *h = append(*h, x.(readyEntry)) }
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func (h *readyHeap) push(it *item) {
	heap.Push(h, readyEntry{it: it, order: it.order, notBefore: it.notBefore})
}

func (e readyEntry) stale() bool {
	return e.it.removed || e.it.held || e.it.state != StateQueued || e.it.order != e.order
}

// job is one upload attempt: a copy of the record as it was when the
// attempt started, and the generation it belongs to.
type job struct {
	it     *item
	gen    uint64
	rec    cache.OutboxRecord
	ctx    context.Context // cancelled by Modify, Rename, Remove or Close
	verify bool
	unsure bool
}

// changed reports whether the file changed since the job started.
func (j *job) changed() bool { return j.it.gen.Load() != j.gen }

// errChanged ends an attempt whose file changed (or moved) meanwhile.
var errChanged = errors.New("uploader: the file changed during the upload")

func (u *Uploader) worker() {
	defer u.wg.Done()
	for {
		j := u.next()
		if j == nil {
			return
		}
		etag, err := u.attempt(j)
		u.finish(j, etag, err)
	}
}

// next waits for a queued item whose backoff is over and marks it
// uploading. It returns nil once Close ran.
func (u *Uploader) next() *job {
	u.mu.Lock()
	defer u.mu.Unlock()
	for {
		if u.closed {
			return nil
		}
		for u.ready.Len() > 0 && u.ready[0].stale() {
			heap.Pop(&u.ready)
		}
		if u.ready.Len() == 0 {
			u.work.Wait()
			continue
		}
		if wait := time.Until(u.ready[0].notBefore); wait > 0 {
			u.wakeAtLocked(u.ready[0].notBefore)
			u.work.Wait()
			continue
		}
		it := heap.Pop(&u.ready).(readyEntry).it
		ctx, cancel := context.WithCancel(u.ctx)
		it.cancel = cancel
		it.state = StateUploading
		it.sent.Store(0)
		it.rec.Attempts++
		j := &job{it: it, gen: it.gen.Load(), rec: it.rec, ctx: ctx, verify: it.verify, unsure: it.unsure}
		// Not synced: the count only makes a later 412 check whether the
		// server holds our own upload.
		if err := u.persistLocked(it, false); err != nil {
			u.log.Warn("uploader: cannot record an attempt", "path", it.rec.Path, "err", err)
		}
		return j
	}
}

// wakeAtLocked makes sure a waiting worker looks again at t. Uploader.mu is
// held.
func (u *Uploader) wakeAtLocked(t time.Time) {
	if u.wake != nil && !u.wakeAt.After(t) && u.wakeAt.After(time.Now()) {
		return
	}
	if u.wake != nil {
		u.wake.Stop()
	}
	u.wakeAt = t
	u.wake = time.AfterFunc(time.Until(t), func() {
		u.mu.Lock()
		u.work.Broadcast()
		u.mu.Unlock()
	})
}

// finish records the outcome of an attempt and calls the callbacks.
func (u *Uploader) finish(j *job, etag string, err error) {
	it := j.it
	u.mu.Lock()
	current := !j.changed() && !it.removed
	if current && it.cancel != nil {
		it.cancel()
		it.cancel = nil
	}
	var notify func()
	switch {
	case !current:
		// Changed, moved or removed meanwhile: its owner has queued what
		// comes next. If this attempt made it, the server now has an older
		// version of our own file: a re-upload may replace it.
		if err == nil && !it.removed && it.rec.Path == j.rec.Path {
			it.rec.ETag = etag
			u.logPersist(it, false)
		}
	case err == nil:
		notify = u.sentLocked(it, etag)
	case u.closed:
		// Cut short by Close: stays queued (so says the record).
		it.state = StateQueued
	case isPermanent(err):
		it.state = StateFailed
		it.rec.State, it.rec.Err = cache.OutboxFailed, err.Error()
		u.logPersist(it, true)
		u.log.Error("uploader: upload failed", "path", it.rec.Path, "url", u.URL(it.rec.Path), "err", err)
		path := it.rec.Path
		notify = func() { u.done(path, StateFailed, err) }
	default:
		u.retryLocked(it, err)
	}
	if current && err != nil && !isPermanent(err) {
		it.unsure = it.unsure || errors.Is(err, errUnsure)
	}
	u.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// sentLocked records a completed upload and returns what to call once the
// lock is released. Uploader.mu is held.
func (u *Uploader) sentLocked(it *item, etag string) func() {
	path, seq := it.rec.Path, it.rec.Seq
	u.log.Info("uploader: sent", "path", path, "url", u.URL(path), "bytes", it.rec.Size, "attempts", it.rec.Attempts)
	if u.opts.Keep {
		it.state = StateSent
		it.rec.State, it.rec.ETag, it.rec.Err, it.rec.TusURL = cache.OutboxSent, etag, "", ""
		u.logPersist(it, true)
		return func() { u.done(path, StateSent, nil) }
	}
	it.state = StateSent
	it.removed = true
	delete(u.items, seq)
	if err := u.q.DeleteOutbox(seq); err != nil {
		u.log.Error("uploader: cannot drop a sent file from the queue", "path", path, "err", err)
	}
	return func() {
		if u.opts.OnSent != nil {
			u.opts.OnSent(seq)
		}
		u.done(path, StateSent, nil)
	}
}

// retryLocked schedules the next attempt after a transient failure.
// Uploader.mu is held.
func (u *Uploader) retryLocked(it *item, err error) {
	it.failures++
	d := u.backoff(it.failures)
	var se *statusError
	if errors.As(err, &se) && se.retryAfter > d {
		d = se.retryAfter
	}
	it.notBefore = time.Now().Add(d)
	it.rec.Err = err.Error()
	u.logPersist(it, false)
	u.log.Warn("uploader: upload error, retrying", "path", it.rec.Path, "in", d.Round(time.Millisecond),
		"attempt", it.rec.Attempts, "err", err)
	u.queueLocked(it)
}

// backoff is the delay before attempt n+1 (internal/retry).
func (u *Uploader) backoff(n int) time.Duration {
	return retry.Backoff(n, u.opts.Backoff, u.opts.MaxBackoff)
}

// logPersist persists it's record, logging a failure (the outcome stands in
// memory; the record catches up with the next write).
func (u *Uploader) logPersist(it *item, sync bool) {
	if err := u.persistLocked(it, sync); err != nil {
		u.log.Error("uploader: cannot record the upload state", "path", it.rec.Path, "err", err)
	}
}

func (u *Uploader) done(path string, st State, err error) {
	if u.opts.OnDone != nil {
		u.opts.OnDone(path, string(st), err)
	}
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
}
