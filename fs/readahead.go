package fs

import "sync"

const (
	// maxReadaheadWindow bounds how far beyond a sequential read the
	// fetcher is asked to read ahead.
	maxReadaheadWindow = 16 << 20
	// seqSlack is how far from the end of the previous read a read may
	// start and still count as sequential: the kernel sends readahead
	// requests concurrently and go-fuse serves them in parallel, so they
	// may arrive slightly out of order.
	seqSlack = 1 << 20
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
// read elsewhere starts a new run.
type readahead struct {
	mu       sync.Mutex
	runStart int64 // where the current sequential run started
	next     int64 // where the furthest read of the run ended
	window   int64 // current window; 0 before the first ask of a run
	asked    int64 // end of the range already handed to the fetcher
}

// advance records a read of [off, end) and returns the range to ask the
// fetcher to read ahead, or n == 0 for none.
func (r *readahead) advance(off, end, blockSize, size int64) (raOff, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off < r.next-seqSlack || off > r.next+seqSlack {
		r.runStart, r.next, r.window, r.asked = off, end, 0, end
	}
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
