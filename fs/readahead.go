package fs

import "sync"

const (
	// maxReadaheadWindow bounds how far beyond a sequential read the
	// fetcher is asked to read ahead.
	maxReadaheadWindow = 16 << 20
	// seqSlack is how far beyond the end of the furthest read a read may
	// start and still count as sequential: the kernel sends readahead
	// requests concurrently (a sync and an async window of up to 1 MiB
	// each, split in requests) and go-fuse serves them in parallel, so
	// they may arrive out of order, a few MiB apart.
	seqSlack = 4 << 20
	// lateSlack is how far behind the furthest read of a run a read may
	// start and still belong to the run: a request the kernel sent before
	// the ones already served, arriving late. The kernel has at most
	// max_background (12) readahead requests of up to 1 MiB in flight, so
	// 16 MiB covers them; a read further back starts a new run.
	lateSlack = 16 << 20
	// seqTrigger is how long a sequential run must be before the fetcher
	// is asked to read ahead: twice the kernel's default readahead, so a
	// few small reads close together (a zip entry's header, then its data)
	// do not start a stream.
	seqTrigger = 256 << 10
)

// readahead detects sequential reads on one open file and sizes the window
// the fetcher is asked to read ahead, the way the kernel's readahead does:
// two blocks once a run is long enough, then twice the window each time the
// reader has consumed half of what was asked, up to maxReadaheadWindow. A
// read elsewhere starts a new run; a read of the run that arrives late
// (behind reads already served, as concurrent kernel requests do) neither
// starts one nor shrinks the window.
//
// It also tracks how much of the run the kernel's pages were dropped for
// (behind), so that a long sequential read does not leave the whole file
// in the page cache (invalidate.go).
type readahead struct {
	mu       sync.Mutex
	runStart int64 // where the current sequential run started
	next     int64 // where the furthest read of the run ended
	window   int64 // current window; 0 before the first ask of a run
	asked    int64 // end of the range already handed to the fetcher
	dropped  int64 // pages of the run below this were asked to be dropped
}

// inRunLocked reports whether a read at off belongs to the current run:
// at most seqSlack beyond its furthest read, and not further behind it
// than a late request can be.
func (r *readahead) inRunLocked(off int64) bool {
	return off <= r.next+seqSlack && off >= r.next-lateSlack && off >= r.runStart-seqSlack
}

// advance records a read of [off, end) and returns the range to ask the
// fetcher to read ahead, or n == 0 for none.
func (r *readahead) advance(off, end, blockSize, size int64) (raOff, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.inRunLocked(off) {
		r.runStart, r.next, r.window, r.asked, r.dropped = off, end, 0, end, off
	}
	// A late request of the run's first reads moves its start back.
	r.runStart = min(r.runStart, off)
	r.next = max(r.next, end)
	if r.next-r.runStart < seqTrigger {
		return 0, 0
	}
	limit := max(maxReadaheadWindow, 2*blockSize)
	switch {
	case r.window == 0:
		r.window = min(2*blockSize, limit)
	case r.asked-r.next <= r.window/2:
		r.window = min(2*r.window, limit)
	default:
		return 0, 0 // enough is on its way
	}
	from := max(r.next, r.asked)
	to := min(r.next+r.window, size)
	if to <= from {
		return 0, 0
	}
	r.asked = to
	return from, to - from
}

// behind returns a range [from, to) of the run at least lag behind its
// furthest read whose pages may be dropped, once at least chunk bytes of
// the run are there that were not returned before; to <= from otherwise.
func (r *readahead) behind(lag, chunk int64) (from, to int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	from = max(r.dropped, r.runStart)
	to = r.next - lag
	if to-from < chunk {
		return 0, 0
	}
	r.dropped = to
	return from, to
}
