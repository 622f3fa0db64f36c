package cache

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// SetPinned pins the file's local copy, or unpins it, durably (ferry pin):
// the cache never evicts the blocks of a pinned file. Not to be confused
// with Pin, which pins the remote version. The pin is in the file's record,
// so it holds across restarts, also for a file that is no longer in the
// manifest.
func (f *File) SetPinned(pinned bool) error {
	c := f.c
	if err := c.enter(); err != nil {
		return err
	}
	defer c.dbMu.RUnlock()
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec.KeepLocal == pinned {
		return nil
	}
	rec := f.rec
	rec.KeepLocal = pinned
	if err := f.setKeep(&rec, pinned || f.manifestPin); err != nil {
		return err
	}
	f.rec = rec
	return nil
}

// SetManifestPin pins the file's local copy, or unpins it, for the life of
// this Cache: the manifest's "pin" field, which the manifest states again
// at every mount. A file pinned either way is pinned.
func (f *File) SetManifestPin(pinned bool) error {
	c := f.c
	if err := c.enter(); err != nil {
		return err
	}
	defer c.dbMu.RUnlock()
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.manifestPin == pinned {
		return nil
	}
	if err := f.setKeep(nil, pinned || f.rec.KeepLocal); err != nil {
		return err
	}
	f.manifestPin = pinned
	return nil
}

// setKeep writes rec (if not nil, synced) and makes keep the file's pinned
// state. An unpinned file's blocks get their "l/" keys back, in the same
// batch; a pinned file's keys are dropped by eviction when it meets them.
// c.filesMu and f.mu (write) are held.
func (f *File) setKeep(rec *Record, keep bool) error {
	c := f.c
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	b := c.db.NewBatch()
	defer b.Close()
	if rec != nil {
		putRecord(b, rec)
	}
	if !keep && f.keep.Load() {
		if err := f.addLRUKeys(b); err != nil {
			return err
		}
	}
	if !b.Empty() {
		opts := pebble.NoSync
		if rec != nil {
			opts = pebble.Sync
		}
		if err := b.Commit(opts); err != nil {
			return fmt.Errorf("cache: pin %q: %w", f.rec.Path, err)
		}
	}
	f.keep.Store(keep)
	if keep {
		c.keepFiles[f] = struct{}{}
	} else {
		delete(c.keepFiles, f)
	}
	return nil
}

// Pinned reports whether the file's local copy is pinned (SetPinned or
// SetManifestPin).
func (f *File) Pinned() bool { return f.keep.Load() }

// HoldComplete keeps the file's blocks from eviction if the file is
// complete, and reports whether it is; each true must be matched by one
// Unhold. The FUSE layer holds a file while the kernel reads its data file
// directly (passthrough): a hole punched under such a reader would read as
// zeros, and the kernel does not ask before it reads.
func (f *File) HoldComplete() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.holds.Add(1)
	if f.Complete() {
		return true
	}
	f.holds.Add(-1)
	return false
}

// Unhold ends one HoldComplete that returned true.
func (f *File) Unhold() {
	if f.holds.Add(-1) == 0 {
		f.c.space.signal() // it may be over its limit because of the hold
	}
}

// SetDropHook makes the cache call fn after eviction removed blocks of the
// file (not after Reset or Evict, which the caller asked for), so that
// background fill looks at the file again. fn runs with no lock of the
// cache held, on the goroutine that evicted (a writer, or the cache's
// space goroutine); it must not block long.
func (f *File) SetDropHook(fn func()) {
	if fn == nil {
		f.onDrop.Store(nil)
		return
	}
	f.onDrop.Store(&fn)
}

// pinnedBytes is the size of the pinned files loaded in this process: the
// pinned remote size, else the declared size, else the local bytes.
func (c *Cache) pinnedBytes() int64 {
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	var n int64
	for f := range c.keepFiles {
		f.mu.RLock()
		switch {
		case f.rec.Pinned:
			n += f.rec.Remote.Size
		case f.rec.DeclaredSize >= 0:
			n += f.rec.DeclaredSize
		default:
			n += f.local.Load()
		}
		f.mu.RUnlock()
	}
	return n
}

// PinsExceedLimit reports whether the pinned files alone (see Stats) are
// larger than the cache's current limit: then the limit cannot hold, and
// background fill of pinned files stops when the limit is reached.
func (c *Cache) PinsExceedLimit() (pinned, limit int64, exceeded bool) {
	pinned = c.pinnedBytes()
	limit = c.limit()
	return pinned, limit, pinned > limit
}

// limit is the most bytes of blocks the cache may hold now.
func (c *Cache) limit() int64 {
	s := &c.space
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limitLocked(s.usedLocked())
}
