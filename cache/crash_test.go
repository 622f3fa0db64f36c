package cache

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The map lives on a crashable in-memory FS; CrashClone gives the map as a
// crash at that moment would leave it. Data files stay on the real disk,
// holding every byte written (as if the page cache had been written back):
// so this tests the map's side of the contract, that it never claims a
// block whose bytes were not synced first and loses none that was flushed.

func TestCrashKeepsOnlyCommittedBlocks(t *testing.T) {
	dir := t.TempDir()
	mem := vfs.NewCrashableMem()
	c := openTest(t, dir, Options{mapFS: mem, CommitWindow: time.Hour})
	const bs, size = 4096, 16 * 4096
	f, gen := pinned(t, c, "f", size, bs)
	for idx := int64(0); idx < 16; idx++ {
		if idx == 8 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.WriteBlock(gen, idx, blockData(1, idx, bs, size)); err != nil {
			t.Fatal(err)
		}
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	mustClose(t, c) // the dead process's lock goes away

	c = openTest(t, dir, Options{mapFS: crashed})
	if !c.UncleanStart() {
		t.Fatal("UncleanStart is false after a crash")
	}
	f, err := c.File("f", "http://origin.test/f", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if r, g, ok := f.Remote(); !ok || g != gen || r.Size != size {
		t.Fatalf("validator after crash: %+v %d %v", r, g, ok)
	}
	for idx := int64(0); idx < 16; idx++ {
		if f.Present(idx) != (idx < 8) {
			t.Errorf("block %d present = %v after crash", idx, f.Present(idx))
		}
	}
	for idx := int64(0); idx < 8; idx++ {
		if ok, err := f.Verify(idx); !ok || err != nil {
			t.Errorf("Verify(%d) = %v, %v", idx, ok, err)
		}
	}
	if f.LocalBytes() != 8*bs || c.Stats().LocalBytes != 8*bs {
		t.Fatalf("LocalBytes %d Stats %+v", f.LocalBytes(), c.Stats())
	}
}

// TestCrashAtRandomMoments takes crash clones, keeping a random part of the
// unsynced writes, while blocks are written and committed in the
// background, and checks each: flushed ⊆ present ⊆ written, and every
// present block matches its checksum.
func TestCrashAtRandomMoments(t *testing.T) {
	dir := t.TempDir()
	mem := vfs.NewCrashableMem()
	c := openTest(t, dir, Options{mapFS: mem, CommitWindow: 100 * time.Microsecond})
	const bs, nblocks = 4096, 200
	const size = nblocks * bs
	f, gen := pinned(t, c, "f", size, bs)
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(nblocks)

	type snapshot struct {
		fs               *vfs.MemFS
		written, flushed int // prefixes of order
	}
	var snaps []snapshot
	flushed := 0
	for i, idx := range order {
		if err := f.WriteBlock(gen, int64(idx), blockData(1, int64(idx), bs, size)); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(10) == 0 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			flushed = i + 1
		}
		if rng.IntN(20) == 0 {
			fs := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
			snaps = append(snaps, snapshot{fs, i + 1, flushed})
		}
	}
	mustClose(t, c)
	if len(snaps) < 3 {
		t.Fatalf("only %d snapshots", len(snaps))
	}

	for n, s := range snaps {
		c := openTest(t, dir, Options{mapFS: s.fs})
		f, err := c.File("f", "http://origin.test/f", size, bs)
		if err != nil {
			t.Fatal(err)
		}
		written := make(map[int64]bool)
		for i, idx := range order[:s.written] {
			written[int64(idx)] = true
			if i < s.flushed && !f.Present(int64(idx)) {
				t.Errorf("snapshot %d: flushed block %d lost", n, idx)
			}
		}
		for idx := int64(0); idx < nblocks; idx++ {
			if !f.Present(idx) {
				continue
			}
			if !written[idx] {
				t.Errorf("snapshot %d: block %d present but not written before the crash", n, idx)
			}
			if ok, err := f.Verify(idx); !ok || err != nil {
				t.Errorf("snapshot %d: Verify(%d) = %v, %v", n, idx, ok, err)
			}
		}
		mustClose(t, c)
	}
}

func TestStaleBlocksDroppedAtLoad(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	const bs, size = 4096, 4 * 4096
	f, gen := pinned(t, c, "f", size, bs)
	if err := f.WriteBlock(gen, 0, blockData(1, 0, bs, size)); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// Keys no current record owns: another generation, a wrong length, an
	// index past the pinned size. m/bytes counts them, as if committed.
	b := c.db.NewBatch()
	b.Set(blockKey(f.ID(), 1), blockState{length: bs, gen: gen + 7}.encode(), nil)
	b.Set(blockKey(f.ID(), 2), blockState{length: 10, gen: gen}.encode(), nil)
	b.Set(blockKey(f.ID(), 9), blockState{length: bs, gen: gen}.encode(), nil)
	b.Set(keyLocalBytes, u64(uint64(3*bs+10)), nil)
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{})
	if st := c.Stats(); st.LocalBytes != 3*bs+10 {
		t.Fatalf("Stats before loading f: %+v", st)
	}
	f, err := c.File("f", "http://origin.test/f", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Present(0) || f.Present(1) || f.Present(2) || f.Present(9) || f.LocalBytes() != bs {
		t.Fatal("stale blocks loaded as present")
	}
	if got := storedBlocks(t, c, f.ID()); len(got) != 1 || got[0] != 0 {
		t.Fatalf("map holds %v, want [0]", got)
	}
	if st := c.Stats(); st.LocalBytes != bs {
		t.Fatalf("Stats after dropping stale blocks: %+v", st)
	}
}

func TestVerifyDropsCorruptBlock(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{CommitWindow: time.Hour})
	const bs, size = 4096, 3*4096 + 5
	f, gen := pinned(t, c, "f", size, bs)
	writeAll(t, f, gen, 1, size)
	// Block 0 is not committed yet: Verify makes it durable first.
	if ok, err := f.Verify(0); !ok || err != nil {
		t.Fatalf("Verify(0) = %v, %v", ok, err)
	}
	if ok, err := f.Verify(7); ok || err != nil {
		t.Fatalf("Verify of an absent block = %v, %v", ok, err)
	}
	fd, err := os.OpenFile(f.DataPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte{0xff ^ blockData(1, 1, bs, size)[10]}, bs+10); err != nil {
		t.Fatal(err)
	}
	if err := fd.Truncate(3*bs + 2); err != nil { // the last block loses bytes
		t.Fatal(err)
	}
	fd.Close()
	for idx, want := range []bool{true, false, true, false} {
		if ok, err := f.Verify(int64(idx)); ok != want || err != nil {
			t.Errorf("Verify(%d) = %v, %v; want %v", idx, ok, err, want)
		}
	}
	if f.Present(1) || f.Present(3) || !f.Present(2) || f.Complete() || f.LocalBytes() != 2*bs {
		t.Fatal("corrupt blocks still present")
	}
	if got := storedBlocks(t, c, f.ID()); len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Fatalf("map holds %v, want [0 2]", got)
	}
	if st := c.Stats(); st.LocalBytes != 2*bs {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{MaxOpenFiles: 3, CommitWindow: time.Hour})
	const bs = 4096
	var files []*File
	for i := range 10 {
		f, gen := pinned(t, c, string(rune('a'+i)), bs, bs)
		if err := f.WriteBlock(gen, 0, blockData(uint64(i), 0, bs, bs)); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// Written but not synced: every fd stays open until the committer
	// synced it.
	if n := openDataFiles(t, dir); n != 10 {
		t.Fatalf("%d data files open before the commit, want 10", n)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := openDataFiles(t, dir); n > 3 {
		t.Fatalf("%d data files open after the commit, want <= 3", n)
	}
	for i, f := range files {
		buf := make([]byte, bs)
		if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != string(blockData(uint64(i), 0, bs, bs)) {
			t.Fatalf("file %d reads back wrong: %v", i, err)
		}
	}
	if n := openDataFiles(t, dir); n > 3 {
		t.Fatalf("%d data files open after reading, want <= 3", n)
	}
}

// openDataFiles counts this process's fds on files under dir/data.
func openDataFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	prefix := filepath.Join(dir, "data") + "/"
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, prefix) {
			n++
		}
	}
	return n
}
