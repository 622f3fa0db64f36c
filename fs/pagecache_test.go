package fs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"ferry/fetcher"
)

// These tests look at the kernel's page cache of a file in the mount with
// NOTIFY_RETRIEVE (Inode.ReadCache), which returns how many bytes from an
// offset on are cached. They need FUSE passthrough (root): only then are
// pages dropped.

// pcNode returns the node of path and skips the test without passthrough.
func pcNode(t *testing.T, m *Mounted, path string) *fileNode {
	t.Helper()
	if !m.root.sh.passthrough.Load() {
		t.Skip("the kernel does not offer FUSE passthrough here")
	}
	// A file's node exists once the kernel looked it up.
	if _, err := os.Stat(filepath.Join(m.Dir(), path)); err != nil {
		t.Fatal(err)
	}
	m.inval.mu.Lock()
	n := m.inval.nodes[path]
	m.inval.mu.Unlock()
	if n == nil {
		t.Fatalf("no node for %s", path)
	}
	// An open's wait for a drop must not end by a timeout on a loaded
	// machine: what it waits for does come.
	m.inval.setWait(5 * time.Minute)
	return n
}

// cachedAt reports whether the kernel caches the page of n at off.
func cachedAt(t *testing.T, n *fileNode, off int64) bool {
	t.Helper()
	buf := make([]byte, 4096)
	c, errno := n.ReadCache(off, buf)
	if errno != 0 {
		t.Fatalf("ReadCache(%d): %v", off, errno)
	}
	return c > 0
}

// readRange reads [off, off+len(p)) of f and checks the bytes.
func readRange(t *testing.T, f *os.File, seed uint64, off int64, p []byte) {
	t.Helper()
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatalf("read at %d: %v", off, err)
	}
	if err := checkRange(seed, off, p); err != nil {
		t.Fatal(err)
	}
}

// cacheAt reads the MiB of f at off until the kernel caches its first page
// (the read puts it there; nothing else should drop it, but a reclaim may).
func cacheAt(t *testing.T, f *os.File, n *fileNode, seed uint64, off int64) {
	t.Helper()
	buf := make([]byte, 1<<20)
	waitFor(t, "the kernel caching what was read", func() bool {
		readRange(t, f, seed, off, buf)
		return cachedAt(t, n, off)
	})
}

// openCaching opens path while passthrough is off, so the handle is served
// by Read and its pages cached, whatever the file's state.
func openCaching(t *testing.T, m *Mounted, path string) *os.File {
	t.Helper()
	m.root.sh.passthrough.Store(false)
	f, err := os.Open(path)
	m.root.sh.passthrough.Store(true)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// openCounts returns the node's open handles by mode.
func openCounts(n *fileNode) (cached, passthru int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cachedOpen, n.passthruOpen
}

func fileState(t *testing.T, n *fileNode) fetcher.State {
	st, err := n.fetch.State()
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	return st
}

// TestDropBehindReader reads the first part of a large file sequentially:
// the kernel's pages far behind the reader are dropped while the handle is
// still open and the file partial, those just read are not.
// mountReadComplete mounts one generated file, reads it whole through the
// mount (checking its bytes) and waits until it is complete.
func mountReadComplete(t *testing.T, path string, size int64, seed uint64) (*Mounted, *fileNode, string) {
	t.Helper()
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: path, size: size, seed: seed, declare: true}})
	m := testMount(t, files, Options{})
	n := pcNode(t, m, path)
	p := filepath.Join(m.Dir(), path)
	if got, want := fileSum(t, p), generatedSum(seed, size); got != want {
		t.Fatal("content differs")
	}
	waitFor(t, "the file to be complete", func() bool { return fileState(t, n) == fetcher.StateComplete })
	return m, n, p
}

