package fs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

// TestTreeAndAttributes checks the implied directories, modes, owners,
// sizes, times, inode numbers and that nothing can be written.
func TestTreeAndAttributes(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{
		{path: "top.txt", size: 10, seed: 1, declare: true},
		{path: "a/b/c.bin", size: 5000, seed: 2},
		{path: "a/d.bin", size: 1, seed: 3, declare: true},
	})
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	files[0].MTime = mtime
	before := time.Now().Add(-time.Second)
	m := testMount(t, files, Options{})
	dir := m.Dir()

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"a", "top.txt"}) {
		t.Errorf("root lists %q", names)
	}
	entries, err = os.ReadDir(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name() != "b" || !entries[0].IsDir() || entries[1].Name() != "d.bin" {
		t.Errorf("a lists %v", entries)
	}

	inos := map[uint64]string{}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		size int64
	}{
		{"a", os.ModeDir | 0o555, -1},
		{"a/b", os.ModeDir | 0o555, -1},
		{"top.txt", 0o444, 10},
		{"a/b/c.bin", 0o444, 5000},
		{"a/d.bin", 0o444, 1},
	} {
		st, err := os.Stat(filepath.Join(dir, tc.path))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, st.Mode(), tc.mode)
		}
		if tc.size >= 0 && st.Size() != tc.size {
			t.Errorf("%s: size %d, want %d", tc.path, st.Size(), tc.size)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != uint32(os.Getuid()) || sys.Gid != uint32(os.Getgid()) {
			t.Errorf("%s: owner %d:%d", tc.path, sys.Uid, sys.Gid)
		}
		if other, dup := inos[sys.Ino]; dup {
			t.Errorf("%s and %s share inode %d", tc.path, other, sys.Ino)
		}
		inos[sys.Ino] = tc.path
		want := mtime
		if tc.path != "top.txt" {
			want = time.Time{} // the mount time
		}
		if !want.IsZero() && !st.ModTime().Equal(want) {
			t.Errorf("%s: mtime %v, want %v", tc.path, st.ModTime(), want)
		}
		if want.IsZero() && st.ModTime().Before(before) {
			t.Errorf("%s: mtime %v, want the mount time", tc.path, st.ModTime())
		}
	}

	p := filepath.Join(dir, "top.txt")
	for _, flag := range []int{os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC} {
		if _, err := os.OpenFile(p, flag, 0); !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("open with flags %#x: %v, want EROFS or EACCES", flag, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err == nil {
		t.Error("creating a file succeeded")
	}
	if err := os.Remove(p); err == nil {
		t.Error("removing a file succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of a missing name: %v", err)
	}

	// The kernel's readahead for the mount was raised to 1 MiB.
	if e, ok, err := findMount(dir); err != nil || !ok {
		t.Errorf("mount not in mountinfo: %v", err)
	} else if ra, err := os.ReadFile("/sys/class/bdi/" + e.dev + "/read_ahead_kb"); err != nil || strings.TrimSpace(string(ra)) != "1024" {
		t.Errorf("read_ahead_kb = %q, %v; want 1024", ra, err)
	}

	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Files != 3 || sfs.Blocks == 0 || sfs.Bfree != 0 {
		t.Errorf("statfs: files %d blocks %d free %d", sfs.Files, sfs.Blocks, sfs.Bfree)
	}
}

// TestXattrs checks the ferry attributes before and after a read, the
// answers to unknown names and to small buffers.
func TestXattrs(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 3*testBlockSize + 100
	files := serve(srv, base, []genFile{{path: "f.bin", size: size, seed: 9, declare: true}})
	m := testMount(t, files, Options{BlockSize: testBlockSize})
	p := filepath.Join(m.Dir(), "f.bin")

	if v, err := getxattr(p, xattrURL); err != nil || v != base+"/f.bin" {
		t.Errorf("url = %q, %v", v, err)
	}
	if v, err := getxattr(p, xattrState); err != nil || v != "remote" {
		t.Errorf("state before any read = %q, %v; want remote", v, err)
	}
	if local, sz := progress(t, p); local != 0 || sz != size {
		t.Errorf("progress before any read = %d/%d", local, sz)
	}
	if _, err := getxattr(p, "user.other"); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("unknown attribute: %v, want ENODATA", err)
	}
	if _, err := syscall.Getxattr(p, xattrURL, make([]byte, 3)); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("small buffer: %v, want ERANGE", err)
	}
	if n, err := syscall.Getxattr(p, xattrURL, nil); err != nil || n != len(base+"/f.bin") {
		t.Errorf("size query: %d, %v", n, err)
	}
	buf := make([]byte, 256)
	n, err := syscall.Listxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
	if !slices.Equal(names, []string{xattrState, xattrProgress, xattrURL}) {
		t.Errorf("listxattr = %q", names)
	}
	if _, err := syscall.Listxattr(p, make([]byte, 5)); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("listxattr with a small buffer: %v, want ERANGE", err)
	}

	// Read the first block: partial, with at least that block local.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 100)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A read may be answered before its block is stored.
	waitStored(t, p, testBlockSize)
	if v, err := getxattr(p, xattrState); err != nil || v != "partial" {
		t.Errorf("state after a read = %q, %v; want partial", v, err)
	}
	if local, _ := progress(t, p); local < testBlockSize || local >= size {
		t.Errorf("local = %d after reading one block", local)
	}
	// Read everything: complete.
	if got, want := fileSum(t, p), generatedSum(9, size); got != want {
		t.Fatal("content differs")
	}
	// The read may return before its last block is stored.
	waitFor(t, "the state after reading all to be complete", func() bool {
		v, err := getxattr(p, xattrState)
		return err == nil && v == "complete"
	})
	if local, _ := progress(t, p); local != size {
		t.Errorf("local = %d after reading all, want %d", local, size)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	// The attribute cache may hold the old st_blocks for a second; the
	// kernel asks again after that, so only check it is not above size.
	if st.Blocks*512 > size+511 {
		t.Errorf("st_blocks = %d for %d bytes", st.Blocks, size)
	}
}

