package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"ferry/fetcher"
)

const (
	// dropLag is how far behind the furthest read of a sequential run the
	// kernel's pages of a file are dropped: beyond the kernel's readahead
	// (at most about 2 MiB ahead of the reader with read_ahead_kb 1024)
	// and a read(2) of up to 8 MiB, whose pages must stay until it copied
	// them. What is left behind a reader that stops is dropped at the
	// release, and an open right after it waits for that (handoverLocked):
	// with 16 MiB (and 8 MiB chunks) that open took 0.1–48 ms, median 5,
	// with 4 MiB (2 MiB chunks) 0.2–10 ms, median 1.6 (6 runs each,
	// loaded machine).
	dropLag = 8 << 20
	// dropChunk is the least a drop behind a reader covers: one
	// notification per 2 MiB read.
	dropChunk = 2 << 20
	// dropMinSize is the smallest file whose pages are dropped when it
	// completes or its last caching handle is released: below it the
	// kernel's own invalidation at the next passthrough open is cheap.
	dropMinSize = 1 << 20
	// handoverWait bounds how long an open of a complete file waits for
	// the drop of its pages that the last release started.
	handoverWait = 100 * time.Millisecond
)

// invalidator drops the kernel's cached pages of files (FUSE
// NOTIFY_INVAL_INODE):
//
//   - of a file whose local copy was dropped (the remote changed, or the
//     file failed its digest). Without it the kernel could go on serving the
//     old bytes from its page cache, which never asks this process.
//   - where the kernel reads the file from the cache's data file
//     (passthrough, for complete files): the pages the kernel cached while
//     the file was read through this process are a second copy of the data
//     file's, and an open in passthrough mode makes the kernel drop them
//     inside open(2) (go-fuse clears FOPEN_KEEP_CACHE on passthrough opens),
//     which took 0.4–0.5 s for 1 GiB. So they are dropped behind a
//     sequential reader, when a file completes and when the last caching
//     handle of a complete file is released, off the open's path.
//
// The notification must not be sent from inside a FUSE request (go-fuse,
// "Deadlocks"), nor from a fetcher worker that a pending read may be
// waiting on, so the drops of a file run on a goroutine of their own, one
// at a time per file; close waits for them.
type invalidator struct {
	log interface{ Warn(string, ...any) }

	mu sync.Mutex
	// wait bounds an open's wait for a handover (handoverWait; tests
	// raise it so that their outcome does not depend on timing).
	wait   time.Duration
	nodes  map[string]*fileNode // by manifest path; added when its inode is made (tree.inode)
	busy   map[*fileNode]*drops // files whose drops are running
	closed bool
	wg     sync.WaitGroup
}

// drops are the ranges of one file still to drop, and a channel closed
// when none are left.
type drops struct {
	ranges [][2]int64 // offset, length; length 0: to the end
	done   chan struct{}
}

func newInvalidator(log interface{ Warn(string, ...any) }) *invalidator {
	return &invalidator{log: log, wait: handoverWait, nodes: make(map[string]*fileNode), busy: make(map[*fileNode]*drops)}
}

func (iv *invalidator) add(n *fileNode) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.nodes[n.path] = n
}

// reset is fetcher.Options.OnReset.
func (iv *invalidator) reset(fl *fetcher.File) { iv.drop(fl.Path()) }

// done wraps fetcher.Options.OnDone: a failed file loses its cached pages,
// so that reads fail with EIO; a complete file loses them where its next
// open will be passthrough.
func (iv *invalidator) done(next func(fetcher.Info)) func(fetcher.Info) {
	return func(i fetcher.Info) {
		switch i.State {
		case fetcher.StateFailed:
			iv.drop(i.Path)
		case fetcher.StateComplete:
			iv.mu.Lock()
			n := iv.nodes[i.Path]
			iv.mu.Unlock()
			if n != nil && n.sh.passthrough.Load() && n.size >= dropMinSize {
				iv.dropRange(n, 0, 0)
			}
		}
		if next != nil {
			next(i)
		}
	}
}