func TestDropBehindReader(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 128 << 20
	const read = 48 << 20 // the fetcher reads ahead 16 MiB at most: the file stays partial
	files := serve(srv, base, []genFile{{path: "big.bin", size: size, seed: 71, declare: true}})
	m := testMount(t, files, Options{})
	n := pcNode(t, m, "big.bin")
	p := filepath.Join(m.Dir(), "big.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < read; off += int64(len(buf)) {
		if _, err := io.ReadFull(f, buf); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if err := checkRange(71, off, buf); err != nil {
			t.Fatal(err)
		}
	}
	// The probe works: the last MiB read is cached (read again if
	// something else dropped it; it is well within dropLag).
	cacheAt(t, f, n, 71, read-(1<<20))
	waitFor(t, "the pages at the start to be dropped", func() bool { return !cachedAt(t, n, 0) })
	if st := fileState(t, n); st == fetcher.StateComplete {
		t.Fatalf("the file is complete: the drop may have been the one at completion")
	}
	// What was dropped is read again, right.
	readRange(t, f, 71, 0, buf)
}

// TestDropWhenComplete reads the start of a file, then has it filled: once
// it is complete, the kernel's pages of it are dropped although the handle
// that read them is still open.
func TestDropWhenComplete(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 8 << 20 // below dropLag: nothing is dropped behind the reader
	files := serve(srv, base, []genFile{{path: "c.bin", size: size, seed: 72, declare: true}})
	m := testMount(t, files, Options{})
	n := pcNode(t, m, "c.bin")
	f, err := os.Open(filepath.Join(m.Dir(), "c.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cacheAt(t, f, n, 72, 0)
	if st := fileState(t, n); st == fetcher.StateComplete {
		t.Fatalf("complete after reading 1 MiB of 8")
	}
	if err := n.fetch.Ensure(context.Background(), 0, size); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file to be complete", func() bool { return fileState(t, n) == fetcher.StateComplete })
	waitFor(t, "the pages to be dropped", func() bool { return !cachedAt(t, n, 0) })
	readRange(t, f, 72, 0, make([]byte, 1<<20))
}

// TestDropAtLastRelease reads a complete file through a caching handle:
// when the handle is released, the kernel's pages are dropped, and the next
// open is passthrough.
func TestDropAtLastRelease(t *testing.T) {
	const size = 8 << 20
	m, n, p := mountReadComplete(t, "r.bin", size, 73)
	waitFor(t, "the drops to end", func() bool { return m.inval.pending(n) == nil })
	f := openCaching(t, m, p)
	cacheAt(t, f, n, 73, 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pages to be dropped", func() bool { return !cachedAt(t, n, 0) })
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if c, pt := openCounts(n); c != 0 || pt != 1 {
		t.Fatalf("open after the release: %d caching, %d passthrough handles; want 0, 1", c, pt)
	}
	readRange(t, g, 73, size-12345, make([]byte, 12345))
}

// TestOpenAfterDupFlush closes one of two descriptors of a caching handle
// of a complete file (a flush without a release) and opens the file: the
// open works in caching mode and reads right; once every handle is
// released, an open is passthrough again.
func TestOpenAfterDupFlush(t *testing.T) {
	const size = 2<<20 + 7
	m, n, p := mountReadComplete(t, "d.bin", size, 75)
	f := openCaching(t, m, p)
	fd2, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	dup := os.NewFile(uintptr(fd2), p)
	defer dup.Close()
	if err := f.Close(); err != nil { // a flush; the handle stays open
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := range 3 {
		g, err := os.Open(p)
		if err != nil {
			t.Fatalf("open %d after the flush: %v", i, err)
		}
		readRange(t, g, 75, 1<<20, buf)
		c, pt := openCounts(n)
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if pt != 0 || c < 2 {
			t.Fatalf("open %d with a caching handle open: %d caching, %d passthrough handles", i, c, pt)
		}
	}
	readRange(t, dup, 75, 5, buf)
	if err := dup.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every release", func() bool { c, _ := openCounts(n); return c == 0 })
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if c, pt := openCounts(n); c != 0 || pt != 1 {
		t.Fatalf("open after every release: %d caching, %d passthrough handles; want 0, 1", c, pt)
	}
	readRange(t, g, 75, size-4096, buf)
}
