package fs

import (
	"sync"
	"syscall"

	"ferry/fetcher"
)

// invalidator drops the kernel's cached pages of a file whose local copy
// was dropped: the remote changed, or the file failed its digest. Without
// it the kernel could go on serving the old bytes from its page cache,
// which never asks this process.
//
// The notification must not be sent from inside a FUSE request (go-fuse,
// "Deadlocks"), nor from a fetcher worker that a pending read may be
// waiting on, so each runs on its own goroutine; close waits for them.
type invalidator struct {
	log interface{ Warn(string, ...any) }

	mu     sync.Mutex
	nodes  map[string]*fileNode // by manifest path; filled before the mount is live
	closed bool
	wg     sync.WaitGroup
}

func newInvalidator(log interface{ Warn(string, ...any) }) *invalidator {
	return &invalidator{log: log, nodes: make(map[string]*fileNode)}
}

func (iv *invalidator) add(n *fileNode) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.nodes[n.path] = n
}

// reset is fetcher.Options.OnReset.
func (iv *invalidator) reset(fl *fetcher.File) { iv.drop(fl.Path()) }

// done wraps fetcher.Options.OnDone: a failed file loses its cached pages,
// so that reads fail with EIO.
func (iv *invalidator) done(next func(fetcher.Info)) func(fetcher.Info) {
	return func(i fetcher.Info) {
		if i.State == fetcher.StateFailed {
			iv.drop(i.Path)
		}
		if next != nil {
			next(i)
		}
	}
}

// drop invalidates every cached page of the file at path.
func (iv *invalidator) drop(path string) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	n := iv.nodes[path]
	if n == nil || iv.closed {
		return
	}
	iv.wg.Add(1)
	go func() {
		defer iv.wg.Done()
		// ENOENT: the kernel never looked the file up, so it caches
		// nothing of it.
		if errno := n.NotifyContent(0, 0); errno != 0 && errno != syscall.ENOENT {
			iv.log.Warn("fs: dropping the kernel's cached pages", "path", n.path, "err", errno)
		}
	}()
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
