package fetcher

import (
	"context"
	"time"

	"ferry/manifest"
)

// Ranks above the manifest's priorities, for background fill.
const (
	rankOpen   = int(manifest.Foreground) + 1 // a program has the file open
	rankPinned = int(manifest.Foreground) + 2 // ferry pin: fetch whole now
)

// rankLocked is the file's background rank: its priority, raised while it
// is open or pinned. Fetcher.mu is held.
func (fl *File) rankLocked() int {
	switch {
	case fl.pinned:
		return rankPinned
	case fl.opens > 0:
		return rankOpen
	}
	return int(fl.prio)
}

// rankedLocked queues fl in its new rank if a change left rank old.
// Fetcher.mu is held.
func (fl *File) rankedLocked(old int) {
	if fl.rank() != old {
		fl.f.queueLocked(fl)
	}
}

// SetPriority changes the file's background priority.
func (fl *File) SetPriority(p manifest.Priority) {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	old := fl.rank()
	fl.prio = p // reorders background work, creates none: no wake-up
	fl.rankedLocked(old)
}

// Opened raises the file's background fill while a program has it open;
// every call must be matched by one Closed.
func (fl *File) Opened() {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	old := fl.rank()
	fl.opens++ // reorders background work, creates none: no wake-up
	fl.rankedLocked(old)
}

// Closed drops the raise of one Opened.
func (fl *File) Closed() {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	if fl.opens > 0 {
		old := fl.rank()
		fl.opens--
		fl.rankedLocked(old)
	}
}

// SetPinned makes background fill fetch the whole file before anything else
// (ferry pin, or "pin" in the manifest). Keeping it local is the cache's job.
func (fl *File) SetPinned(pinned bool) {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	old := fl.rank()
	fl.pinned = pinned
	fl.rankedLocked(old)
	if pinned {
		fl.paused = false
	}
	fl.f.work.Signal()
}

// Pause holds the file's background transfer: the running request finishes,
// no new one starts. Reads still fetch what they need.
func (fl *File) Pause() {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	fl.paused = true
}

// Resume continues a paused or cancelled background transfer, and retries a
// failed file.
func (fl *File) Resume() {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	fl.paused = false
	if fl.err != nil {
		fl.err = nil
		fl.shaFailures, fl.hashFailures = 0, 0
		fl.done, fl.doneSent = false, false
		fl.retryAt = time.Time{}
		fl.f.queueLocked(fl) // re-armed
		fl.notifyLocked()
	}
	fl.f.work.Signal()
}

// Cancel drops the file's background transfer at once: it stops the running
// background requests and starts no new one until Resume. Reads still fetch
// what they need; what is local stays.
func (fl *File) Cancel() {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	fl.paused = true
	for j := range fl.running {
		if j.low && j.cancel != nil {
			j.cancel()
		}
	}
}

// Dropped tells the fetcher that blocks of the file were removed from the
// store from outside (ferry evict, cache eviction), so background fill
// looks at the file again.
func (fl *File) Dropped() {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	fl.done, fl.doneSent, fl.bgNext = false, false, 0
	fl.f.queueLocked(fl) // re-armed
	fl.f.work.Signal()
}

// Wake makes idle workers look for background work again: call it when the
// store's Room may have changed.
func (f *Fetcher) Wake() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.work.Signal()
}

// Info is a snapshot of one file's transfer, for status.
type Info struct {
	Path     string
	URL      string
	State    State
	Err      error   // why it failed, or the last transient error while retrying
	Local    int64   // bytes held locally
	Size     int64   // -1 when not known yet
	Rate     float64 // bytes per second over the last few seconds
	Priority manifest.Priority
	Pinned   bool
	Paused   bool
	Open     int   // open handles
	Restarts int   // times the remote changed and the file was refetched
	Fetched  int64 // bytes received from origins since the mount
}

// Info returns a snapshot of the file's transfer.
func (fl *File) Info() Info {
	state, err := fl.State()
	f := fl.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = fl.lastErr
	}
	return Info{
		Path: fl.spec.Path, URL: fl.spec.URL, State: state, Err: err,
		Local: fl.st.LocalBytes(), Size: fl.size, Rate: fl.rate.perSecond(time.Now()),
		Priority: fl.prio, Pinned: fl.pinned, Paused: fl.paused, Open: fl.opens,
		Restarts: fl.restarts, Fetched: fl.fetched,
	}
}

// Files returns every registered file, in the order they were added.
func (f *Fetcher) Files() []*File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*File(nil), f.files...)
}

// Fill fetches the whole file now at demand priority and waits for it,
// without the read timeout (ferry pin).
func (fl *File) Fill(ctx context.Context) error {
	size, err := fl.Size(ctx)
	if err != nil {
		return err
	}
	_, err = fl.ensure(ctx, 0, size, false, nil)
	return err
}

// rateWindow estimates a transfer rate from the bytes of the last few
// whole seconds.
type rateWindow struct {
	sec   [8]int64 // unix second of each bucket
	bytes [8]int64
}

const rateSeconds = 5

func (w *rateWindow) add(now time.Time, n int64) {
	s := now.Unix()
	i := s % int64(len(w.sec))
	if w.sec[i] != s {
		w.sec[i], w.bytes[i] = s, 0
	}
	w.bytes[i] += n
}

func (w *rateWindow) perSecond(now time.Time) float64 {
	if w == nil {
		return 0
	}
	s := now.Unix()
	var sum int64
	for i := range w.sec {
		if age := s - w.sec[i]; age >= 1 && age <= rateSeconds {
			sum += w.bytes[i]
		}
	}
	return float64(sum) / rateSeconds
}
