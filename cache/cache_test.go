package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReadBlocks(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	const bs, size = 4096, 3*4096 + 100
	f, gen := pinned(t, c, "dir/a.bin", size, bs)

	if f.Present(0) || f.Missing(0, 3) != 0 || f.Complete() {
		t.Fatal("new file claims blocks")
	}
	// Wrong lengths and indexes are refused.
	for _, bad := range []struct {
		idx int64
		n   int
	}{{1, 100}, {3, bs}, {4, 100}, {-1, bs}, {0, bs + 1}, {0, 0}} {
		if err := f.WriteBlock(gen, bad.idx, make([]byte, bad.n)); err == nil {
			t.Errorf("WriteBlock(%d, %d bytes) succeeded", bad.idx, bad.n)
		}
	}
	if f.LocalBytes() != 0 {
		t.Fatalf("refused writes counted %d bytes", f.LocalBytes())
	}

	for _, idx := range []int64{3, 1} {
		if err := f.WriteBlock(gen, idx, blockData(1, idx, bs, size)); err != nil {
			t.Fatal(err)
		}
	}
	if !f.Present(1) || !f.Present(3) || f.Present(0) || f.Present(2) || f.Present(4) {
		t.Fatal("Present is wrong after writing blocks 1 and 3")
	}
	if got := f.Missing(0, 3); got != 0 {
		t.Fatalf("Missing(0,3) = %d, want 0", got)
	}
	if got := f.Missing(1, 3); got != 2 {
		t.Fatalf("Missing(1,3) = %d, want 2", got)
	}
	if got := f.Missing(3, 3); got != -1 {
		t.Fatalf("Missing(3,3) = %d, want -1", got)
	}
	if f.LocalBytes() != bs+100 {
		t.Fatalf("LocalBytes = %d, want %d", f.LocalBytes(), bs+100)
	}
	if f.Complete() {
		t.Fatal("Complete with blocks missing")
	}
	writeAll(t, f, gen, 1, size)
	if !f.Complete() || f.Missing(0, 3) != -1 || f.LocalBytes() != size {
		t.Fatalf("after writing all: Complete %v Missing %d LocalBytes %d", f.Complete(), f.Missing(0, 3), f.LocalBytes())
	}
	got := make([]byte, size)
	if n, err := f.ReadAt(got, 0); err != nil || n != size {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	for idx := int64(0); idx < 4; idx++ {
		if !bytes.Equal(got[idx*bs:min((idx+1)*bs, size)], blockData(1, idx, bs, size)) {
			t.Fatalf("block %d reads back wrong", idx)
		}
	}
	if sz, _ := diskUsage(t, f.DataPath()); sz != size {
		t.Fatalf("data file is %d bytes, want %d", sz, size)
	}
	fi, err := os.Stat(f.DataPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || filepath.Base(f.DataPath()) != "0000000000000001" {
		t.Fatalf("data file %s has mode %v", f.DataPath(), fi.Mode())
	}
	if st := c.Stats(); st.LocalBytes != size || st.Files != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	const bs, size = 1 << 16, 5<<16 + 7
	c := openTest(t, dir, Options{})
	f, gen := pinned(t, c, "a", size, bs)
	for _, idx := range []int64{0, 2, 5} {
		if err := f.WriteBlock(gen, idx, blockData(9, idx, bs, size)); err != nil {
			t.Fatal(err)
		}
	}
	g, _ := pinned(t, c, "b", 0, bs)
	gen2, err := g.Reset("test")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Pin(gen2, Remote{Size: 10, ETag: "x", LastModified: "Mon"}); err != nil {
		t.Fatal(err)
	}
	if c.UncleanStart() {
		t.Fatal("fresh cache reports an unclean start")
	}
	mustClose(t, c) // Close commits the pending blocks

	c = openTest(t, dir, Options{})
	if c.UncleanStart() {
		t.Fatal("clean Close reported as unclean")
	}
	f, err = c.File("a", "http://origin.test/a", size, 999)
	if err != nil {
		t.Fatal(err)
	}
	for idx := int64(0); idx < 6; idx++ {
		want := idx == 0 || idx == 2 || idx == 5
		if f.Present(idx) != want {
			t.Errorf("block %d present = %v after reopen", idx, !want)
		}
	}
	if f.BlockSize() != bs || f.LocalBytes() != 2*bs+7 {
		t.Fatalf("BlockSize %d LocalBytes %d", f.BlockSize(), f.LocalBytes())
	}
	r, gotGen, ok := f.Remote()
	if !ok || gotGen != gen || r != (Remote{Size: size, ETag: `"a"`}) {
		t.Fatalf("Remote = %+v, %d, %v", r, gotGen, ok)
	}
	buf := make([]byte, 7)
	if _, err := f.ReadAt(buf, 5*bs); err != nil || !bytes.Equal(buf, blockData(9, 5, bs, size)) {
		t.Fatalf("short last block reads back wrong: %v", err)
	}
	g, err = c.File("b", "http://origin.test/b", -1, bs)
	if err != nil {
		t.Fatal(err)
	}
	rec := g.Record()
	want := Record{ID: 2, Path: "b", URL: "http://origin.test/b", BlockSize: bs, DeclaredSize: -1,
		Pinned: true, Remote: Remote{Size: 10, ETag: "x", LastModified: "Mon"}, Generation: gen2, Restarts: 1}
	if rec != want {
		t.Fatalf("Record = %+v\nwant     %+v", rec, want)
	}
	if st := c.Stats(); st.LocalBytes != 2*bs+7 || st.Files != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	// A new file gets a new ID after reopening.
	h, err := c.File("c", "u", -1, bs)
	if err != nil || h.ID() != 3 {
		t.Fatalf("new file after reopen: ID %d, %v", h.ID(), err)
	}
}

func TestResetDropsBlocksAndSpace(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	const bs, size = 1 << 20, 8<<20 - 3
	f, gen := pinned(t, c, "big", size, bs)
	writeAll(t, f, gen, 3, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(storedBlocks(t, c, f.ID())); n != 8 {
		t.Fatalf("%d blocks in the map, want 8", n)
	}
	if _, alloc := diskUsage(t, f.DataPath()); alloc < size {
		t.Fatalf("data file allocates %d bytes before Reset", alloc)
	}
	newGen, err := f.Reset("remote changed")
	if err != nil {
		t.Fatal(err)
	}
	if newGen != gen+1 || f.Restarts() != 1 {
		t.Fatalf("Reset: gen %d restarts %d", newGen, f.Restarts())
	}
	if _, _, ok := f.Remote(); ok {
		t.Fatal("validator still pinned after Reset")
	}
	if f.Missing(0, 7) != 0 || f.LocalBytes() != 0 || f.Complete() {
		t.Fatal("blocks still present after Reset")
	}
	if n := storedBlocks(t, c, f.ID()); len(n) != 0 {
		t.Fatalf("map still holds blocks %v", n)
	}
	if sz, alloc := diskUsage(t, f.DataPath()); sz != 0 || alloc != 0 {
		t.Fatalf("data file after Reset: size %d allocated %d", sz, alloc)
	}
	if st := c.Stats(); st.LocalBytes != 0 {
		t.Fatalf("Stats after Reset = %+v", st)
	}
	mustClose(t, c)
	c = openTest(t, dir, Options{})
	f, err = c.File("big", "http://origin.test/big", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	if _, g, ok := f.Remote(); ok || g != newGen || f.Missing(0, 7) != 0 || f.Restarts() != 1 {
		t.Fatalf("after reopen: gen %d pinned %v missing %d", g, ok, f.Missing(0, 7))
	}
	if st := c.Stats(); st.LocalBytes != 0 {
		t.Fatalf("Stats after reopen = %+v", st)
	}
}

func TestStaleWriteRefusedAndNotCommitted(t *testing.T) {
	// A window of an hour: the committer only runs when Flush asks.
	c := openTest(t, t.TempDir(), Options{CommitWindow: time.Hour})
	const bs, size = 4096, 4 * 4096
	f, gen := pinned(t, c, "f", size, bs)
	if err := f.WriteBlock(gen, 0, blockData(1, 0, bs, size)); err != nil {
		t.Fatal(err)
	}
	newGen, err := f.Reset("test") // block 0 of gen is still queued
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBlock(gen, 1, blockData(1, 1, bs, size)); !errors.Is(err, ErrStale) {
		t.Fatalf("WriteBlock with the old generation: %v, want ErrStale", err)
	}
	if err := f.Pin(gen, Remote{Size: size}); !errors.Is(err, ErrStale) {
		t.Fatalf("Pin with the old generation: %v, want ErrStale", err)
	}
	if err := f.WriteBlock(newGen, 2, blockData(2, 2, bs, size)); err != nil {
		t.Fatal(err) // unpinned: any length up to the block size
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := storedBlocks(t, c, f.ID()); len(got) != 1 || got[0] != 2 {
		t.Fatalf("map holds blocks %v, want [2]", got)
	}
	if f.Present(0) || f.Present(1) || !f.Present(2) {
		t.Fatal("Present wrong after the stale write")
	}
	if st := c.Stats(); st.LocalBytes != bs || f.LocalBytes() != bs {
		t.Fatalf("LocalBytes: cache %d file %d, want %d", st.LocalBytes, f.LocalBytes(), bs)
	}
}

func TestURLOrSizeChangeResets(t *testing.T) {
	dir := t.TempDir()
	const bs, size = 4096, 2 * 4096
	c := openTest(t, dir, Options{})
	f, gen := pinned(t, c, "f", size, bs)
	writeAll(t, f, gen, 1, size)

	// Same URL, unknown size: nothing changes.
	if g, err := c.File("f", "http://origin.test/f", -1, bs); err != nil || g != f || !f.Complete() {
		t.Fatalf("File with the same URL: %v, same %v, complete %v", err, g == f, f.Complete())
	}
	// A new URL resets.
	if _, err := c.File("f", "http://other.test/f", -1, bs); err != nil {
		t.Fatal(err)
	}
	if f.Present(0) || f.Restarts() != 1 || f.Record().URL != "http://other.test/f" {
		t.Fatalf("URL change: present %v restarts %d record %+v", f.Present(0), f.Restarts(), f.Record())
	}
	_, gen, _ = f.Remote()
	if err := f.Pin(gen, Remote{Size: size}); err != nil {
		t.Fatal(err)
	}
	writeAll(t, f, gen, 2, size)
	mustClose(t, c)

	// After a restart, a manifest declaring another size resets.
	c = openTest(t, dir, Options{})
	f, err := c.File("f", "http://other.test/f", size+1, bs)
	if err != nil {
		t.Fatal(err)
	}
	if f.Present(0) || f.Restarts() != 2 || f.Record().DeclaredSize != size+1 {
		t.Fatalf("size change: present %v restarts %d record %+v", f.Present(0), f.Restarts(), f.Record())
	}
	if n := storedBlocks(t, c, f.ID()); len(n) != 0 {
		t.Fatalf("map still holds blocks %v", n)
	}
}

func TestEvictKeepsValidator(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	const bs, size = 4096, 3 * 4096
	f, gen := pinned(t, c, "f", size, bs)
	writeAll(t, f, gen, 1, size)
	if err := f.Evict(); err != nil {
		t.Fatal(err)
	}
	r, newGen, ok := f.Remote()
	if !ok || r.Size != size || newGen != gen+1 || f.Restarts() != 0 {
		t.Fatalf("after Evict: %+v gen %d pinned %v restarts %d", r, newGen, ok, f.Restarts())
	}
	if f.Missing(0, 2) != 0 || f.LocalBytes() != 0 || c.Stats().LocalBytes != 0 {
		t.Fatal("blocks survive Evict")
	}
	if err := f.WriteBlock(gen, 0, blockData(1, 0, bs, size)); !errors.Is(err, ErrStale) {
		t.Fatalf("write of the pre-evict generation: %v", err)
	}
	writeAll(t, f, newGen, 1, size)
	if !f.Complete() {
		t.Fatal("not complete after refilling")
	}
}

func TestPin(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	f, err := c.File("empty", "u", 0, 4096)
	if err != nil {
		t.Fatal(err)
	}
	_, gen, _ := f.Remote()
	if f.Complete() {
		t.Fatal("complete before Pin")
	}
	r := Remote{Size: 0, ETag: "e"}
	if err := f.Pin(gen, r); err != nil {
		t.Fatal(err)
	}
	if !f.Complete() {
		t.Fatal("pinned empty file is not complete")
	}
	if err := f.Pin(gen, r); err != nil {
		t.Fatalf("pinning the same validator again: %v", err)
	}
	if err := f.Pin(gen, Remote{Size: 0, ETag: "other"}); err == nil {
		t.Fatal("pinning another validator succeeded")
	}
	if err := f.Pin(gen+1, r); !errors.Is(err, ErrStale) {
		t.Fatalf("Pin of a future generation: %v", err)
	}

	// Blocks written before Pin must fit the pinned size.
	g, err := c.File("g", "u", -1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	_, gen, _ = g.Remote()
	if err := g.WriteBlock(gen, 3, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := g.Pin(gen, Remote{Size: 4096}); err == nil {
		t.Fatal("Pin accepted a size that excludes a present block")
	}
	if err := g.Pin(gen, Remote{Size: 3*4096 + 10}); err != nil {
		t.Fatal(err)
	}
	if g.Complete() || g.Missing(0, 3) != 0 {
		t.Fatal("Complete/Missing wrong after late Pin")
	}
}

func TestDirectoryModeAndLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, dir, Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir has mode %v, want 0700", fi.Mode().Perm())
	}
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
	mustClose(t, c)
	c2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	mustClose(t, c2)
}

func TestSchemaVersionChecked(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	if err := c.db.Set(keySchemaVersion, u64(schemaVersion+1), nil); err != nil {
		t.Fatal(err)
	}
	mustClose(t, c)
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", schemaVersion+1)) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
	// The refused Open released the lock: a fixed map opens again.
	if err := os.RemoveAll(filepath.Join(dir, "map")); err != nil {
		t.Fatal(err)
	}
	c = openTest(t, dir, Options{})
	mustClose(t, c)
}

func TestClosed(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	f, gen := pinned(t, c, "f", 10, 4096)
	mustClose(t, c)
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.File("g", "u", -1, 4096); !errors.Is(err, ErrClosed) {
		t.Errorf("File: %v", err)
	}
	if err := f.WriteBlock(gen, 0, make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteBlock: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt: %v", err)
	}
	if _, err := f.Reset("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Reset: %v", err)
	}
	if err := f.Evict(); !errors.Is(err, ErrClosed) {
		t.Errorf("Evict: %v", err)
	}
	if err := f.Pin(gen, Remote{Size: 10}); !errors.Is(err, ErrClosed) {
		t.Errorf("Pin: %v", err)
	}
	if err := c.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush: %v", err)
	}
}

func TestSameFileForSamePath(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	a, err := c.File("p", "u", -1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.File("p", "u", -1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || b.BlockSize() != 4096 {
		t.Fatal("File returned a different *File or changed the block size")
	}
	if _, err := c.File("q", "u", -1, 0); err == nil {
		t.Fatal("block size 0 accepted")
	}
	if _, err := c.File("", "u", -1, 4096); err == nil {
		t.Fatal("empty path accepted")
	}
}