// drop invalidates every cached page of the file at path.
func (iv *invalidator) drop(path string) {
	iv.mu.Lock()
	n := iv.nodes[path]
	iv.mu.Unlock()
	if n != nil {
		iv.dropRange(n, 0, 0)
	}
}

// dropRange invalidates the cached pages of n in [off, off+length), to
// the end if length is 0. It returns at once; the drop runs on the file's
// drop goroutine.
func (iv *invalidator) dropRange(n *fileNode, off, length int64) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.closed {
		return
	}
	d := iv.busy[n]
	if d != nil {
		d.ranges = append(d.ranges, [2]int64{off, length})
		return
	}
	d = &drops{ranges: [][2]int64{{off, length}}, done: make(chan struct{})}
	iv.busy[n] = d
	iv.wg.Add(1)
	go iv.run(n, d)
}

// run sends the drops of n until none are left.
func (iv *invalidator) run(n *fileNode, d *drops) {
	defer iv.wg.Done()
	for {
		iv.mu.Lock()
		todo := d.ranges
		d.ranges = nil
		if len(todo) == 0 {
			delete(iv.busy, n)
			close(d.done)
			iv.mu.Unlock()
			return
		}
		iv.mu.Unlock()
		for _, r := range todo {
			// ENOENT: the kernel never looked the file up (or forgot
			// it), so it caches nothing of it. ENOTCONN, ENODEV, EBADF:
			// the mount is going away.
			switch errno := n.NotifyContent(r[0], r[1]); errno {
			case 0, syscall.ENOENT, syscall.ENOTCONN, syscall.ENODEV, syscall.EBADF:
			default:
				iv.log.Warn("fs: dropping the kernel's cached pages", "path", n.path, "err", errno)
			}
		}
	}
}

// setWait sets how long an open waits for a handover at most.
func (iv *invalidator) setWait(d time.Duration) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.wait = d
}

// pending returns a channel closed once the drops of n that are running
// have ended, or nil if none are.
func (iv *invalidator) pending(n *fileNode) <-chan struct{} {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if d := iv.busy[n]; d != nil {
		return d.done
	}
	return nil
}

// dropBehind drops the kernel's pages of the sequential run that h reads,
// far enough behind it, where the next open of the file will be
// passthrough (for a complete file): the data file's pages are the cache
// then, and these a second copy that the open would drop.
func (n *fileNode) dropBehind(h *handle) {
	iv := n.sh.inval
	if iv == nil || !n.sh.passthrough.Load() {
		return
	}
	if from, to := h.ra.behind(dropLag, dropChunk); to > from {
		iv.dropRange(n, from, to-from)
	}
}

// handoverLocked waits, before an open of a complete file that will be
// passthrough, for drops of the file's pages that are running (the last
// release started one): the kernel's own invalidation at a passthrough
// open would otherwise do the same work inside open(2). It waits at most
// iv.wait. n.mu is held; it is released while waiting.
//
// It does not wait for the release of caching handles that were closed
// but not released yet (close(2) returns before the release is served):
// go-fuse 2.12.1 drops a reference of the node's backing file at the
// release of every handle, also of a caching one (rawBridge.Release calls
// releaseBackingIDRef after the handle's Release), so a passthrough open
// made right after that Release returns can lose its backing file while
// the kernel opens it (EIO; TestLazyConcurrentFirstUse failed so 3 times
// in 600 runs). Such an open is a caching one, as before: a caching handle
// counts as open until go-fuse's release step is over (release.go).
func (n *fileNode) handoverLocked(ctx context.Context) {
	iv := n.sh.inval
	if iv == nil || n.cachedOpen > 0 {
		return
	}
	ch := iv.pending(n)
	if ch == nil {
		return
	}
	iv.mu.Lock()
	wait := iv.wait
	iv.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	n.mu.Unlock()
	select {
	case <-ch:
	case <-timer.C:
	case <-ctx.Done():
	}
	n.mu.Lock()
}

// close stops new invalidations and waits for those running.
func (iv *invalidator) close() {
	if iv == nil {
		return
	}
	iv.mu.Lock()
	iv.closed = true
	iv.mu.Unlock()
	iv.wg.Wait()
}
