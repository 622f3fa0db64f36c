package cache

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// readRecord reads the record of file id from its "f/" key; ok is false
// when there is none.
func (c *Cache) readRecord(id uint64) (rec Record, ok bool, err error) {
	v, closer, err := c.db.Get(fileKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("cache: read record %d: %w", id, err)
	}
	rec, err = decodeRecord(id, v)
	closer.Close()
	return rec, err == nil, err
}

// writeRecord writes rec under its "f/" and "p/" keys in one batch.
func (c *Cache) writeRecord(rec *Record, opts *pebble.WriteOptions) error {
	b := c.db.NewBatch()
	defer b.Close()
	putRecord(b, rec)
	return b.Commit(opts)
}

// loadBlocks sets the bits of f's stored blocks. A stored block that does
// not belong to the record (another generation, or a length that does not
// fit the pinned size) is ignored and deleted. f is not shared yet.
func (f *File) loadBlocks() error {
	lo, hi := blockSpan(f.id)
	it, err := f.c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("cache: read blocks of %q: %w", f.rec.Path, err)
	}
	var stale [][]byte
	var staleBytes, count, local int64
	b := f.bits.Load()
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := parseBlockKey(it.Key(), f.id)
		if err != nil {
			it.Close()
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("cache: read blocks of %q: %w", f.rec.Path, err)
		}
		st, err := decodeBlockState(v)
		if err != nil {
			it.Close()
			return fmt.Errorf("%w (file %q block %d)", err, f.rec.Path, idx)
		}
		if !f.fits(idx, st) {
			stale = append(stale, append([]byte(nil), it.Key()...), lruKey(st.clock, f.id, idx))
			staleBytes += int64(st.length)
			continue
		}
		if idx >= b.capacity() {
			b = b.grown(max(idx+1, 2*b.capacity()))
		}
		b.set(idx)
		count++
		local += int64(st.length)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cache: read blocks of %q: %w", f.rec.Path, err)
	}
	f.bits.Store(b)
	f.count.Store(count)
	f.local.Store(local)
	f.durable = local
	if len(stale) > 0 {
		return f.c.dropStale(f.rec.Path, stale, staleBytes)
	}
	return nil
}

// fits reports whether a stored block belongs to f's current record.
func (f *File) fits(idx int64, st blockState) bool {
	if st.gen != f.rec.Generation || st.length == 0 || int64(st.length) > f.bs {
		return false
	}
	if !f.rec.Pinned {
		return true
	}
	return idx < f.nblocks.Load() && int64(st.length) == f.blockLen(idx)
}

// blockLen is the length of block idx of the pinned size.
func (f *File) blockLen(idx int64) int64 {
	return min(f.bs, f.rec.Remote.Size-idx*f.bs)
}

// dropStale deletes "b/" keys that belong to no current record, and their
// "l/" keys, which keys lists too. No sync: if the deletion is lost, the
// next load deletes them again.
func (c *Cache) dropStale(path string, keys [][]byte, bytes int64) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	b := c.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		b.Delete(k, nil)
	}
	b.Set(keyLocalBytes, u64(uint64(c.durableBytes-bytes)), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("cache: delete stale blocks of %q: %w", path, err)
	}
	c.durableBytes -= bytes
	c.localBytes.Add(-bytes)
	c.log.Info("cache: dropped stale blocks", "path", path, "blocks", len(keys)/2, "bytes", bytes)
	return nil
}

// RecordedPaths calls fn with the path of every file that has a record in
// the block map, in byte order of the paths, until fn returns false. A
// cache whose map holds no record answers without reading it. Records
// of paths the manifest no longer names are listed too.
func (c *Cache) RecordedPaths(fn func(path string) bool) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.dbMu.RUnlock()
	c.filesMu.Lock()
	err := c.recoverRecent()
	c.filesMu.Unlock()
	if err != nil {
		return err
	}
	if c.fileCount.Load() == 0 {
		return nil
	}
	hi := append(append([]byte(nil), prefixPath[:len(prefixPath)-1]...), prefixPath[len(prefixPath)-1]+1)
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: prefixPath, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("cache: list records: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(string(it.Key()[len(prefixPath):])) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cache: list records: %w", err)
	}
	return nil
}
