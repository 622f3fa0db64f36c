package cache

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallFS mounts a tmpfs of size bytes on a fresh directory for the test
// (root only: skipped otherwise, failed under CI=true) and unmounts it in
// Cleanup.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a size-limited tmpfs needs root, which CI=true requires")
		}
		t.Skip("skipping: mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file into dir until the file system is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	fd, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := fd.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for len(buf) > 1 { // the last pages
		if _, err := fd.Write(buf); err != nil {
			buf = buf[:len(buf)/2]
		}
	}
	return p
}

// TestDiskFull fills the cache's file system: local data stays readable
// and correct, cold blocks are evicted to store new ones, a write with
// nothing left to evict fails with ENOSPC, and once space is freed the
// cache takes background fill again by itself.
func TestDiskFull(t *testing.T) {
	dir := filepath.Join(smallFS(t, "8m"), "cache")
	var rooms atomic.Int32
	c := openTest(t, dir, Options{OnRoom: func() { rooms.Add(1) }})
	if _, alloc := diskUsage(t, filepath.Join(dir, "ballast")); alloc < minBallast {
		t.Fatalf("ballast holds %d bytes", alloc)
	}
	const bs = 64 << 10
	const nb = 48
	const size = nb * bs
	a, gen := pinned(t, c, "a", size, bs)
	writeAll(t, a, gen, 1, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	filler := fillDisk(t, dir)
	// The space loop may have read statfs while the disk was filling,
	// and tick reads it again only a second later: read it now.
	c.space.mu.Lock()
	c.space.statLocked(time.Now())
	c.space.mu.Unlock()
	c.tick(false)
	if c.Room(bs) {
		t.Fatal("room for background fill on a full disk")
	}

	// Every block of a is pinned: nothing to evict, the write fails.
	if err := a.SetPinned(true); err != nil {
		t.Fatal(err)
	}
	b, bgen := pinned(t, c, "b", size, bs)
	err := b.WriteBlock(bgen, 0, blockData(2, 0, bs, size))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk with nothing to evict: %v, want ENOSPC", err)
	}
	if !a.Complete() {
		t.Fatalf("pinned blocks evicted: %v", present(a, nb))
	}
	if st := c.Stats(); !st.DiskFull || b.Present(0) {
		t.Fatalf("after ENOSPC: %+v, block present %v", st, b.Present(0))
	}
	// Unpinned, a's cold blocks make room for new ones.
	if err := a.SetPinned(false); err != nil {
		t.Fatal(err)
	}
	for idx := range int64(8) {
		if err := b.WriteBlock(bgen, idx, blockData(2, idx, bs, size)); err != nil {
			t.Fatalf("write of block %d with cold blocks to evict: %v", idx, err)
		}
		readBlock(t, b, 2, idx, size)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if a.Complete() || c.Stats().EvictedBytes == 0 {
		t.Fatalf("nothing evicted: %+v", c.Stats())
	}
	for _, f := range []*File{a, b} {
		for _, idx := range present(f, nb) {
			if ok, err := f.Verify(idx); !ok || err != nil {
				t.Fatalf("%s block %d: Verify = %v, %v", f.Record().Path, idx, ok, err)
			}
		}
	}
	if c.Room(bs) {
		t.Fatal("room for background fill while the disk is full")
	}

	// Space comes back: the ballast is remade, the full mark cleared,
	// OnRoom called.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.tick(false)
	if st := c.Stats(); st.DiskFull {
		t.Fatalf("still full after space came back: %+v", st)
	}
	if rooms.Load() == 0 || !c.Room(bs) {
		t.Fatalf("no room after space came back (OnRoom called %d times)", rooms.Load())
	}
	if _, alloc := diskUsage(t, filepath.Join(dir, "ballast")); alloc < minBallast {
		t.Fatalf("ballast not remade: %d bytes", alloc)
	}
	mustClose(t, c)
	c = openTest(t, dir, Options{})
	b, err = c.File("b", "http://origin.test/b", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	for idx := range int64(8) {
		readBlock(t, b, 2, idx, size)
	}
}
