package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// Eviction removes single blocks, least recently used first, from any
// file that is neither pinned (SetPinned, SetManifestPin) nor held
// (HoldComplete), open or not, loaded in this process or not (a file that
// left the manifest). Only durable blocks are evicted: they are the ones
// with an "l/" key.
//
// One round picks victims by walking the "l/" keys from a cursor (the key
// after the last one a round looked at, so tombstones left at the front
// are not walked again), checking each against its "b/" value. Then it
// write-locks the victims' files (in ID order), checks them again, commits
// the deletion of their "b/" and "l/" keys and the new "m/bytes" in one
// synced batch, clears their bits, and punches their holes
// (FALLOC_FL_PUNCH_HOLE) so the disk space is really freed; only then does
// it unlock. The map never names a punched block, and a reader never
// copies one (see ReadAt). A crash between the commit and the punch leaves
// bytes that no key names: they are freed when the file is reset, evicted
// as a whole, or its block is written again.

// maxScan bounds the "l/" keys one round looks at.
const maxScan = 4096

// victim is a block chosen for eviction.
type victim struct {
	idx int64
	st  blockState
}

// evictFile is what a round knows of one file its "l/" keys name.
type evictFile struct {
	f     *File  // nil: not loaded in this process
	rec   Record // for a file that is not loaded
	held  bool   // skip its keys, keep them
	stale bool   // pinned or without record: drop its keys
	vs    []victim
}

// evict frees at least want bytes, least recently used blocks first, and
// returns the bytes freed: fewer when too little is evictable. The caller
// holds no lock of the cache. Files that lost blocks are told (SetDropHook)
// before it returns.
func (c *Cache) evict(want int64) (int64, error) {
	if err := c.enter(); err != nil {
		return 0, err
	}
	dropped := make(map[*File]struct{})
	freed, err := c.evictLocked(want, dropped)
	c.dbMu.RUnlock()
	for f := range dropped {
		if fn := f.onDrop.Load(); fn != nil {
			(*fn)()
		}
	}
	return freed, err
}

func (c *Cache) evictLocked(want int64, dropped map[*File]struct{}) (int64, error) {
	c.evictMu.Lock()
	defer c.evictMu.Unlock()
	// Blocks read since the last eviction become the newest.
	if err := c.advanceClock(true); err != nil {
		return 0, err
	}
	var freed int64
	for rounds := 0; freed < want && rounds < 64; rounds++ {
		n, complete, err := c.evictRound(want-freed, dropped)
		freed += n
		if err != nil {
			return freed, err
		}
		if n == 0 && complete {
			break
		}
	}
	if freed > 0 {
		c.log.Debug("cache: evicted", "bytes", freed, "local", c.localBytes.Load())
	}
	return freed, nil
}

// evictRound evicts up to want bytes; complete reports that it looked at
// every "l/" key.
func (c *Cache) evictRound(want int64, dropped map[*File]struct{}) (freed int64, complete bool, err error) {
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	files, stale, complete, err := c.pickVictims(want)
	if err != nil {
		return 0, complete, err
	}
	ids := make([]uint64, 0, len(files))
	for id, ef := range files {
		if len(ef.vs) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if f := files[id].f; f != nil {
			f.mu.Lock()
			defer f.mu.Unlock()
		}
	}
	n, err := c.commitEviction(files, ids, stale)
	if err != nil || n == 0 {
		return 0, complete, err
	}
	var punched int64
	for _, id := range ids {
		ef := files[id]
		if len(ef.vs) == 0 {
			continue
		}
		if ef.f != nil {
			dropped[ef.f] = struct{}{}
		}
		if err := c.punch(ef, id); err != nil {
			c.log.Warn("cache: evicted blocks keep their disk space", "err", err)
			continue
		}
		for _, v := range ef.vs {
			punched += int64(v.st.length)
		}
	}
	c.space.punched(n, punched)
	return n, complete, nil
}

// pickVictims walks the "l/" keys from the cursor (wrapping once) until it
// has found want bytes of evictable blocks or looked at maxScan keys. It
// returns the victims by file and the stale "l/" keys to delete. filesMu
// is held.
func (c *Cache) pickVictims(want int64) (files map[uint64]*evictFile, stale [][]byte, complete bool, err error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	lo, hi := lruSpan()
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, false, fmt.Errorf("cache: read the LRU index: %w", err)
	}
	defer it.Close()
	files = make(map[uint64]*evictFile)
	start := c.evictCursor
	wrapped := start == nil
	var ok bool
	if start == nil {
		ok = it.First()
	} else {
		ok = it.SeekGE(start)
	}
	var total int64
	for scanned := 0; scanned < maxScan && total < want; scanned++ {
		if !ok {
			if wrapped {
				complete = true
				break
			}
			wrapped, ok = true, it.First()
			continue
		}
		k := it.Key()
		if wrapped && start != nil && bytes.Compare(k, start) >= 0 {
			complete = true
			break
		}
		key := append([]byte(nil), k...)
		ok = it.Next()
		clock, id, idx, err := parseLRUKey(key)
		if err != nil {
			return nil, nil, false, err
		}
		ef, err := c.evictInfo(files, id)
		if err != nil {
			return nil, nil, false, err
		}
		if ef.held {
			continue
		}
		st, found, err := c.blockAt(id, idx)
		if err != nil {
			return nil, nil, false, err
		}
		if ef.stale || !found || st.clock != clock || ef.f != nil && st.gen != ef.f.gen.Load() {
			stale = append(stale, key)
			continue
		}
		ef.vs = append(ef.vs, victim{idx: idx, st: st})
		total += int64(st.length)
	}
	c.evictCursor = nil
	if ok && !complete {
		c.evictCursor = append([]byte(nil), it.Key()...)
	}
	return files, stale, complete, nil
}

