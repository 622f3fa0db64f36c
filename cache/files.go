package cache

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// FileSpec names one manifest entry for Files: the arguments of File.
type FileSpec struct {
	Path         string
	URL          string
	DeclaredSize int64 // -1: unknown
	BlockSize    int64 // of a new record
}

// recordBatch is how many new records Files writes per batch.
const recordBatch = 10_000

// Files is File for many entries at once, for a mount of a large
// manifest: it returns the files of specs in their order. Instead of a
// look-up per path it walks the "p/" keys once, in path order, beside the
// sorted paths (not at all when the map holds no record), and it writes
// new records in batches of recordBatch. On error no file is returned;
// records written before it stay (as File would leave them).
func (c *Cache) Files(specs []FileSpec) ([]*File, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.dbMu.RUnlock()
	for _, s := range specs {
		switch {
		case s.Path == "":
			return nil, errors.New("cache: empty path")
		case s.DeclaredSize < -1:
			return nil, fmt.Errorf("cache: %s: declared size %d: want -1 (unknown) or >= 0", s.Path, s.DeclaredSize)
		}
	}
	order := make([]int32, len(specs))
	for i := range order {
		order[i] = int32(i)
	}
	if !slices.IsSortedFunc(order, func(a, b int32) int { return strings.Compare(specs[a].Path, specs[b].Path) }) {
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(specs[a].Path, specs[b].Path) })
	}

	c.filesMu.Lock()
	out, err := c.openRecords(specs, order)
	c.filesMu.Unlock()
	if err != nil {
		return nil, err
	}
	// As File: apply the manifest's URL and size to records that exist.
	for i, f := range out {
		if err := f.update(specs[i].URL, specs[i].DeclaredSize); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// openRecords finds or creates the records of specs, visited in order
// (sorted by path). filesMu is held.
func (c *Cache) openRecords(specs []FileSpec, order []int32) ([]*File, error) {
	if err := c.recoverRecent(); err != nil {
		return nil, err
	}
	out := make([]*File, len(specs))
	var it *pebble.Iterator
	if c.fileCount.Load() > 0 {
		hi := append(append([]byte(nil), prefixPath[:len(prefixPath)-1]...), prefixPath[len(prefixPath)-1]+1)
		var err error
		if it, err = c.db.NewIter(&pebble.IterOptions{LowerBound: prefixPath, UpperBound: hi}); err != nil {
			return nil, fmt.Errorf("cache: list records: %w", err)
		}
		defer it.Close()
		it.First()
	}
	nb := newRecordBatcher(c)
	defer nb.close()
	for _, oi := range order {
		s := &specs[oi]
		if f := c.files[s.Path]; f != nil {
			out[oi] = f
			continue
		}
		f, err := c.loadRecord(it, s.Path)
		if err != nil {
			return nil, err
		}
		if f == nil {
			if f, err = nb.add(s); err != nil {
				return nil, err
			}
		}
		c.files[s.Path] = f
		if f.keep.Load() {
			c.keepFiles[f] = struct{}{}
		}
		out[oi] = f
	}
	if err := nb.flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// loadRecord advances it (at or before path's key, nil when the map has no
// record) to path's record and loads the file, or returns nil when path
// has none.
func (c *Cache) loadRecord(it *pebble.Iterator, path string) (*File, error) {
	if it == nil {
		return nil, nil
	}
	for it.Valid() && string(it.Key()[len(prefixPath):]) < path {
		it.Next()
	}
	if !it.Valid() || string(it.Key()[len(prefixPath):]) != path {
		if err := it.Error(); err != nil {
			return nil, fmt.Errorf("cache: look up %q: %w", path, err)
		}
		return nil, nil
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, fmt.Errorf("cache: look up %q: %w", path, err)
	}
	return c.loadStored(path, v)
}

// recordBatcher writes new records recordBatch at a time, each batch with
// the next ID ("n") as newRecord writes it. No sync, as newRecord.
type recordBatcher struct {
	c     *Cache
	b     *pebble.Batch
	added []string // paths of the records in b
}

func newRecordBatcher(c *Cache) *recordBatcher { return &recordBatcher{c: c} }

// add makes the record of s, written with the batch. filesMu is held.
func (nb *recordBatcher) add(s *FileSpec) (*File, error) {
	c := nb.c
	if s.BlockSize <= 0 || s.BlockSize > maxBlockSize {
		return nil, fmt.Errorf("cache: %s: block size %d: want 1..%d", s.Path, s.BlockSize, maxBlockSize)
	}
	rec := Record{ID: c.nextID, Path: s.Path, URL: s.URL, BlockSize: s.BlockSize,
		DeclaredSize: s.DeclaredSize, Generation: 1}
	if nb.b == nil {
		nb.b = c.db.NewBatch()
	}
	putRecord(nb.b, &rec)
	c.nextID++
	nb.added = append(nb.added, s.Path)
	f := newFile(c, rec)
	if len(nb.added) >= recordBatch {
		if err := nb.flush(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// flush commits the records added since the last flush. filesMu is
// held.
func (nb *recordBatcher) flush() error {
	if nb.b == nil {
		return nil
	}
	c := nb.c
	nb.b.Set(keyNextID, u64(c.nextID), nil)
	err := nb.b.Commit(pebble.NoSync)
	nb.b.Close()
	nb.b = nil
	if err != nil {
		n := len(nb.added)
		nb.drop()
		return fmt.Errorf("cache: create %d records: %w", n, err)
	}
	c.fileCount.Add(int64(len(nb.added)))
	nb.added = nb.added[:0]
	return nil
}

// drop forgets the files of records that were not written: their IDs
// are handed out again. filesMu is held.
func (nb *recordBatcher) drop() {
	c := nb.c
	for _, p := range nb.added {
		delete(c.files, p)
	}
	c.nextID -= uint64(len(nb.added))
	nb.added = nil
}

// close drops a batch that was not committed (after an error). filesMu is
// held.
func (nb *recordBatcher) close() {
	if nb.b != nil {
		nb.b.Close()
		nb.b = nil
		nb.drop()
	}
}