// TestFailedRead checks that a file the origin does not have reads as EIO
// and shows as failed, and that other files still read.
func TestFailedRead(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "ok.bin", size: 1000, seed: 4, declare: true}})
	files = append(files, manifest.File{Path: "gone.bin", URL: base + "/gone.bin", Size: 1000, Line: 9})
	m := testMount(t, files, Options{})
	p := filepath.Join(m.Dir(), "gone.bin")
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a file the origin lacks: %v, want EIO", err)
	}
	if v, err := getxattr(p, xattrState); err != nil || v != "failed" {
		t.Errorf("state = %q, %v; want failed", v, err)
	}
	got, err := os.ReadFile(filepath.Join(m.Dir(), "ok.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRange(4, 0, got); err != nil || len(got) != 1000 {
		t.Errorf("ok.bin: %d bytes, %v", len(got), err)
	}
}

// TestReadTimeout checks that a read of bytes that do not arrive fails with
// EIO once ReadTimeout passed.
func TestReadTimeout(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "slow.bin", size: 1 << 20, seed: 4, declare: true}})
	srv.SetFaults("slow.bin", origin.Faults{Latency: time.Hour})
	m := testMount(t, files, Options{ReadTimeout: 200 * time.Millisecond})
	f, err := os.Open(filepath.Join(m.Dir(), "slow.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 10), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("read: %v, want EIO", err)
	}
}

