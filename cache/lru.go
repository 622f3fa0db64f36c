package cache

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// The access clock orders blocks for eviction. It is coarse: one value
// covers every block committed or read between two advances, and it
// advances at most every second while blocks come and go (the space
// goroutine) and before every eviction, so the blocks read since the last
// eviction are always newer than the ones that were not. A read does not
// write to Pebble: it records the block in a set (touch), and the next
// advance rewrites the "b/" value of each recorded block with the closing
// clock and moves its "l/" key, in one unsynced batch. A crash loses at
// most the last second of reads' order, never a block.

// maxTouched is the size of the set of read blocks that makes the space
// goroutine advance the clock before its second is up.
const maxTouched = 1 << 16

// blockRef names one block of a loaded file.
type blockRef struct {
	f   *File
	idx int64
}

// lruClock is the Cache's access clock and the set of blocks read since
// it last advanced.
type lruClock struct {
	// clock is the current value. It changes only with Cache.commitMu
	// held, in the batch that writes "m/clock".
	clock atomic.Uint64
	// used is set when blocks were committed or read since the last
	// advance: an idle cache does not advance (nor write).
	used atomic.Bool

	mu      sync.Mutex // guards touched
	touched map[blockRef]struct{}
}

// touch records that blocks [first, last] of f were read. Cheap: no I/O.
// It reports whether the set is large enough to advance the clock now.
func (l *lruClock) touch(f *File, first, last int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.touched == nil {
		l.touched = make(map[blockRef]struct{})
	}
	for i := first; i <= last; i++ {
		l.touched[blockRef{f, i}] = struct{}{}
	}
	l.used.Store(true)
	return len(l.touched) >= maxTouched
}

func (l *lruClock) take() map[blockRef]struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.touched
	l.touched = nil
	return t
}

// advanceClock stamps every block read since the last advance with the
// current clock, then moves the clock on. force advances even when nothing
// was committed or read meanwhile. The caller holds c.dbMu (read) and not
// c.commitMu.
func (c *Cache) advanceClock(force bool) error {
	if !force && !c.lru.used.Load() {
		return nil
	}
	touched := c.lru.take()
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.lru.used.Store(false)
	cur := c.lru.clock.Load()
	b := c.db.NewBatch()
	defer b.Close()
	for ref := range touched {
		if err := c.stamp(b, ref, cur); err != nil {
			return err
		}
	}
	b.Set(keyClock, u64(cur+1), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("cache: advance the access clock: %w", err)
	}
	c.lru.clock.Store(cur + 1)
	return nil
}

// stamp adds to b the move of block ref to clock cur, if the block is
// durable, of its file's current generation and not stamped already.
// c.commitMu is held.
func (c *Cache) stamp(b *pebble.Batch, ref blockRef, cur uint64) error {
	f := ref.f
	k := blockKey(f.id, ref.idx)
	v, closer, err := c.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil // not durable yet (its commit stamps it) or gone
	}
	if err != nil {
		return fmt.Errorf("cache: read block %d of file %d: %w", ref.idx, f.id, err)
	}
	st, err := decodeBlockState(v)
	closer.Close()
	if err != nil {
		return fmt.Errorf("%w (file %d block %d)", err, f.id, ref.idx)
	}
	if st.gen != f.gen.Load() || st.clock == cur {
		return nil
	}
	b.Delete(lruKey(st.clock, f.id, ref.idx), nil)
	st.clock = cur
	b.Set(k, st.encode(), nil)
	if !f.keep.Load() {
		b.Set(lruKey(cur, f.id, ref.idx), nil, nil)
	}
	return nil
}

// forEachBlock calls fn with the index and state of every "b/" key of f.
// c.commitMu is held, so the set does not change meanwhile.
func (f *File) forEachBlock(fn func(idx int64, st blockState)) error {
	lo, hi := blockSpan(f.id)
	it, err := f.c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("cache: read blocks of file %d: %w", f.id, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := parseBlockKey(it.Key(), f.id)
		if err != nil {
			it.Close()
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("cache: read blocks of file %d: %w", f.id, err)
		}
		st, err := decodeBlockState(v)
		if err != nil {
			it.Close()
			return fmt.Errorf("%w (file %d block %d)", err, f.id, idx)
		}
		fn(idx, st)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cache: read blocks of file %d: %w", f.id, err)
	}
	return nil
}

// deleteLRUKeys adds to b the deletion of the "l/" key of every stored
// block of f. c.commitMu is held.
func (f *File) deleteLRUKeys(b *pebble.Batch) error {
	return f.forEachBlock(func(idx int64, st blockState) {
		b.Delete(lruKey(st.clock, f.id, idx), nil)
	})
}

// addLRUKeys adds to b an "l/" key for every stored block of f, with the
// block's clock. c.commitMu is held.
func (f *File) addLRUKeys(b *pebble.Batch) error {
	return f.forEachBlock(func(idx int64, st blockState) {
		b.Set(lruKey(st.clock, f.id, idx), nil, nil)
	})
}
