package cache

import (
	"container/list"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// File is the local copy of one remote file. It lives as long as its Cache;
// Cache.File returns the same *File for the same path.
type File struct {
	c  *Cache
	id uint64
	bs int64

	// mu is read-locked by WriteBlock from its generation check until the
	// block is queued, by ReadAt from its presence check until its bytes
	// are copied, and by readers of rec; it is write-locked by Pin, Reset,
	// Evict, SetPinned, the update in Cache.File, bitmap growth, and by
	// eviction from the moment it clears a block's bit until the block's
	// hole is punched. So a generation change never interleaves with a
	// write, nobody sets bits in a bitmap that is being replaced, a reader
	// never copies a hole, and no block is rewritten before its old copy's
	// hole is punched.
	mu  sync.RWMutex
	rec Record
	// manifestPin is the pin the manifest asks for (SetManifestPin); not
	// persisted. Guarded by mu.
	manifestPin bool

	// keep mirrors rec.KeepLocal || manifestPin: eviction skips the file.
	// It changes only with both mu and c.commitMu held.
	keep atomic.Bool
	// holds counts HoldComplete calls not yet undone: eviction skips the
	// file while it is positive.
	holds atomic.Int64
	// onDrop is called after eviction removed blocks of the file.
	onDrop atomic.Pointer[func()]

	// gen mirrors rec.Generation. It changes only with both mu and
	// c.commitMu held, so holding either gives a stable value.
	gen atomic.Uint64
	// nblocks is the block count of the pinned size; -1 when not pinned.
	nblocks atomic.Int64
	// bits holds the present blocks; nil when none was ever present.
	bits  atomic.Pointer[bitmap]
	count atomic.Int64 // present blocks
	local atomic.Int64 // bytes of present blocks

	durable   int64 // guarded by c.commitMu: stored bytes of f's "b/" keys
	dirSynced bool  // committer goroutine only: data/ was synced since f's first write

	// Guarded by c.fds.mu (see fdCache).
	fd       *os.File
	fdElem   *list.Element
	fdRefs   int
	fdOpened bool // opened at least once in this process
	// fdOpening is closed when the open of fd in progress ends; nil
	// when none is.
	fdOpening chan struct{}
	fdWrites  uint64 // writes through fd, released
	fdSynced  uint64 // writes of fdWrites that the committer synced
}

// File returns the local copy of the manifest entry at path, creating its
// record on first use. The same *File is returned for the same path while
// the cache is open. If the recorded URL differs from url, or declaredSize
// (-1: unknown) differs from the pinned size, the file is reset first.
// blockSize applies to a new record only; an existing record keeps its own.
func (c *Cache) File(path, url string, declaredSize, blockSize int64) (*File, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.dbMu.RUnlock()
	if path == "" {
		return nil, errors.New("cache: empty path")
	}
	if declaredSize < -1 {
		return nil, fmt.Errorf("cache: %s: declared size %d: want -1 (unknown) or >= 0", path, declaredSize)
	}
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	f := c.files[path]
	if f == nil {
		var err error
		if f, err = c.openRecord(path, url, declaredSize, blockSize); err != nil {
			return nil, err
		}
		c.files[path] = f
		if f.keep.Load() {
			c.keepFiles[f] = struct{}{}
		}
	}
	if err := f.update(url, declaredSize); err != nil {
		return nil, err
	}
	return f, nil
}

// openRecord loads the record of path (one read: the "p/" value holds
// it) and its blocks, or creates the record. filesMu is held.
func (c *Cache) openRecord(path, url string, declaredSize, blockSize int64) (*File, error) {
	if err := c.recoverRecent(); err != nil {
		return nil, err
	}
	v, closer, err := c.db.Get(pathKey(path))
	if errors.Is(err, pebble.ErrNotFound) {
		return c.newRecord(path, url, declaredSize, blockSize)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: look up %q: %w", path, err)
	}
	defer closer.Close()
	return c.loadStored(path, v)
}

// loadStored decodes path's stored record v and loads its block map.
func (c *Cache) loadStored(path string, v []byte) (*File, error) {
	rec, err := decodePathValue(path, v)
	if err != nil {
		return nil, err
	}
	f := newFile(c, rec)
	if err := f.loadBlocks(); err != nil {
		return nil, err
	}
	return f, nil
}

// newRecord writes the record of a new file. No sync: until a synced batch
// follows (the first block commit does), a crash may lose the record, and
// "n" with it in the same batch, so no stored key can name a reused ID.
func (c *Cache) newRecord(path, url string, declaredSize, blockSize int64) (*File, error) {
	if blockSize <= 0 || blockSize > maxBlockSize {
		return nil, fmt.Errorf("cache: %s: block size %d: want 1..%d", path, blockSize, maxBlockSize)
	}
	rec := Record{ID: c.nextID, Path: path, URL: url, BlockSize: blockSize,
		DeclaredSize: declaredSize, Generation: 1}
	b := c.db.NewBatch()
	defer b.Close()
	putRecord(b, &rec)
	b.Set(keyNextID, u64(rec.ID+1), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, fmt.Errorf("cache: create record of %q: %w", path, err)
	}
	c.nextID++
	c.fileCount.Add(1)
	return newFile(c, rec), nil
}

func newFile(c *Cache, rec Record) *File {
	f := &File{c: c, id: rec.ID, bs: rec.BlockSize, rec: rec}
	f.gen.Store(rec.Generation)
	f.keep.Store(rec.KeepLocal)
	f.nblocks.Store(-1)
	if rec.Pinned {
		nb := blocksOf(rec.Remote.Size, rec.BlockSize)
		f.nblocks.Store(nb)
		if nb > 0 {
			f.bits.Store(newBitmap(nb))
		}
	}
	return f
}

// blocksOf is the number of blocks of a file of size bytes.
func blocksOf(size, bs int64) int64 {
	return (size + bs - 1) / bs
}

// update applies the manifest's url and declared size: a changed URL, or a
// declared size that contradicts the pinned one, resets the file.
func (f *File) update(url string, declaredSize int64) error {
	f.mu.RLock()
	same := f.rec.URL == url && f.rec.DeclaredSize == declaredSize
	f.mu.RUnlock()
	if same {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var reason string
	switch {
	case f.rec.URL != url:
		reason = "URL changed"
	case declaredSize >= 0 && f.rec.Pinned && f.rec.Remote.Size != declaredSize:
		reason = fmt.Sprintf("declared size %d differs from pinned size %d", declaredSize, f.rec.Remote.Size)
	}
	set := func(r *Record) { r.URL, r.DeclaredSize = url, declaredSize }
	if reason != "" {
		_, err := f.dropLocked(dropReset, reason, set)
		return err
	}
	rec := f.rec
	set(&rec)
	if err := f.c.writeRecord(&rec, pebble.NoSync); err != nil {
		return fmt.Errorf("cache: update record of %q: %w", rec.Path, err)
	}
	f.rec = rec
	return nil
}

// ID is the file's stable identifier in the block map.
func (f *File) ID() uint64 { return f.id }

// BlockSize is fixed for the life of the record.
func (f *File) BlockSize() int64 { return f.bs }

// Remote returns the pinned validator and the current generation; ok is
// false when nothing is pinned yet.
func (f *File) Remote() (r Remote, gen uint64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rec.Remote, f.rec.Generation, f.rec.Pinned
}

// Record returns a snapshot of the file's record.
func (f *File) Record() Record {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rec
}

// Present reports whether block idx is local. Cheap: no syscall, no allocation.
func (f *File) Present(idx int64) bool { return f.bits.Load().has(idx) }

// Missing returns the index of the first block in [first, last] that is not
// present, or -1 when all are. Lock-free, no allocation. Indexes past the
// last block count as not present: callers clamp last.
func (f *File) Missing(first, last int64) int64 {
	return f.bits.Load().firstClear(first, last)
}

// LocalBytes is the number of bytes of present blocks.
func (f *File) LocalBytes() int64 { return f.local.Load() }

// Complete reports whether a validator is pinned and every block is present.
func (f *File) Complete() bool {
	nb := f.nblocks.Load()
	return nb >= 0 && f.count.Load() == nb
}

// Restarts is how many times the file was reset because the remote changed.
func (f *File) Restarts() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rec.Restarts
}

// DataPath is the sparse data file that holds the blocks (for passthrough).
func (f *File) DataPath() string { return dataPath(f.c.dir, f.id) }

// dataPath is the data file of file id in cache directory dir.
func dataPath(dir string, id uint64) string {
	return filepath.Join(dir, "data", fmt.Sprintf("%016x", id))
}
