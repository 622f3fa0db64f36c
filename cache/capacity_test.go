package cache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// advance moves the access clock on, as the space goroutine does every
// second, so the blocks committed or read before are older than the ones
// after.
func advance(t testing.TB, c *Cache) {
	t.Helper()
	if err := c.enter(); err != nil {
		t.Fatal(err)
	}
	defer c.dbMu.RUnlock()
	if err := c.advanceClock(true); err != nil {
		t.Fatal(err)
	}
}

// readBlock reads block idx of f and checks its bytes.
func readBlock(t testing.TB, f *File, seed uint64, idx, size int64) {
	t.Helper()
	want := blockData(seed, idx, f.BlockSize(), size)
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, idx*f.BlockSize()); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("block %d reads back wrong: %v", idx, err)
	}
}

// present lists the present blocks of f among the first n.
func present(f *File, n int64) []int64 {
	var out []int64
	for i := range n {
		if f.Present(i) {
			out = append(out, i)
		}
	}
	return out
}

// checkAllocated checks that the data files of the cache take want bytes
// of disk space, give or take a file system block per file for metadata
// (ext4 counts an extent block, or one reserved for delayed allocation).
func checkAllocated(t testing.TB, c *Cache, want int64) {
	t.Helper()
	var n int64
	files := dataFiles(t, c.dir)
	for _, p := range files {
		_, a := diskUsage(t, p)
		n += a
	}
	if n < want || n > want+int64(len(files))*4096 {
		t.Fatalf("data files take %d bytes, want %d (holes punched)", n, want)
	}
}

func TestEvictionOrder(t *testing.T) {
	const bs, nb = 4096, 16
	const size = nb * bs
	c := openTest(t, t.TempDir(), Options{MaxSize: size})
	a, gen := pinned(t, c, "a", size, bs)
	var dropped atomic.Int32
	a.SetDropHook(func() { dropped.Add(1) })
	// Four groups of four blocks, each group older than the next.
	for g := range int64(4) {
		for idx := g * 4; idx < g*4+4; idx++ {
			if err := a.WriteBlock(gen, idx, blockData(1, idx, bs, size)); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		advance(t, c)
	}
	// Reading group 0 makes it the newest.
	for idx := range int64(4) {
		readBlock(t, a, 1, idx, size)
	}
	checkAllocated(t, c, size)
	// The cache is full: four more blocks evict the four least recently
	// used ones (group 1), two at a time (need plus slack).
	b, bgen := pinned(t, c, "b", size, bs)
	for idx := range int64(4) {
		if err := b.WriteBlock(bgen, idx, blockData(2, idx, bs, size)); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.LocalBytes > size {
			t.Fatalf("after block %d of b: %d local bytes, over the limit %d", idx, st.LocalBytes, size)
		}
	}
	want := []int64{0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15}
	if got := present(a, nb); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("present blocks of a: %v, want %v", got, want)
	}
	if got := present(b, nb); len(got) != 4 {
		t.Fatalf("present blocks of b: %v", got)
	}
	for _, idx := range want {
		readBlock(t, a, 1, idx, size)
	}
	if _, err := a.ReadAt(make([]byte, 10), 5*bs); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("ReadAt of an evicted block: %v, want ErrNotLocal", err)
	}
	if got := storedBlocks(t, c, a.ID()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("map holds %v, want %v", got, want)
	}
	if dropped.Load() == 0 {
		t.Fatal("the drop hook was not called")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	checkAllocated(t, c, size)
	st := c.Stats()
	if st.LocalBytes != size || st.EvictedBytes != 4*bs || st.Limit != size {
		t.Fatalf("Stats = %+v", st)
	}
	// An evicted block is written again like a missing one.
	if err := a.WriteBlock(gen, 5, blockData(1, 5, bs, size)); err != nil {
		t.Fatal(err)
	}
	readBlock(t, a, 1, 5, size)
}

