package fetcher

import "sync"

// A read that waits for a block need not wait for the block to be written
// into the store too: once the block is received and checked, it is
// published in memory while it is written, and a waiting read copies its
// bytes from there (EnsureCopy). Only blocks of files with waiting reads are
// published, so a background fill nobody waits on pays nothing.

// memKey names one block of one file.
type memKey struct {
	fl  *File
	idx int64
}

// memBlock is a block received and checked, being written to the store.
// Readers copy from data holding mu for reading; retire takes mu for
// writing before the buffer is reused.
type memBlock struct {
	mu   sync.RWMutex
	data []byte
	gen  uint64
}

// publish makes block idx of generation gen readable from data until
// retire, if a read waits on the file; it returns nil otherwise.
func (f *Fetcher) publish(fl *File, idx int64, gen uint64, data []byte) *memBlock {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting[fl] == 0 {
		return nil
	}
	if f.mem == nil {
		f.mem = make(map[memKey]*memBlock)
	}
	mb := &memBlock{data: data, gen: gen}
	f.mem[memKey{fl, idx}] = mb
	fl.notifyLocked()
	return mb
}

// retire ends what publish began, once the block is in the store (or
// failed to get there); it returns when no read copies from mb any more.
func (f *Fetcher) retire(fl *File, idx int64, mb *memBlock) {
	if mb == nil {
		return
	}
	f.mu.Lock()
	if f.mem[memKey{fl, idx}] == mb {
		delete(f.mem, memKey{fl, idx})
	}
	f.mu.Unlock()
	// A read that found mb in the map took its read lock before the map
	// lock was released, so this waits for every such read.
	mb.mu.Lock()
	mb.data = nil
	mb.mu.Unlock()
}

// maxCopyBlocks bounds the blocks one copy from memory may span: a 1 MiB
// read (the largest FUSE read) of 64 KiB blocks, not aligned.
const maxCopyBlocks = 17

// copyInFlightLocked copies the bytes at off into p when each block they
// span is either published for generation gen or already in the store, and
// at least one is published. It returns with Fetcher.mu released if it
// copied (true), still held if not (false). The caller checks that the
// generation did not change meanwhile.
func (fl *File) copyInFlightLocked(p []byte, off int64, gen uint64) bool {
	f := fl.f
	if len(f.mem) == 0 || len(p) == 0 {
		return false
	}
	first, last := off/fl.bs, (off+int64(len(p))-1)/fl.bs
	if last-first >= maxCopyBlocks {
		return false
	}
	var arr [maxCopyBlocks]*memBlock
	blocks := arr[:last-first+1]
	published := false
	for i := first; i <= last; i++ {
		if mb := f.mem[memKey{fl, i}]; mb != nil && mb.gen == gen {
			blocks[i-first], published = mb, true
		} else if !fl.st.Present(i) {
			return false
		}
	}
	if !published {
		return false
	}
	for _, mb := range blocks {
		if mb != nil {
			mb.mu.RLock()
		}
	}
	f.mu.Unlock()
	ok := true
	for i := first; i <= last; i++ {
		start := i * fl.bs
		lo, hi := max(off, start), min(off+int64(len(p)), start+fl.bs)
		if mb := blocks[i-first]; mb != nil {
			if hi-start <= int64(len(mb.data)) {
				copy(p[lo-off:hi-off], mb.data[lo-start:hi-start])
			} else {
				ok = false // a short block: not the version asked for
			}
			mb.mu.RUnlock()
		} else if ok {
			// Evicted since Present said yes: the read waits instead.
			_, err := fl.st.ReadAt(p[lo-off:hi-off], lo)
			ok = err == nil
		}
	}
	if !ok {
		f.mu.Lock()
	}
	return ok
}

// beginWaitLocked counts a read waiting on fl. Fetcher.mu is held.
func (fl *File) beginWaitLocked() {
	if fl.f.waiting == nil {
		fl.f.waiting = make(map[*File]int)
	}
	fl.f.waiting[fl]++
}

// endWaitLocked undoes beginWaitLocked. Fetcher.mu is held.
func (fl *File) endWaitLocked() {
	if fl.f.waiting[fl]--; fl.f.waiting[fl] <= 0 {
		delete(fl.f.waiting, fl)
	}
}
