package cache

import (
	"fmt"
	"hash/crc32"
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
func (f *File) WriteBlock(gen uint64, idx int64, data []byte) error {
	if f.c.closed.Load() {
		return ErrClosed
	}
	if idx < 0 || idx >= maxBlocks || len(data) == 0 || int64(len(data)) > f.bs {
		return fmt.Errorf("cache: %s: block %d of %d bytes: want index 0..%d and 1..%d bytes",
			f.path(), idx, len(data), maxBlocks-1, f.bs)
	}
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

// ReadAt reads local bytes; the caller has checked that the blocks covering
// [off, off+len(p)) are present.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	fd, err := f.c.fds.acquire(f)
	if err != nil {
		return 0, err
	}
	n, err := fd.ReadAt(p, off)
	f.c.fds.release(f, false /* wrote */)
	return n, err
}

// path is the manifest path, for messages.
func (f *File) path() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rec.Path
}