func TestPinnedAndHeldNotEvicted(t *testing.T) {
	const bs, nb = 4096, 8
	const size = nb * bs
	c := openTest(t, t.TempDir(), Options{MaxSize: 2 * size})
	p, pgen := pinned(t, c, "pinned", size, bs)
	if err := p.SetPinned(true); err != nil {
		t.Fatal(err)
	}
	h, hgen := pinned(t, c, "held", size, bs)
	writeAll(t, p, pgen, 1, size)
	writeAll(t, h, hgen, 2, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if !h.HoldComplete() {
		t.Fatal("HoldComplete of a complete file is false")
	}
	if pn, lim, over := c.PinsExceedLimit(); pn != size || lim != 2*size || over {
		t.Fatalf("PinsExceedLimit = %d, %d, %v", pn, lim, over)
	}
	// Nothing is evictable: a new block goes over the limit rather than
	// fail a read.
	o, ogen := pinned(t, c, "other", size, bs)
	if err := o.WriteBlock(ogen, 0, blockData(3, 0, bs, size)); err != nil {
		t.Fatal(err)
	}
	if !p.Complete() || !h.Complete() || c.Stats().LocalBytes != 2*size+bs {
		t.Fatalf("pinned or held blocks evicted: %+v", c.Stats())
	}
	// Released, the held file is evicted first (least recently used).
	h.Unhold()
	if err := o.WriteBlock(ogen, 1, blockData(3, 1, bs, size)); err != nil {
		t.Fatal(err)
	}
	if !p.Complete() || h.Complete() || c.Stats().LocalBytes > 2*size {
		t.Fatalf("after Unhold: pinned complete %v, held complete %v, %+v", p.Complete(), h.Complete(), c.Stats())
	}
	if h.HoldComplete() {
		t.Fatal("HoldComplete of an incomplete file is true")
	}
	// The pin survives a restart; unpinned, the file is evictable again.
	mustClose(t, c)
	c = openTest(t, c.dir, Options{MaxSize: size})
	p, err := c.File("pinned", "http://origin.test/pinned", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Pinned() || !p.Record().KeepLocal {
		t.Fatal("pin lost at restart")
	}
	if pn, lim, over := c.PinsExceedLimit(); pn != size || lim != size || over {
		t.Fatalf("PinsExceedLimit = %d, %d, %v", pn, lim, over)
	}
	if err := p.SetManifestPin(true); err != nil {
		t.Fatal(err)
	}
	if err := p.SetPinned(false); err != nil {
		t.Fatal(err)
	}
	if !p.Pinned() {
		t.Fatal("manifest pin lost by SetPinned(false)")
	}
	if err := p.SetManifestPin(false); err != nil {
		t.Fatal(err)
	}
	o, err = c.File("other", "http://origin.test/other", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	_, ogen, _ = o.Remote()
	writeAll(t, o, ogen, 3, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.LocalBytes > size || p.Complete() {
		t.Fatalf("unpinned file kept over the limit: %+v", st)
	}
}

// TestReadVersusEvict reads blocks while writers keep the cache over its
// limit, so blocks are evicted under the readers. A read either returns
// the block's bytes or ErrNotLocal; never a hole's zeros. Run with -race.
func TestReadVersusEvict(t *testing.T) {
	const bs, nb, nfiles = 4096, 64, 3
	const size = nb * bs
	c := openTest(t, t.TempDir(), Options{MaxSize: nb * bs, CommitWindow: 100 * time.Microsecond})
	files := make([]*File, nfiles)
	gens := make([]uint64, nfiles)
	for i := range files {
		files[i], gens[i] = pinned(t, c, fmt.Sprintf("f%d", i), size, bs)
	}
	var stop atomic.Bool
	var reads, notLocal atomic.Int64
	var wg, readers sync.WaitGroup
	errc := make(chan error, 10)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 3000 {
				i, idx := r.IntN(nfiles), r.Int64N(nb)
				if err := files[i].WriteBlock(gens[i], idx, blockData(uint64(i), idx, bs, size)); err != nil {
					report(err)
					return
				}
			}
		})
	}
	for rd := range 3 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			buf := make([]byte, 2*bs)
			for !stop.Load() {
				i, idx := r.IntN(nfiles), r.Int64N(nb-1)
				f := files[i]
				if !f.Present(idx) || !f.Present(idx+1) {
					continue
				}
				// Two blocks per read: a read across a block boundary
				// is checked as a whole.
				_, err := f.ReadAt(buf, idx*bs)
				switch {
				case errors.Is(err, ErrNotLocal):
					notLocal.Add(1)
				case err != nil:
					report(err)
				case !bytes.Equal(buf[:bs], blockData(uint64(i), idx, bs, size)) ||
					!bytes.Equal(buf[bs:], blockData(uint64(i), idx+1, bs, size)):
					report(fmt.Errorf("file %d blocks %d-%d read wrong bytes", i, idx, idx+1))
				default:
					reads.Add(1)
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	st := c.Stats()
	t.Logf("reads %d, not local %d, %+v", reads.Load(), notLocal.Load(), st)
	if reads.Load() == 0 || st.EvictedBytes == 0 {
		t.Fatalf("nothing was read (%d) or evicted (%d)", reads.Load(), st.EvictedBytes)
	}
	if st.LocalBytes > nb*bs {
		t.Fatalf("%d local bytes, over the limit", st.LocalBytes)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		for idx := range int64(nb) {
			if f.Present(idx) {
				if ok, err := f.Verify(idx); !ok || err != nil {
					t.Errorf("file %d block %d: Verify = %v, %v", i, idx, ok, err)
				}
			}
		}
	}
}

// TestBoundAcrossRestart: the accounting and the LRU order survive a
// restart; a smaller limit holds as soon as the cache has ticked.
func TestBoundAcrossRestart(t *testing.T) {
	const bs, nb = 4096, 16
	const size = nb * bs
	dir := t.TempDir()
	c := openTest(t, dir, Options{MaxSize: size})
	a, gen := pinned(t, c, "a", size, bs)
	writeAll(t, a, gen, 1, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	advance(t, c)
	for idx := int64(8); idx < nb; idx++ {
		readBlock(t, a, 1, idx, size)
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{MaxSize: size / 2})
	if st := c.Stats(); st.LocalBytes != size {
		t.Fatalf("after restart: %+v, want %d local bytes", st, size)
	}
	// The space goroutine evicts down to the smaller limit (a tick is
	// what it does every 100 ms).
	c.tick(false)
	if st := c.Stats(); st.LocalBytes > size/2 {
		t.Fatalf("after a tick: %+v, over the limit %d", st, size/2)
	}
	a, err := c.File("a", "http://origin.test/a", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	// The blocks not read before the restart went first (and one read
	// block, for the slack).
	if got := present(a, nb); fmt.Sprint(got) != fmt.Sprint([]int64{9, 10, 11, 12, 13, 14, 15}) {
		t.Fatalf("present after eviction: %v, want the recently read blocks but the first", got)
	}
	checkAllocated(t, c, c.Stats().LocalBytes)
}

// TestEvictFileNotLoaded evicts blocks of a file that is in the cache but
// not loaded (no longer in the manifest).
func TestEvictFileNotLoaded(t *testing.T) {
	const bs, nb = 4096, 8
	const size = nb * bs
	dir := t.TempDir()
	c := openTest(t, dir, Options{MaxSize: size})
	old, gen := pinned(t, c, "old", size, bs)
	writeAll(t, old, gen, 1, size)
	mustClose(t, c)

	c = openTest(t, dir, Options{MaxSize: size})
	n, ngen := pinned(t, c, "new", size, bs)
	writeAll(t, n, ngen, 2, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.LocalBytes > size || !n.Complete() {
		t.Fatalf("Stats = %+v, new complete %v", st, n.Complete())
	}
	checkAllocated(t, c, size)
	old, err := c.File("old", "http://origin.test/old", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if old.LocalBytes() != 0 || len(storedBlocks(t, c, old.ID())) != 0 {
		t.Fatalf("old keeps %d bytes", old.LocalBytes())
	}
}

func TestRoom(t *testing.T) {
	const bs = 4096
	const limit = 64 * bs
	var rooms atomic.Int32
	c := openTest(t, t.TempDir(), Options{MaxSize: limit, OnRoom: func() { rooms.Add(1) }})
	sl := slack(limit)
	if !c.Room(limit - sl - bs) {
		t.Fatal("no room in an empty cache")
	}
	// Granted room is not granted twice.
	if c.Room(2 * bs) {
		t.Fatal("room granted twice")
	}
	f, gen := pinned(t, c, "f", limit, bs)
	writeAll(t, f, gen, 1, limit)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if c.Room(1) {
		t.Fatal("room in a full cache")
	}
	// Dropping blocks makes room, and OnRoom says so.
	if err := f.Evict(); err != nil {
		t.Fatal(err)
	}
	c.space.mu.Lock()
	c.space.granted = 0
	c.space.roomShown = false
	c.space.mu.Unlock()
	c.tick(false)
	if rooms.Load() == 0 {
		t.Fatal("OnRoom not called")
	}
	if !c.Room(16 * bs) {
		t.Fatal("no room after Evict")
	}
}

// TestMigrateV1 turns a map into schema 1 (the ID alone under "p/", no
// clocks, no "l/" keys) and opens it: the blocks are kept, and eviction
// works on them.
func TestMigrateV1(t *testing.T) {
	const bs, nb = 4096, 8
	const size = nb * bs
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	f, gen := pinned(t, c, "dir/a", size, bs)
	writeAll(t, f, gen, 1, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	b := c.db.NewBatch()
	b.Set(keySchemaVersion, u64(1), nil)
	b.Set(pathKey("dir/a"), u64(f.ID()), nil)
	b.Delete(keyClock, nil)
	lo, hi := lruSpan()
	b.DeleteRange(lo, hi, nil)
	for idx := range int64(nb) {
		st, ok, err := c.blockAt(f.ID(), idx)
		if err != nil || !ok {
			t.Fatalf("block %d: %v %v", idx, ok, err)
		}
		b.Set(blockKey(f.ID(), idx), st.encode()[:blockValueLenV1], nil)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{MaxSize: size / 2})
	if v, _, err := c.getU64(keySchemaVersion); err != nil || v != schemaVersion {
		t.Fatalf("schema version %d after migration: %v", v, err)
	}
	f, err := c.File("dir/a", "http://origin.test/dir/a", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Complete() {
		t.Fatal("blocks lost in migration")
	}
	readBlock(t, f, 1, 3, size)
	c.tick(false)
	if st := c.Stats(); st.LocalBytes > size/2 || st.EvictedBytes == 0 {
		t.Fatalf("migrated blocks not evicted down to the limit: %+v", st)
	}
	for _, idx := range present(f, nb) {
		if ok, err := f.Verify(idx); !ok || err != nil {
			t.Fatalf("Verify(%d) = %v, %v", idx, ok, err)
		}
	}
}

// A request Room refused is announced by OnRoom once it fits, even when
// some room (too little for it) was announced before.
func TestRoomNotifiedWhenRefusedRequestFits(t *testing.T) {
	const bs = 4096
	const limit = 64 * bs
	var rooms atomic.Int32
	c := openTest(t, t.TempDir(), Options{MaxSize: limit, OnRoom: func() { rooms.Add(1) }})
	f, gen := pinned(t, c, "f", 40*bs, bs)
	writeAll(t, f, gen, 1, 40*bs)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.tick(false) // a little room: announced now or before
	if c.Room(30 * bs) {
		t.Fatal("room for 30 blocks with 40 of 64 used")
	}
	before := rooms.Load()
	c.tick(false)
	if rooms.Load() != before {
		t.Fatal("OnRoom called while the refused request still does not fit")
	}
	if err := f.Evict(); err != nil {
		t.Fatal(err)
	}
	c.tick(false)
	if rooms.Load() == before {
		t.Fatal("OnRoom not called once the refused request fits")
	}
	if !c.Room(30 * bs) {
		t.Fatal("no room for 30 blocks in an empty cache")
	}
}
