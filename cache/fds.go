package cache

import (
	"container/list"
	"fmt"
	"os"
	"sync"
)

// fdCache keeps at most max data files open, least recently used closed
// first, so a manifest of a million files does not need a million fds.
// A file is opened on its first read or write and stays open until it falls
// out of the LRU or the cache closes. An fd in use (acquired, not yet
// released) or dirty (written through, not yet synced by the committer) is
// never closed by the LRU: Linux reports a writeback error only to fds that
// were open when it happened, so the fd that wrote is the one that syncs.
// While more than max are busy, more than max stay open.
type fdCache struct {
	max int

	// mu guards every field below and, in each File, the fd* fields.
	mu     sync.Mutex
	lru    list.List // of *File with an open fd; front: most recently used
	closed bool
}

// acquire returns f's open data file, opening it if needed. The caller
// must call release(f) when done; the fd stays valid until then.
func (c *fdCache) acquire(f *File) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if f.fd != nil {
		f.fdRefs++
		c.lru.MoveToFront(f.fdElem)
		return f.fd, nil
	}
	fd, err := os.OpenFile(f.DataPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache: open data file: %w", err)
	}
	if !f.fdOpened && f.count.Load() == 0 {
		// First open in this process of a file with no block in the map:
		// whatever the data file holds is garbage (an ID whose record was
		// lost in a crash, or a Reset whose truncate a crash cut off).
		if err := fd.Truncate(0); err != nil {
			fd.Close()
			return nil, fmt.Errorf("cache: truncate data file: %w", err)
		}
	}
	f.fdOpened = true
	f.fd = fd
	f.fdRefs = 1
	f.fdElem = c.lru.PushFront(f)
	c.evictLocked()
	return fd, nil
}

// release ends a use begun by acquire; wrote says the caller wrote
// through the fd.
func (c *fdCache) release(f *File, wrote bool) {
	c.mu.Lock()
	f.fdRefs--
	if wrote {
		f.fdWrites++
	}
	c.evictLocked()
	c.mu.Unlock()
}

// acquireDirty is acquire for the committer: it also returns the write count
// to pass to releaseSynced, and a nil fd (nothing to release) when every
// write through f's fd was synced already.
func (c *fdCache) acquireDirty(f *File) (*os.File, uint64, error) {
	c.mu.Lock()
	if f.fdWrites == f.fdSynced {
		c.mu.Unlock()
		return nil, 0, nil
	}
	seen := f.fdWrites
	c.mu.Unlock()
	fd, err := c.acquire(f)
	return fd, seen, err
}

// releaseSynced ends the committer's use: the writes counted by seen were
// synced (or, if the sync failed, their blocks dropped).
func (c *fdCache) releaseSynced(f *File, seen uint64) {
	c.mu.Lock()
	f.fdRefs--
	if seen > f.fdSynced {
		f.fdSynced = seen
	}
	c.evictLocked()
	c.mu.Unlock()
}

// evictLocked closes idle fds, least recently used first, until at most max
// are open. Closing does not sync: the committer syncs through acquire, and
// fsync on Linux flushes the file's dirty pages whichever fd wrote them.
func (c *fdCache) evictLocked() {
	for e := c.lru.Back(); e != nil && c.lru.Len() > c.max; {
		f := e.Value.(*File)
		prev := e.Prev()
		if f.fdRefs == 0 && f.fdWrites == f.fdSynced {
			f.fd.Close() // read-write fd with nothing to flush; a close error has no consequence
			f.fd = nil
			f.fdElem = nil
			c.lru.Remove(e)
		}
		e = prev
	}
}

// close closes every fd; later acquires fail with ErrClosed.
func (c *fdCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var first error
	for e := c.lru.Front(); e != nil; e = e.Next() {
		f := e.Value.(*File)
		if err := f.fd.Close(); err != nil && first == nil {
			first = fmt.Errorf("cache: close data file: %w", err)
		}
		f.fd = nil
		f.fdElem = nil
	}
	c.lru.Init()
	return first
}
