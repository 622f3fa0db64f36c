package cache

import (
	"container/list"
	"errors"
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

	// openMu lets one data file open (create) run at a time: creates in
	// one directory queue for its lock in the kernel anyway, where a
	// waiter may spin on the other CPU while the create runs.
	openMu sync.Mutex

	// prepares counts the opens Prepare started; close waits for them.
	prepares sync.WaitGroup
}

// acquire returns f's open data file, opening it if needed. The caller
// must call release(f) when done; the fd stays valid until then.
//
// The open itself (for a new file, a create: 0.05-1 ms on a busy ext4) runs
// without mu held, so it holds up no read or write of another file; a
// second acquire of the same file waits for it, and opens of other files
// wait for their turn (openMu).
func (c *fdCache) acquire(f *File) (*os.File, error) {
	c.mu.Lock()
	c.waitOpenLocked(f)
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if f.fd != nil {
		f.fdRefs++
		c.lru.MoveToFront(f.fdElem)
		c.mu.Unlock()
		return f.fd, nil
	}
	// First open in this process of a file with no block in the map:
	// whatever the data file holds is garbage (an ID whose record was
	// lost in a crash, or a Reset whose truncate a crash cut off). No
	// block can be added meanwhile: a write acquires first.
	empty := !f.fdOpened && f.count.Load() == 0
	done := make(chan struct{})
	f.fdOpening = done
	c.mu.Unlock()
	c.openMu.Lock()
	fd, err := openData(f.DataPath(), empty)
	c.openMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	f.fdOpening = nil
	close(done)
	if err == nil && c.closed {
		fd.Close()
		err = ErrClosed
	}
	if err != nil {
		return nil, err
	}
	f.fdOpened = true
	f.fd = fd
	f.fdRefs = 1
	f.fdElem = c.lru.PushFront(f)
	c.evictLocked()
	return fd, nil
}

// waitOpenLocked waits, with mu held (released while waiting), until no
// open of f's data file is in progress.
func (c *fdCache) waitOpenLocked(f *File) {
	for f.fdOpening != nil {
		ch := f.fdOpening
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
}

// openData opens the data file at path read-write, creating it if needed;
// empty says its content is garbage. A file it creates is new and empty:
// only one that existed is truncated (one syscall less on first use).
func openData(path string, empty bool) (*os.File, error) {
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cache: open data file: %w", err)
	}
	if fd, err = os.OpenFile(path, os.O_RDWR, 0o600); err != nil {
		return nil, fmt.Errorf("cache: open data file: %w", err)
	}
	if empty {
		if err := fd.Truncate(0); err != nil {
			fd.Close()
			return nil, fmt.Errorf("cache: truncate data file: %w", err)
		}
	}
	return fd, nil
}

// Prepare opens f's data file in the background, creating it if needed,
// so that the write of its first block does not pay for the create (on a
// busy ext4 0.05-1 ms) while a read waits behind it. It does nothing when
// the data file is open or being opened already, or the cache is closed.
func (f *File) Prepare() {
	c := &f.c.fds
	c.mu.Lock()
	if c.closed || f.fd != nil || f.fdOpening != nil {
		c.mu.Unlock()
		return
	}
	c.prepares.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.prepares.Done()
		if _, err := c.acquire(f); err == nil {
			c.release(f, false /* wrote */)
		}
	}()
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
	defer c.prepares.Wait() // they find the cache closed
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
