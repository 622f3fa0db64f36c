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
	seqSlack = 2 << 20
)

// readahead detects sequential reads on one open file and sizes the window
// to ask the fetcher for: two blocks at first, doubling on every further
// sequential read up to maxReadaheadWindow. A read elsewhere resets it.
type readahead struct {
	mu     sync.Mutex
	next   int64 // where the furthest read so far ended
	window int64 // current window; 0 after a random read
	asked  int64 // end of the range already handed to the fetcher
}

// advance records a read of [off, end) and returns the range to ask the
// fetcher to read ahead, or n == 0 for none.
func (r *readahead) advance(off, end, blockSize, size int64) (raOff, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off < r.next-seqSlack || off > r.next+seqSlack {
		r.next, r.window, r.asked = end, 0, end
		return 0, 0
	}
	r.next = max(r.next, end)
	r.window = min(max(2*blockSize, 2*r.window), max(maxReadaheadWindow, 2*blockSize))
	from := max(r.next, r.asked)
	to := min(r.next+r.window, size)
	if to <= from {
		return 0, 0
	}
	r.asked = to
	return from, to - from
}
