package fetcher

import "time"

// Background fill gives way to reads: between two blocks of a response, a
// background transfer pauses while a read's job runs and for readQuiet
// after, so the read's request does not queue behind background bytes on
// the origin, the network and the CPU. A floor keeps the fill going
// whatever the reads do: together, the background transfers receive at
// least floorRate.
//
// Paused transfers must not cost the reads they give way to: each waits on
// a channel of its own for a slot of the floor, granted one at a time in
// order by one timer, and on one channel closed when the reads went quiet.
// Nothing wakes them when a read ends (with reads back to back, that woke
// every paused transfer once per read, and they all took Fetcher.mu just
// when the next read wanted it).
const (
	readQuiet = 3 * time.Millisecond
	floorRate = 48 << 20 // bytes per second
)

// floorWaiter is a paused background transfer waiting for a slot of the
// floor.
type floorWaiter struct {
	n  int64         // bytes of the block it receives next
	ch chan struct{} // closed when granted (floorFired)
}

// yieldGate is the state of the pauses; guarded by Fetcher.mu.
type yieldGate struct {
	demandEnd  time.Time     // when demandActive last dropped to 0
	quiet      chan struct{} // closed and replaced when the reads went quiet
	quietTimer *time.Timer
	quietArmed bool
	floorNext  time.Time // the next slot of the floor opens then
	floorQ     []*floorWaiter
	floorTimer *time.Timer
	floorArmed bool
}

// yieldToReads pauses background job j before its next block, of n bytes,
// while reads go on (see readQuiet). A job holding blocks a read waits for
// never pauses. The caller checked that j is a background job (the class
// of a running job does not change).
func (f *Fetcher) yieldToReads(j *job, n int64) {
	var w *floorWaiter
	for {
		f.mu.Lock()
		now := time.Now()
		if f.waiting[j.file] > 0 || f.closed || f.readsQuietLocked(now) {
			f.dropWaiterLocked(w)
			f.mu.Unlock()
			return
		}
		g := &f.yield
		if w == nil {
			if len(g.floorQ) == 0 && !now.Before(g.floorNext) {
				g.floorNext = now.Add(floorSlot(n))
				f.mu.Unlock()
				return
			}
			w = &floorWaiter{n: n, ch: make(chan struct{})}
			g.floorQ = append(g.floorQ, w)
			f.armFloorLocked(now)
		}
		quiet := g.quiet
		f.mu.Unlock()
		select {
		case <-w.ch:
			return
		case <-quiet:
		case <-f.ctx.Done():
			f.mu.Lock()
			f.dropWaiterLocked(w)
			f.mu.Unlock()
			return
		}
	}
}

// floorSlot is how long the floor's share of n bytes takes.
func floorSlot(n int64) time.Duration { return time.Duration(n) * time.Second / floorRate }

// readsQuietLocked reports whether no read's job runs and none ended in
// the last readQuiet. Fetcher.mu is held.
func (f *Fetcher) readsQuietLocked(now time.Time) bool {
	return f.demandActive == 0 && !now.Before(f.yield.demandEnd.Add(readQuiet))
}

// demandEndedLocked is called when demandActive dropped to 0: paused
// transfers go on once the reads stay quiet for readQuiet. Fetcher.mu is
// held.
func (f *Fetcher) demandEndedLocked() {
	g := &f.yield
	g.demandEnd = time.Now()
	if g.quietArmed {
		return
	}
	g.quietArmed = true
	arm(&g.quietTimer, readQuiet, f.quietFired)
}

// arm starts *t to call fn after d, making the timer on first use.
func arm(t **time.Timer, d time.Duration, fn func()) {
	if *t == nil {
		*t = time.AfterFunc(d, fn)
	} else {
		(*t).Reset(d)
	}
}

// quietFired wakes the paused transfers if the reads stayed quiet, and
// waits again for the rest of the quiet time if a read ran meanwhile.
func (f *Fetcher) quietFired() {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := &f.yield
	g.quietArmed = false
	if f.demandActive > 0 || f.closed {
		return // demandEndedLocked arms it again
	}
	if rest := time.Until(g.demandEnd.Add(readQuiet)); rest > 0 {
		g.quietArmed = true
		g.quietTimer.Reset(rest)
		return
	}
	close(g.quiet)
	g.quiet = make(chan struct{})
}

// armFloorLocked makes sure the floor's timer runs while transfers wait
// for a slot. Fetcher.mu is held.
func (f *Fetcher) armFloorLocked(now time.Time) {
	g := &f.yield
	if g.floorArmed || len(g.floorQ) == 0 {
		return
	}
	g.floorArmed = true
	arm(&g.floorTimer, max(g.floorNext.Sub(now), 0), f.floorFired)
}

// floorFired grants the next slot of the floor to the first waiting
// transfer.
func (f *Fetcher) floorFired() {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := &f.yield
	g.floorArmed = false
	now := time.Now()
	if len(g.floorQ) > 0 && !now.Before(g.floorNext) {
		w := g.floorQ[0]
		g.floorQ[0] = nil
		g.floorQ = g.floorQ[1:]
		close(w.ch)
		g.floorNext = now.Add(floorSlot(w.n))
	}
	f.armFloorLocked(now)
}

// dropWaiterLocked takes w out of the floor's queue, if it is there (a
// granted one no longer is). Fetcher.mu is held.
func (f *Fetcher) dropWaiterLocked(w *floorWaiter) {
	if w == nil {
		return
	}
	g := &f.yield
	for i, x := range g.floorQ {
		if x == w {
			g.floorQ = append(g.floorQ[:i], g.floorQ[i+1:]...)
			return
		}
	}
}

// stopYieldLocked stops the timers (Close). Fetcher.mu is held.
func (f *Fetcher) stopYieldLocked() {
	g := &f.yield
	if g.quietTimer != nil {
		g.quietTimer.Stop()
	}
	if g.floorTimer != nil {
		g.floorTimer.Stop()
	}
	close(g.quiet)
	g.quiet = make(chan struct{})
}
