package cache

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// These tests play a disk that acknowledges fdatasync without doing it (a
// volatile write cache): at a crash the map keeps its last commits while the
// data files lose their last writes. The map lives on a crashable MemFS
// (CrashClone is the crash); the lost writes are played by overwriting the
// data file. After the crash, the blocks committed last must be checked and
// the ones that lost their bytes dropped; older blocks are not reread.

const recoverBS = 4096

// setRingLimit makes the ring of recent commits name about n bytes.
func setRingLimit(c *Cache, n int64) {
	c.commitMu.Lock()
	c.cm.ring.limit = n
	c.commitMu.Unlock()
}

// writeRound writes blocks [from, to) of f and commits them as one round.
func writeRound(t *testing.T, c *Cache, f *File, gen uint64, from, to, size int64) {
	t.Helper()
	for idx := from; idx < to; idx++ {
		if err := f.WriteBlock(gen, idx, blockData(1, idx, recoverBS, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// ringBlocksLocked lists the block indexes the "r/" keys name (one file).
// c.commitMu is held.
func ringBlocksLocked(t *testing.T, c *Cache) []int64 {
	t.Helper()
	keep := c.cm.ring
	suspects, err := c.loadRing()
	c.cm.ring = keep
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, s := range suspects {
		out = append(out, s.idx)
	}
	return out
}

// ringKeys lists the sequences of the "r/" keys in the map.
func ringKeys(t *testing.T, c *Cache) []uint64 {
	t.Helper()
	lo, hi := recentSpan()
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var seqs []uint64
	for ok := it.First(); ok; ok = it.Next() {
		seqs = append(seqs, binary.BigEndian.Uint64(it.Key()[len(prefixRecent):]))
	}
	return seqs
}

// spoil overwrites n bytes at off of path with a pattern no block has.
func spoil(t *testing.T, path string, off int64, n int) {
	t.Helper()
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	p := make([]byte, n)
	for i := range p {
		p[i] = 0xA5
	}
	if _, err := fd.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverChecksRecentBlocksOnly: three rounds are committed; the ring
// keeps the last (4 blocks, its limit). After a crash in which the disk lost two blocks of the
// last round (one overwritten, one cut short) and one older block, the two
// recent ones are dropped; the older block is not reread (the check costs
// the ring, not the cache), and the ring is emptied.
func TestRecoverChecksRecentBlocksOnly(t *testing.T) {
	dir := t.TempDir()
	mem := vfs.NewCrashableMem()
	c := openTest(t, dir, Options{mapFS: mem, CommitWindow: time.Hour})
	setRingLimit(c, 4*recoverBS)
	const size = 16 * recoverBS
	f, gen := pinned(t, c, "f", size, recoverBS)
	writeRound(t, c, f, gen, 0, 8, size)
	writeRound(t, c, f, gen, 8, 12, size)
	writeRound(t, c, f, gen, 12, 16, size)
	// The cache may commit a round early (to make room), so the last
	// writes may be more than one round; the ring names them all, and
	// nothing older.
	c.commitMu.Lock()
	ring := ringBlocksLocked(t, c)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	c.commitMu.Unlock()
	if slices.Sort(ring); !slices.Equal(ring, []int64{12, 13, 14, 15}) {
		t.Fatalf("ring names blocks %v, want 12-15", ring)
	}
	mustClose(t, c)

	path := f.DataPath()
	spoil(t, path, 3*recoverBS+100, 10)  // old block: outside the ring
	spoil(t, path, 13*recoverBS+100, 10) // recent block
	if err := os.Truncate(path, 15*recoverBS+7); err != nil {
		t.Fatal(err) // the last block loses its tail
	}

	c = openTest(t, dir, Options{mapFS: crashed})
	if !c.UncleanStart() {
		t.Fatal("UncleanStart is false after a crash")
	}
	f, err := c.File("f", "http://origin.test/f", size, recoverBS)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Recovery(); r.Checked != 4 || r.Dropped != 2 || r.CheckedBytes != 4*recoverBS {
		t.Fatalf("Recovery = %+v, want 4 checked, 2 dropped", r)
	}
	for idx := int64(0); idx < 16; idx++ {
		if want := idx != 13 && idx != 15; f.Present(idx) != want {
			t.Errorf("block %d present = %v, want %v", idx, f.Present(idx), want)
		}
	}
	if got := storedBlocks(t, c, f.ID()); len(got) != 14 {
		t.Errorf("map holds %d blocks, want 14", len(got))
	}
	if f.LocalBytes() != 14*recoverBS || c.Stats().LocalBytes != 14*recoverBS {
		t.Errorf("LocalBytes %d, Stats %+v", f.LocalBytes(), c.Stats())
	}
	if got := ringKeys(t, c); len(got) != 0 {
		t.Errorf("ring holds %v after the check", got)
	}
	// The dropped blocks are written again and read back right.
	writeRound(t, c, f, gen, 13, 14, size)
	writeRound(t, c, f, gen, 15, 16, size)
	for _, idx := range []int64{13, 15} {
		readBlock(t, f, 1, idx, size)
	}
	mustClose(t, c)

	// A clean stop: nothing is checked.
	c = openTest(t, dir, Options{mapFS: crashed})
	if c.UncleanStart() {
		t.Fatal("UncleanStart after a clean stop")
	}
	if _, err := c.File("f", "http://origin.test/f", size, recoverBS); err != nil {
		t.Fatal(err)
	}
	if r := c.Recovery(); r != (Recovery{}) {
		t.Errorf("Recovery after a clean stop = %+v", r)
	}
}

// TestRecoverRingBounded commits many rounds: the ring never names much
// more than its limit, and its newest round is always there.
func TestRecoverRingBounded(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{CommitWindow: time.Hour})
	const limit = 6 * recoverBS
	setRingLimit(c, limit)
	const nb = 64
	const size = nb * recoverBS
	f, gen := pinned(t, c, "f", size, recoverBS)
	rng := rand.New(rand.NewPCG(3, 4))
	for idx := int64(0); idx < nb; {
		n := min(1+rng.Int64N(5), nb-idx)
		writeRound(t, c, f, gen, idx, idx+n, size)
		idx += n
		c.commitMu.Lock()
		r := c.cm.ring
		c.commitMu.Unlock()
		// A commit may also happen before Flush (to make room): the last
		// round holds at most n blocks.
		last := r.rounds[len(r.rounds)-1]
		if r.total-r.rounds[0].bytes >= limit || last.bytes > n*recoverBS {
			t.Fatalf("after blocks up to %d (last round %d blocks): ring %+v (total %d), want under %d bytes without its oldest round",
				idx, n, r.rounds, r.total, limit)
		}
		if got := ringKeys(t, c); len(got) != len(r.rounds) {
			t.Fatalf("map holds %d ring keys, memory %d", len(got), len(r.rounds))
		}
	}
}

// TestRecoverLyingDiskAtRandomMoments writes blocks in random order with
// commits in between and takes crash clones of the map at random moments.
// For each crash, the disk loses the bytes of the last rounds the ring
// names (zeros, as a lost write leaves a hole). After the check, every
// present block matches its checksum and holds the right bytes, and every
// block committed before the rounds the ring names is still present.
func TestRecoverLyingDiskAtRandomMoments(t *testing.T) {
	dir := t.TempDir()
	mem := vfs.NewCrashableMem()
	c := openTest(t, dir, Options{mapFS: mem, CommitWindow: time.Hour})
	const ringLimit = 8 * recoverBS
	setRingLimit(c, ringLimit)
	const nb = 120
	const size = nb * recoverBS
	f, gen := pinned(t, c, "f", size, recoverBS)
	rng := rand.New(rand.NewPCG(5, 6))
	order := rng.Perm(nb)

	type snapshot struct {
		fs     *vfs.MemFS
		data   []byte  // the data file at the crash, as the page cache held it
		recent []int64 // blocks the ring names: their bytes are lost
		older  []int64 // the other committed blocks
	}
	var snaps []snapshot
	for _, idx := range order {
		if err := f.WriteBlock(gen, int64(idx), blockData(1, int64(idx), recoverBS, size)); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(4) == 0 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(8) == 0 {
			data, err := os.ReadFile(f.DataPath())
			if err != nil {
				t.Fatal(err)
			}
			// Every commit is synced: the live map is what the crash
			// keeps. No commit may come in between (one may come at any
			// time, to make room).
			c.commitMu.Lock()
			s := snapshot{fs: mem.CrashClone(vfs.CrashCloneCfg{}), data: data, recent: ringBlocksLocked(t, c)}
			for _, idx := range storedBlocks(t, c, f.ID()) {
				if !slices.Contains(s.recent, idx) {
					s.older = append(s.older, idx)
				}
			}
			c.commitMu.Unlock()
			snaps = append(snaps, s)
		}
	}
	mustClose(t, c)
	if len(snaps) < 4 {
		t.Fatalf("only %d snapshots", len(snaps))
	}
	for n, s := range snaps {
		data := append([]byte(nil), s.data...)
		for _, idx := range s.recent {
			clear(data[idx*recoverBS : (idx+1)*recoverBS])
		}
		if err := os.WriteFile(f.DataPath(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := openTest(t, dir, Options{mapFS: s.fs})
		f, err := c.File("f", "http://origin.test/f", size, recoverBS)
		if err != nil {
			t.Fatal(err)
		}
		if r := c.Recovery(); r.Dropped != len(s.recent) || r.Checked != len(s.recent) {
			t.Errorf("snapshot %d: Recovery %+v, want %d checked and dropped", n, r, len(s.recent))
		}
		for _, idx := range s.older {
			if !f.Present(idx) {
				t.Errorf("snapshot %d: block %d, committed before the ring, was lost", n, idx)
			}
		}
		for idx := int64(0); idx < nb; idx++ {
			if !f.Present(idx) {
				continue
			}
			readBlock(t, f, 1, idx, size)
			if ok, err := f.Verify(idx); !ok || err != nil {
				t.Errorf("snapshot %d: Verify(%d) = %v, %v", n, idx, ok, err)
			}
		}
		mustClose(t, c)
	}
}
