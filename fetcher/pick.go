package fetcher

// Background fill picks, among the files with background work, one of the
// highest rank, and among those the one that entered its rank first
// (manifest order, unless its rank changed). Picking must not cost a walk
// of every file: a mount of a million files would spend seconds under the
// fetcher's lock for each request. So each rank keeps its files in a queue
// with a cursor: files before the cursor are finished (complete, failed)
// or have left the rank, and are never looked at again unless re-armed,
// which queues them anew. A pick looks at the files from the cursor on
// and stops at the first that has work.

// nRanks is the number of background ranks: the manifest's priorities,
// then rankOpen and rankPinned.
const nRanks = rankPinned + 1

// rankQueue holds the files of one rank in the order they entered it. A
// file may be in it more than once, and in other ranks' queues too: an
// entry counts only while the file's rank is the queue's.
type rankQueue struct {
	files []*File
	from  int // entries before it are finished or stale
}

// queueLocked puts fl at the end of the queue of its current rank: when
// it is added, when its rank changes, and when it has background work
// again after finishing (re-armed). Fetcher.mu is held.
func (f *Fetcher) queueLocked(fl *File) {
	r := fl.rank()
	q := &f.ranks[r]
	q.files = append(q.files, fl)
	if len(q.files)-q.from > 2*len(f.files)+64 {
		q.compact(r)
	}
}

// compact drops the finished, stale and repeated entries behind the
// cursor's end, keeping the order of the rest.
func (q *rankQueue) compact(r int) {
	seen := make(map[*File]bool)
	kept := q.files[:0]
	for _, fl := range q.files[q.from:] {
		if seen[fl] || fl.rank() != r {
			continue
		}
		seen[fl] = true
		kept = append(kept, fl)
	}
	clear(q.files[len(kept):])
	q.files, q.from = kept, 0
}

// rank is rankLocked as an index into Fetcher.ranks. Fetcher.mu is held.
func (fl *File) rank() int { return min(max(fl.rankLocked(), 0), nRanks-1) }

// pickLocked returns the file background fill should work on next, or nil.
// Files backing off make the fetcher look again when their backoff ends.
// Fetcher.mu is held.
func (f *Fetcher) pickLocked() *File {
	for r := nRanks - 1; r >= 0; r-- {
		q := &f.ranks[r]
		prefix := true // every entry before this one is finished or stale
		for i := q.from; i < len(q.files); i++ {
			fl := q.files[i]
			if fl.rank() != r || fl.done || fl.err != nil {
				if prefix {
					q.from = i + 1
				}
				continue
			}
			prefix = false
			if fl.paused || fl.size < 0 {
				continue
			}
			if fl.backingOffLocked() {
				f.wakeAtLocked(fl.retryAt)
				continue
			}
			if fl.hasBackgroundWorkLocked() {
				return fl
			}
		}
	}
	return nil
}