// TestUnknownSizeFailure checks that a size that cannot be resolved fails
// the mount with the path, URL and line, and leaves nothing mounted.
func TestUnknownSizeFailure(t *testing.T) {
	requireFUSE(t)
	_, base := testOrigin(t)
	dir := t.TempDir()
	url := base + "/nothing-here"
	_, err := Mount(dir, &manifest.Manifest{Files: []manifest.File{
		{Path: "x/missing.bin", URL: url, Size: -1, Line: 17},
	}}, Options{CacheDir: t.TempDir(), Logger: testLogger(t)})
	if err == nil {
		t.Fatal("Mount succeeded")
	}
	for _, want := range []string{"x/missing.bin", url, "17"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertNotMounted(t, dir)
}

// TestPassthrough checks that a file complete at open is served by the
// kernel from the cache's data file: no read reaches the daemon.
func TestPassthrough(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 5<<20 + 3
	files := serve(srv, base, []genFile{{path: "p.bin", size: size, seed: 31, declare: true}})
	opts := Options{CacheDir: t.TempDir()}
	m := testMount(t, files, opts)
	p := filepath.Join(m.Dir(), "p.bin")
	if got, want := fileSum(t, p), generatedSum(31, size); got != want {
		t.Fatal("content differs")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// A new mount: nothing of the file is in the page cache.
	m2 := testMount(t, files, opts)
	if !m2.root.sh.passthrough.Load() {
		t.Skip("the kernel does not offer FUSE passthrough here")
	}
	p = filepath.Join(m2.Dir(), "p.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRange(31, 0, got); err != nil || len(got) != size {
		t.Fatalf("%d bytes: %v", len(got), err)
	}
	if n := m2.root.sh.reads.Load(); n != 0 {
		t.Errorf("%d reads reached the daemon for a complete file", n)
	}
	// While a passthrough handle is open, a second open must work too.
	f1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f2, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	b := make([]byte, 10)
	if _, err := f2.ReadAt(b, 12345); err != nil {
		t.Fatal(err)
	}
	if err := checkRange(31, 12345, b); err != nil {
		t.Fatal(err)
	}
}

// TestMixedOpenModes opens a file while it is partial (caching mode) and
// again once it is complete: the kernel refuses to mix passthrough and
// caching handles on one inode, so the second open must not ask for
// passthrough.
func TestMixedOpenModes(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 2 * testBlockSize
	files := serve(srv, base, []genFile{{path: "m.bin", size: size, seed: 41, declare: true}})
	m := testMount(t, files, Options{BlockSize: testBlockSize})
	p := filepath.Join(m.Dir(), "m.bin")
	f1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	got, err := io.ReadAll(f1)
	if err != nil || len(got) != size {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	f2, err := os.Open(p) // complete now, f1 still open in caching mode
	if err != nil {
		t.Fatalf("second open: %v", err)
	}
	defer f2.Close()
	b := make([]byte, 100)
	if _, err := f2.ReadAt(b, 1000); err != nil {
		t.Fatal(err)
	}
	if err := checkRange(41, 1000, b); err != nil {
		t.Fatal(err)
	}
}

// TestVersionChange replaces the remote object while a handle is open: the
// old handle gets ESTALE rather than bytes of the new version, and a new
// open reads the new version whole, with nothing of the old one.
func TestVersionChange(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 4 * testBlockSize
	files := serve(srv, base, []genFile{{path: "v.bin", size: size, seed: 51, declare: true}})
	m := testMount(t, files, Options{BlockSize: testBlockSize})
	p := filepath.Join(m.Dir(), "v.bin")
	f1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	b := make([]byte, 100)
	if _, err := f1.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := checkRange(51, 0, b); err != nil {
		t.Fatal(err)
	}
	srv.PutGenerated("v.bin", size, 52) // a new version, same size

	_, err = f1.ReadAt(b, size-100)
	switch {
	case errors.Is(err, syscall.ESTALE):
	case err == nil:
		// Only right if the old version's bytes came back.
		if cerr := checkRange(51, size-100, b); cerr != nil {
			t.Errorf("old handle read bytes of another version: %v", cerr)
		}
	default:
		t.Errorf("old handle: %v, want ESTALE or old bytes", err)
	}
	if got, want := fileSum(t, p), generatedSum(52, size); got != want {
		t.Errorf("a new open does not read the new version whole")
	}
}

// TestDigestMismatch declares a wrong sha256: once the background fill
// completed the file, it is failed and reads return EIO, never its bytes.
func TestDigestMismatch(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "d.bin", size: 3*testBlockSize + 5, seed: 61, declare: true}})
	files[0].SHA256 = strings.Repeat("ab", 32)
	m := testMount(t, files, Options{BlockSize: testBlockSize, Background: true})
	p := filepath.Join(m.Dir(), "d.bin")
	st := waitState(t, p, "complete", "failed")
	if st != "failed" {
		t.Fatalf("state %q with a wrong digest, want failed", st)
	}
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a failed file: %v, want EIO", err)
	}
}

// waitState polls user.ferry.state until it is one of want, and returns it.
// It waits for an event, not for a time: the test's own timeout bounds it.
func waitState(t *testing.T, path string, want ...string) string {
	t.Helper()
	for {
		st, err := getxattr(path, xattrState)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(want, st) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}