// evictInfo returns what a round knows of file id, looking it up the
// first time. filesMu and commitMu are held.
func (c *Cache) evictInfo(files map[uint64]*evictFile, id uint64) (*evictFile, error) {
	if ef := files[id]; ef != nil {
		return ef, nil
	}
	ef := &evictFile{}
	files[id] = ef
	rec, ok, err := c.readRecord(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		ef.stale = true
		return ef, nil
	}
	ef.rec = rec
	if f := c.files[rec.Path]; f != nil && f.id == id {
		ef.f = f
		ef.stale = f.keep.Load()
		ef.held = f.holds.Load() > 0
	} else {
		ef.stale = rec.KeepLocal
	}
	return ef, nil
}

// blockAt reads the "b/" value of block idx of file id.
func (c *Cache) blockAt(id uint64, idx int64) (st blockState, ok bool, err error) {
	v, closer, err := c.db.Get(blockKey(id, idx))
	if errors.Is(err, pebble.ErrNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("cache: read block %d of file %d: %w", idx, id, err)
	}
	st, err = decodeBlockState(v)
	closer.Close()
	if err != nil {
		return st, false, fmt.Errorf("%w (file %d block %d)", err, id, idx)
	}
	return st, true, nil
}

// commitEviction checks the victims again (their loaded files are
// write-locked now) and commits, in one synced batch, the deletion of the
// ones still evictable and of the stale keys; it then updates the counters
// and clears the victims' bits. It drops from files[id].vs the victims it
// did not evict and returns the bytes evicted.
func (c *Cache) commitEviction(files map[uint64]*evictFile, ids []uint64, stale [][]byte) (int64, error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	b := c.db.NewBatch()
	defer b.Close()
	for _, k := range stale {
		b.Delete(k, nil)
	}
	var total int64
	for _, id := range ids {
		ef := files[id]
		kept := ef.vs[:0]
		for _, v := range ef.vs {
			ok, err := c.stillEvictable(ef, id, v)
			if err != nil {
				return 0, err
			}
			if !ok {
				continue
			}
			b.Delete(blockKey(id, v.idx), nil)
			b.Delete(lruKey(v.st.clock, id, v.idx), nil)
			total += int64(v.st.length)
			kept = append(kept, v)
		}
		ef.vs = kept
	}
	if total == 0 {
		if b.Empty() {
			return 0, nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return 0, fmt.Errorf("cache: drop stale LRU keys: %w", err)
		}
		return 0, nil
	}
	remaining := c.durableBytes - total
	b.Set(keyLocalBytes, u64(uint64(remaining)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("cache: evict blocks: %w", err)
	}
	c.durableBytes = remaining
	c.space.evicting(total)
	for _, id := range ids {
		ef := files[id]
		for _, v := range ef.vs {
			n := int64(v.st.length)
			if ef.f != nil {
				ef.f.durable -= n
				ef.f.unset(v.idx, n)
			} else {
				c.localBytes.Add(-n)
			}
		}
	}
	return total, nil
}

// stillEvictable checks victim v of file id again, with the file
// write-locked (when loaded) and c.commitMu held.
func (c *Cache) stillEvictable(ef *evictFile, id uint64, v victim) (bool, error) {
	if f := ef.f; f != nil {
		if f.holds.Load() > 0 || f.keep.Load() || f.gen.Load() != v.st.gen || !f.bits.Load().has(v.idx) {
			return false, nil
		}
	}
	st, found, err := c.blockAt(id, v.idx)
	return found && st == v.st, err
}

// punch releases the disk space of the evicted blocks of one file. A
// loaded file's mu is write-locked; a file that is not loaded cannot be
// loaded meanwhile (filesMu is held).
func (c *Cache) punch(ef *evictFile, id uint64) error {
	if ef.f != nil {
		fd, err := c.fds.acquire(ef.f)
		if err != nil {
			return err
		}
		defer c.fds.release(ef.f, false /* wrote */)
		return punchBlocks(fd, ef.f.bs, ef.vs)
	}
	fd, err := os.OpenFile(dataPath(c.dir, id), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer fd.Close()
	return punchBlocks(fd, ef.rec.BlockSize, ef.vs)
}

// punchBlocks punches the holes of blocks vs (block size bs) into fd.
func punchBlocks(fd *os.File, bs int64, vs []victim) error {
	rc, err := fd.SyscallConn()
	if err != nil {
		return fmt.Errorf("cache: punch %s: %w", fd.Name(), err)
	}
	var perr error
	cerr := rc.Control(func(d uintptr) {
		for _, v := range vs {
			for {
				perr = unix.Fallocate(int(d), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, v.idx*bs, bs)
				if perr != syscall.EINTR {
					break
				}
			}
			if perr != nil {
				return
			}
		}
	})
	if err := errors.Join(cerr, perr); err != nil {
		return fmt.Errorf("cache: punch holes into %s: %w", fd.Name(), err)
	}
	return nil
}
