package fetcher

import (
	"container/heap"
	"sync/atomic"
)

// class ranks jobs: a read waiting now, then readahead, then background fill.
type class int

const (
	classBackground class = iota
	classReadahead
	classDemand
)

// job fetches the blocks [first, last] of one file with one request.
type job struct {
	file   *File
	stream bool // a whole-body stream for an origin that ignores Range
	low    bool // readahead or background: counted in Fetcher.lowActive while it runs

	// Guarded by Fetcher.mu.
	first, last int64 // blocks; last shrinks when a read steals the tail
	class       class
	seq         uint64
	index       int  // in the heap; -1 once popped
	running     bool // a worker holds it

	pos atomic.Int64 // the block the running job is receiving now

	cancel func()  // aborts the running request; guarded by Fetcher.mu
	src    *source // where the running job fetches from; guarded by Fetcher.mu
}

// jobHeap orders jobs by class, then by arrival. It keeps each job's index
// current so a job can be raised in place.
type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }

func (h jobHeap) Less(i, j int) bool {
	if h[i].class != h[j].class {
		return h[i].class > h[j].class
	}
	return h[i].seq < h[j].seq
}

func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}

func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	j.index = -1
	return j
}

// raise moves a queued job up to class c.
func (h *jobHeap) raise(j *job, c class) {
	if j.index < 0 || j.class >= c {
		return
	}
	j.class = c
	heap.Fix(h, j.index)
}

// pushLocked queues a job for the blocks [first, last] of fl and claims them
// for it. Fetcher.mu is held.
func (f *Fetcher) pushLocked(fl *File, first, last int64, c class) *job {
	f.seq++
	j := &job{file: fl, first: first, last: last, class: c, seq: f.seq}
	j.pos.Store(first)
	for i := first; i <= last; i++ {
		fl.claimLocked(i, j)
	}
	heap.Push(&f.queue, j)
	f.work.Signal()
	return j
}

// stealDistance is how many blocks ahead of a running lower-class job a
// read must be to take the block from it rather than wait for the job.
const stealDistance = 2

// raiseOrStealLocked decides what to do about block i, which a read of class
// c needs and job j has claimed. It returns false when j will deliver the
// block soon enough (raising j if it is still queued), and true when the
// caller should fetch the block itself: j was cut short before block i.
// Fetcher.mu is held.
func (f *Fetcher) raiseOrStealLocked(j *job, i int64, c class) bool {
	if j.class >= c {
		return false
	}
	if !j.running {
		f.queue.raise(j, c)
		return false
	}
	// Only a read that waits takes blocks over: the bytes the origin sent
	// past the cut are lost, and readahead is not worth that.
	if j.stream || c != classDemand || i-j.pos.Load() < stealDistance {
		return false
	}
	fl := j.file
	for k := i; k <= j.last; k++ {
		if fl.claims[k] == j {
			delete(fl.claims, k)
		}
	}
	j.last = i - 1
	return true
}

// releaseLocked drops the claims j still holds on blocks from block `from`
// on. Fetcher.mu is held.
func (f *Fetcher) releaseLocked(j *job, from int64) {
	fl := j.file
	for k := from; k <= j.last; k++ {
		if fl.claims[k] == j {
			delete(fl.claims, k)
		}
	}
	if fl.stream == j {
		fl.stream = nil
	}
}

// nextLocked returns the next job a free worker should run, or nil when there
// is none now. Fetcher.mu is held.
func (f *Fetcher) nextLocked() *job {
	lowFree := f.lowActive < f.lowLimit()
	if f.queue.Len() > 0 && (f.queue[0].class == classDemand && f.demandFree() || f.queue[0].class != classDemand && lowFree) {
		j := heap.Pop(&f.queue).(*job)
		j.running = true
		j.file.runningLocked()[j] = struct{}{}
		if j.class != classDemand {
			j.low = true
			f.lowActive++
		} else {
			f.demandActive++
		}
		if f.queue.Len() > 0 {
			f.work.Signal() // more is queued: wake the next idle worker
		}
		return j
	}
	if !lowFree || !f.started || !f.opts.Background {
		return nil
	}
	// Queued reads that wait for a demand slot leave the low slots to
	// background fill: reads that never stop must not starve it.
	if f.queue.Len() > 0 && f.queue[0].class != classDemand {
		return nil
	}
	j := f.backgroundLocked()
	if j != nil {
		j.running, j.low = true, true
		j.file.runningLocked()[j] = struct{}{}
		if f.lowActive++; f.lowActive < f.lowLimit() {
			f.work.Signal() // room for more background work
		}
	}
	return j
}

// backgroundLocked picks the next background job: the first run of missing,
// unclaimed blocks of the highest-priority file that has one and is not
// backing off. Fetcher.mu is held.
func (f *Fetcher) backgroundLocked() *job {
	best := f.pickLocked()
	if best == nil {
		return nil
	}
	fl := best
	maxRun := max(1, f.opts.ChunkSize/fl.bs)
	if room := f.opts.Room; room != nil && !room(min(f.opts.ChunkSize, fl.size)) {
		// Little room left (a nearly full disk): fill one block at a
		// time while a block fits, rather than stall until a whole
		// chunk does.
		if fl.noRange || fl.size <= fl.bs || !room(fl.bs) {
			return nil
		}
		maxRun = 1
	}
	if fl.noRange {
		f.seq++
		j := &job{file: fl, stream: true, first: 0, last: fl.blocks(fl.size) - 1, class: classBackground, seq: f.seq, index: -1}
		fl.stream = j
		return j
	}
	nblocks := fl.blocks(fl.size)
	start := fl.bgNext
	for start < nblocks && (fl.st.Present(start) || fl.claims[start] != nil) {
		start++
	}
	end := start
	for end+1 < nblocks && end+1-start < maxRun && !fl.st.Present(end+1) && fl.claims[end+1] == nil {
		end++
	}
	fl.bgNext = end + 1
	f.seq++
	j := &job{file: fl, first: start, last: end, class: classBackground, seq: f.seq, index: -1}
	j.pos.Store(start)
	for i := start; i <= end; i++ {
		fl.claimLocked(i, j)
	}
	return j
}

// hasBackgroundWorkLocked reports whether fl has a missing, unclaimed block
// at or after its background cursor (rewinding the cursor once when it ran
// off the end, since blocks behind it may have been dropped or released).
// Fetcher.mu is held.
func (fl *File) hasBackgroundWorkLocked() bool {
	if fl.noRange {
		return fl.stream == nil && !fl.complete(fl.size)
	}
	nblocks := fl.blocks(fl.size)
	claimed := false
	for pass := 0; pass < 2; pass++ {
		for i := fl.bgNext; i < nblocks; i++ {
			if fl.st.Present(i) {
				continue
			}
			if fl.claims[i] == nil {
				fl.bgNext = i
				return true
			}
			claimed = true
		}
		if fl.bgNext == 0 {
			break
		}
		fl.bgNext = 0
	}
	fl.bgNext = nblocks
	// With nothing missing at all, the file needs no background work until
	// it is reset or a block is dropped.
	fl.done = !claimed && fl.complete(fl.size)
	return false
}
