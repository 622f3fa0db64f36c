package cache

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// Pin records r as the version every block of generation gen comes from.
// It is written without a sync of its own: the group commit that first marks
// a block of this version present is synced and follows it in Pebble's log,
// so the pin is durable before any block relies on it, and the first read
// of a file waits for no sync. ErrStale if gen is not current; an error if a
// different validator is already pinned for gen.
//
// r.Size must be known (>= 0). Blocks written before Pin must fit in it.
func (f *File) Pin(gen uint64, r Remote) error {
	if err := f.c.enter(); err != nil {
		return err
	}
	defer f.c.dbMu.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case gen != f.rec.Generation:
		return ErrStale
	case r.Size < 0:
		return fmt.Errorf("cache: %s: pin with unknown size", f.rec.Path)
	case f.rec.Pinned && f.rec.Remote == r:
		return nil
	case f.rec.Pinned:
		return fmt.Errorf("cache: %s: generation %d is pinned to %+v, not %+v", f.rec.Path, gen, f.rec.Remote, r)
	}
	nb := blocksOf(r.Size, f.bs)
	b := f.bits.Load()
	if i := b.firstSet(nb); i >= 0 {
		return fmt.Errorf("cache: %s: block %d is present but size %d has %d blocks", f.rec.Path, i, r.Size, nb)
	}
	if f.rec.DeclaredSize >= 0 && f.rec.DeclaredSize != r.Size {
		f.c.log.Warn("cache: pinned size differs from the declared size", "path", f.rec.Path,
			"declared", f.rec.DeclaredSize, "size", r.Size)
	}
	rec := f.rec
	rec.Pinned, rec.Remote = true, r
	if err := f.c.writeRecord(&rec, pebble.NoSync); err != nil {
		return fmt.Errorf("cache: pin %q: %w", rec.Path, err)
	}
	f.rec = rec
	if nb > b.capacity() {
		f.bits.Store(b.grown(nb))
	}
	f.nblocks.Store(nb)
	return nil
}

// Reset drops every block and the pinned validator in one batch, releases
// the disk space, and returns the new generation.
func (f *File) Reset(reason string) (uint64, error) {
	if err := f.c.enter(); err != nil {
		return 0, err
	}
	defer f.c.dbMu.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropLocked(dropReset, reason, nil)
}

// Evict drops every block but keeps the pinned validator (ferry evict). It
// bumps the generation like Reset, so writes in flight are refused, but
// does not count as a restart.
func (f *File) Evict() error {
	if err := f.c.enter(); err != nil {
		return err
	}
	defer f.c.dbMu.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.dropLocked(dropEvict, "evict", nil)
	return err
}

type dropKind int

const (
	dropReset dropKind = iota // blocks and validator; a restart
	dropEvict                 // blocks only
)

// dropLocked deletes every block of f and bumps its generation in one
// synced batch, then empties the bitmap and truncates the data file.
// mutate, if not nil, changes the new record before it is written. f.mu is
// write-locked.
func (f *File) dropLocked(kind dropKind, reason string, mutate func(*Record)) (uint64, error) {
	rec := f.rec
	rec.Generation++
	if kind == dropReset {
		rec.Pinned, rec.Remote = false, Remote{}
		rec.Restarts++
	}
	if mutate != nil {
		mutate(&rec)
	}
	if err := f.commitDrop(&rec); err != nil {
		return 0, err
	}
	f.rec = rec
	nb := int64(-1)
	if rec.Pinned {
		nb = blocksOf(rec.Remote.Size, f.bs)
	}
	f.nblocks.Store(nb)
	f.count.Store(0)
	if nb > 0 {
		f.bits.Store(newBitmap(nb))
	} else {
		f.bits.Store(nil)
	}
	f.c.localBytes.Add(-f.local.Swap(0))
	f.c.log.Info("cache: dropped local copy", "path", rec.Path, "reason", reason, "generation", rec.Generation)
	if err := f.c.fds.truncate(f); err != nil {
		return rec.Generation, err
	}
	return rec.Generation, nil
}

