package fs

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/cache"
)

// cacheDU is what du says of the cache's data files: the sum of their
// st_blocks*512.
func cacheDU(t *testing.T, cacheDir string) int64 {
	paths, err := filepath.Glob(filepath.Join(cacheDir, "data", "*"))
	if err != nil {
		t.Error(err)
		return 0
	}
	var n int64
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// duSampler samples cacheDU every few milliseconds until stop is called,
// failing the test at the first sample over limit() bytes.
func duSampler(t *testing.T, cacheDir string, limit func() int64) (stop func() (samples int, peak int64)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var samples int
	var peak int64
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			du, lim := cacheDU(t, cacheDir), limit()
			samples++
			peak = max(peak, du)
			if du > lim {
				t.Errorf("du of the cache is %d bytes, over the bound %d", du, lim)
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() (int, int64) {
		close(done)
		wg.Wait()
		return samples, peak
	}
}

// TestCacheMaxSize mounts 256 MiB of remote files with a 64 MiB cache,
// reads them all in full, then at random twice, while du of the cache is
// sampled: it never exceeds the bound plus a block per open reader (plus a
// file system block per data file for extent metadata). Every byte read is
// checked, and the pinned file is still local at the end, and after a
// restart, which keeps the accounting.
func TestCacheMaxSize(t *testing.T) {
	const bs = 1 << 20
	const bound = 64 << 20
	srv, base := testOrigin(t)
	gen := []genFile{{path: "pinned.bin", size: 16 << 20, seed: 100, declare: true}}
	for i := range 8 {
		gen = append(gen, genFile{path: fmt.Sprintf("d/f%d.bin", i), size: 30 << 20, seed: uint64(200 + i), declare: true})
	}
	files := serve(srv, base, gen)
	files[0].Pin = true
	cacheDir := t.TempDir()
	opts := Options{CacheDir: cacheDir, BlockSize: bs, Background: true, CacheMaxSize: bound}
	m := testMount(t, files, opts)

	var readers atomic.Int64
	limit := func() int64 { return bound + (readers.Load()+1)*bs + int64(len(gen))*4096 }
	stop := duSampler(t, cacheDir, limit)
	for _, f := range gen {
		readers.Add(1)
		if got, want := fileSum(t, filepath.Join(m.Dir(), f.path)), generatedSum(f.seed, f.size); got != want {
			t.Errorf("%s: sha256 %x, want %x", f.path, got, want)
		}
		readers.Add(-1)
	}
	for pass := range 2 {
		readRandomly(t, m.Dir(), gen, uint64(pass), &readers)
	}
	samples, peak := stop()
	st := m.cache.Stats()
	t.Logf("%d du samples, peak %d bytes; %+v", samples, peak, st)
	if st.LocalBytes > bound || st.EvictedBytes == 0 {
		t.Fatalf("cache stats %+v: over the bound, or nothing evicted", st)
	}
	pinned := filepath.Join(m.Dir(), gen[0].path)
	if local, size := progress(t, pinned); local != size {
		t.Fatalf("pinned file has %d of %d bytes local", local, size)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart keeps the accounting: the bound holds at once.
	start := time.Now()
	m = testMount(t, files, Options{CacheDir: cacheDir, BlockSize: bs, CacheMaxSize: bound})
	t.Logf("remount took %v", time.Since(start))
	pinned = filepath.Join(m.Dir(), gen[0].path)
	if st := m.cache.Stats(); st.LocalBytes > bound || st.LocalBytes < gen[0].size {
		t.Fatalf("after restart: %+v", st)
	}
	if du := cacheDU(t, cacheDir); du > bound+int64(len(gen))*4096 {
		t.Fatalf("after restart du is %d, over the bound", du)
	}
	if local, size := progress(t, pinned); local != size {
		t.Fatalf("after restart the pinned file has %d of %d bytes local", local, size)
	}
	if got, want := fileSum(t, pinned), generatedSum(gen[0].seed, gen[0].size); got != want {
		t.Fatal("pinned file reads wrong after restart")
	}
}

// readRandomly reads every file at random offsets from four goroutines,
// each with all files open, and checks the bytes.
func readRandomly(t *testing.T, dir string, gen []genFile, seed uint64, readers *atomic.Int64) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			fds := make([]*os.File, len(gen))
			for i, f := range gen {
				fd, err := os.Open(filepath.Join(dir, f.path))
				if err != nil {
					t.Error(err)
					return
				}
				defer fd.Close()
				fds[i] = fd
			}
			readers.Add(1)
			defer readers.Add(-1)
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			buf := make([]byte, 3<<20)
			for range 150 {
				i := rng.IntN(len(gen))
				off := rng.Int64N(gen[i].size)
				n := min(1+rng.Int64N(int64(len(buf))), gen[i].size-off)
				got, err := fds[i].ReadAt(buf[:n], off)
				if err != nil && !(err == io.EOF && int64(got) == n) {
					t.Errorf("%s: read at %d: %v", gen[i].path, off, err)
					return
				}
				if err := checkRange(gen[i].seed, off, buf[:got]); err != nil {
					t.Errorf("%s: %v", gen[i].path, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// smallCacheFS mounts an 8 MiB tmpfs for the cache (root only: skipped
// otherwise, failed under CI=true) and unmounts it in Cleanup.
func smallCacheFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a size-limited tmpfs needs root, which CI=true requires")
		}
		t.Skip("skipping: mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// fillUp appends to dir/filler until the file system has at most leave
// bytes free.
func fillUp(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	fd, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	for n := 64 << 10; n > 0; {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if int64(st.Bavail)*st.Bsize <= leave {
			break
		}
		if _, err := fd.Write(make([]byte, n)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			n /= 2
		}
	}
	return p
}

// TestCacheDiskFull puts the cache on an 8 MiB file system that another
// program has mostly filled, with 16 MiB of remote files: every read is
// right while the cache evicts cold blocks to make room. Then the disk is
// filled completely: reads still work and no stored block is corrupt, and
// background fill, which had no room, waits. Once the space is freed,
// background fill resumes by itself.
func TestCacheDiskFull(t *testing.T) {
	const bs = 256 << 10
	fsDir := smallCacheFS(t)
	filler := fillUp(t, fsDir, 3<<20)
	cacheDir := filepath.Join(fsDir, "cache")
	srv, base := testOrigin(t)
	var gen []genFile
	for i := range 4 {
		gen = append(gen, genFile{path: fmt.Sprintf("f%d.bin", i), size: 4 << 20, seed: uint64(300 + i), declare: true})
	}
	files := serve(srv, base, gen)
	m := testMount(t, files, Options{CacheDir: cacheDir, BlockSize: bs, Background: true, ReadTimeout: 5 * time.Second})
	c := m.cache
	readAllChecked := func() {
		for i, f := range gen {
			p := filepath.Join(m.Dir(), f.path)
			if got, want := fileSum(t, p), generatedSum(f.seed, f.size); got != want {
				t.Errorf("%s: sha256 %x, want %x", f.path, got, want)
			}
			verifyLocal(t, m, i)
		}
	}
	readAllChecked()
	if st := c.Stats(); st.EvictedBytes == 0 || st.LocalBytes > 3<<20 {
		t.Fatalf("reads on a nearly full disk: %+v", st)
	}
	// The disk is full now: reads still work, nothing is corrupt.
	fillUp(t, fsDir, 0)
	readAllChecked()
	// A read may return before its block's write (and the eviction that
	// made room for it) finished: the cache sees the disk full once they
	// did.
	waitFor(t, "no room for background fill on the full disk", func() bool { return !c.Room(bs) })
	before := c.Stats()
	t.Logf("on the full disk: %+v", before)

	// Space comes back: background fill resumes by itself and fills at
	// least one whole file (a background request asks for room for 4 MiB).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "background fill to resume", func() bool {
		return c.Stats().LocalBytes >= before.LocalBytes+(2<<20)
	})
	readAllChecked()
	t.Logf("after space came back: %+v", c.Stats())
}

// verifyLocal checks every present block of file i: its bytes are the
// remote's, and they match the CRC in the block map. A block evicted
// meanwhile is skipped.
func verifyLocal(t *testing.T, m *Mounted, i int) {
	t.Helper()
	n := fileAt(t, m, i)
	bs := n.store.BlockSize()
	seed := uint64(300 + i)
	for idx := int64(0); idx*bs < n.size; idx++ {
		buf := make([]byte, min(bs, n.size-idx*bs))
		if _, err := n.store.ReadAt(buf, idx*bs); errors.Is(err, cache.ErrNotLocal) {
			continue
		} else if err != nil && err != io.EOF {
			t.Errorf("%s block %d: %v", n.path, idx, err)
			continue
		}
		if err := checkRange(seed, idx*bs, buf); err != nil {
			t.Errorf("%s block %d is corrupt: %v", n.path, idx, err)
			continue
		}
		if ok, err := n.store.Verify(idx); err != nil || !ok && n.store.Present(idx) {
			t.Errorf("%s block %d: Verify = %v, %v", n.path, idx, ok, err)
		}
	}
}
