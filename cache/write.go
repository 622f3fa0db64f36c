package cache

import (
	"errors"
	"fmt"
	"hash/crc32"
	"syscall"
)

// maxBlocks bounds a block index, so a bad index cannot make the bitmap of
// a file whose size is not pinned yet grow without limit.
const maxBlocks = 1 << 32

// WriteBlock stores block idx of generation gen: len(data) is BlockSize,
// except for the last block, which holds the rest of the file. It returns
// ErrStale when gen is not current. The block is readable when WriteBlock
// returns and durable after the next group commit.
//
// Writing a block that is present already does nothing. Before a validator
// is pinned, any length from 1 to BlockSize is accepted.
//
// When the block would take the cache over its bound (Options.MaxSize,
// Options.MinFree), WriteBlock first evicts least recently used blocks
// (space.go). When the disk is full (ENOSPC), it evicts and tries once
// more, then fails with an error that wraps syscall.ENOSPC; nothing stored
// is harmed.
func (f *File) WriteBlock(gen uint64, idx int64, data []byte) error {
	if f.c.closed.Load() {
		return ErrClosed
	}
	if idx < 0 || idx >= maxBlocks || len(data) == 0 || int64(len(data)) > f.bs {
		return fmt.Errorf("cache: %s: block %d of %d bytes: want index 0..%d and 1..%d bytes",
			f.path(), idx, len(data), maxBlocks-1, f.bs)
	}
	if f.Present(idx) && f.gen.Load() == gen {
		return nil
	}
	n := int64(len(data))
	if err := f.c.reserve(n); err != nil {
		return err
	}
	err := f.write(gen, idx, data)
	if errors.Is(err, syscall.ENOSPC) {
		f.c.space.release(n, false)
		if err = f.c.onDiskFull(f, idx, n, err); err != nil {
			return err
		}
		if err = f.c.reserve(n); err != nil {
			return err
		}
		if err = f.write(gen, idx, data); errors.Is(err, syscall.ENOSPC) {
			f.c.space.release(n, false)
			return f.c.diskFullError(f, idx, err)
		}
	}
	f.c.space.release(n, err == nil)
	return err
}

// write is WriteBlock once its room is reserved.
func (f *File) write(gen uint64, idx int64, data []byte) error {
	for {
		f.mu.RLock()
		grow, err := f.writeLocked(gen, idx, data)
		f.mu.RUnlock()
		if !grow {
			return err
		}
		f.grow(idx)
	}
}

// writeLocked is WriteBlock with f.mu read-locked; grow reports that the
// bitmap must grow first.
func (f *File) writeLocked(gen uint64, idx int64, data []byte) (grow bool, err error) {
	if gen != f.rec.Generation {
		return false, ErrStale
	}
	if f.rec.Pinned {
		if nb := f.nblocks.Load(); idx >= nb {
			return false, fmt.Errorf("cache: %s: block %d beyond the last block %d", f.rec.Path, idx, nb-1)
		}
		if want := f.blockLen(idx); int64(len(data)) != want {
			return false, fmt.Errorf("cache: %s: block %d has %d bytes, want %d", f.rec.Path, idx, len(data), want)
		}
	}
	b := f.bits.Load()
	if idx >= b.capacity() {
		return true, nil
	}
	if b.has(idx) {
		return false, nil
	}
	fd, err := f.c.fds.acquire(f)
	if err != nil {
		return false, err
	}
	_, err = fd.WriteAt(data, idx*f.bs)
	f.c.fds.release(f, true /* wrote */)
	if err != nil {
		return false, fmt.Errorf("cache: %s: write block %d: %w", f.rec.Path, idx, err)
	}
	if !b.set(idx) {
		return false, nil // a concurrent write of the same block won
	}
	n := int64(len(data))
	f.count.Add(1)
	f.local.Add(n)
	f.c.localBytes.Add(n)
	st := blockState{length: uint32(len(data)), crc: crc32.Checksum(data, castagnoli), gen: gen}
	if err := f.c.cm.enqueue(pending{f: f, idx: idx, st: st}); err != nil {
		f.unset(idx, n)
		return false, err
	}
	return false, nil
}

// grow makes the bitmap hold idx.
func (f *File) grow(idx int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bits.Load()
	if idx < b.capacity() {
		return
	}
	f.bits.Store(b.grown(max(idx+1, 2*b.capacity(), 64)))
}

// unset clears the bit of a present block of length n. f.mu is held (read
// or write) and the block belongs to the current generation.
func (f *File) unset(idx, n int64) {
	if f.bits.Load().clear(idx) {
		f.count.Add(-1)
		f.local.Add(-n)
		f.c.localBytes.Add(-n)
	}
}

// dropUnsynced forgets a block whose data file failed to sync, unless its
// generation is gone already.
func (f *File) dropUnsynced(p pending) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.gen.Load() == p.st.gen && f.bits.Load().has(p.idx) {
		f.unset(p.idx, int64(p.st.length))
	}
}

// ErrNotLocal is returned (wrapped) by ReadAt when a block of the range is
// not present: it was never fetched, or it was evicted (or reset) after the
// caller checked. The caller fetches the range again and retries.
var ErrNotLocal = errors.New("cache: bytes not local")

// ReadAt reads local bytes. It never returns bytes of a block that is not
// present, which on disk is a hole that reads as zeros: it checks, with
// f.mu read-locked until the bytes are copied, that every block covering
// [off, off+len(p)) is present (blocks past the pinned size do not count),
// and returns ErrNotLocal if one is not. Eviction clears a block's bit and
// punches its hole with f.mu write-locked, so a block cannot vanish under a
// read that found it. The blocks read count as used for eviction order.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if f.c.closed.Load() {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("cache: %s: read at negative offset %d", f.path(), off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	first, last := off/f.bs, (off+int64(len(p))-1)/f.bs
	f.mu.RLock()
	if nb := f.nblocks.Load(); nb >= 0 {
		last = min(last, nb-1)
	}
	if first <= last {
		if m := f.bits.Load().firstClear(first, last); m >= 0 {
			path := f.rec.Path
			f.mu.RUnlock()
			return 0, fmt.Errorf("%w: %s: block %d", ErrNotLocal, path, m)
		}
	}
	fd, err := f.c.fds.acquire(f)
	if err != nil {
		f.mu.RUnlock()
		return 0, err
	}
	n, err := fd.ReadAt(p, off)
	f.c.fds.release(f, false /* wrote */)
	f.mu.RUnlock()
	if first <= last && f.c.lru.touch(f, first, last) {
		f.c.space.signal()
	}
	return n, err
}

// path is the manifest path, for messages.
func (f *File) path() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rec.Path
}