// commitDrop commits, in one synced batch, the deletion of every "b/" key
// of f and of their "l/" keys, and the new record rec, and makes rec's
// generation current.
func (f *File) commitDrop(rec *Record) error {
	c := f.c
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	lo, hi := blockSpan(f.id)
	b := c.db.NewBatch()
	defer b.Close()
	if err := f.deleteLRUKeys(b); err != nil {
		return err
	}
	b.DeleteRange(lo, hi, nil)
	putRecord(b, rec)
	total := c.durableBytes - f.durable
	b.Set(keyLocalBytes, u64(uint64(total)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cache: drop blocks of %q: %w", rec.Path, err)
	}
	c.durableBytes = total
	f.durable = 0
	f.gen.Store(rec.Generation)
	return nil
}

// Verify rereads block idx and checks it against the CRC-32C stored in the
// map. It reports false for a block that is not present, and for one whose
// bytes do not match: that block is dropped (no longer present) so it is
// fetched again. A block written but not yet committed is made durable
// first. The error is for I/O and map failures only.
func (f *File) Verify(idx int64) (bool, error) {
	if !f.Present(idx) {
		return false, nil
	}
	st, ok, err := f.storedBlock(idx)
	if err == nil && !ok {
		if err = f.c.Flush(); err == nil {
			st, ok, err = f.storedBlock(idx)
		}
	}
	if err != nil || !ok {
		return false, err
	}
	buf := make([]byte, st.length)
	_, err = f.ReadAt(buf, idx*f.bs)
	if errors.Is(err, ErrNotLocal) {
		return false, nil // evicted meanwhile
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("cache: %s: verify block %d: %w", f.path(), idx, err)
	}
	if err == nil && crc32.Checksum(buf, castagnoli) == st.crc {
		return true, nil
	}
	f.c.log.Warn("cache: block does not match its checksum; dropped", "path", f.path(), "block", idx)
	return false, f.dropBlock(idx, st)
}

// storedBlock reads the "b/" key of block idx; ok is false when it is
// absent or of another generation.
func (f *File) storedBlock(idx int64) (st blockState, ok bool, err error) {
	if err := f.c.enter(); err != nil {
		return st, false, err
	}
	defer f.c.dbMu.RUnlock()
	v, closer, err := f.c.db.Get(blockKey(f.id, idx))
	if errors.Is(err, pebble.ErrNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("cache: read block %d of file %d: %w", idx, f.id, err)
	}
	st, err = decodeBlockState(v)
	closer.Close()
	return st, err == nil && st.gen == f.gen.Load(), err
}

// dropBlock deletes the stored block idx (state st) and clears its bit,
// unless its generation is gone.
func (f *File) dropBlock(idx int64, st blockState) error {
	c := f.c
	if err := c.enter(); err != nil {
		return err
	}
	defer c.dbMu.RUnlock()
	f.mu.RLock()
	defer f.mu.RUnlock()
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if f.gen.Load() != st.gen || !f.bits.Load().has(idx) {
		return nil
	}
	b := c.db.NewBatch()
	defer b.Close()
	b.Delete(blockKey(f.id, idx), nil)
	b.Delete(lruKey(st.clock, f.id, idx), nil)
	total := c.durableBytes - int64(st.length)
	b.Set(keyLocalBytes, u64(uint64(total)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cache: drop block %d of %q: %w", idx, f.rec.Path, err)
	}
	c.durableBytes = total
	f.durable -= int64(st.length)
	f.unset(idx, int64(st.length))
	return nil
}

// truncate empties f's data file so its space is freed. A file never
// created is fine.
func (c *fdCache) truncate(f *File) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitOpenLocked(f)
	var err error
	if f.fd != nil {
		err = f.fd.Truncate(0)
	} else if err = os.Truncate(f.DataPath(), 0); os.IsNotExist(err) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("cache: truncate data file: %w", err)
	}
	return nil
}
