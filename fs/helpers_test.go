package fs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"ferry/manifest"
	"ferry/origin"
)

// requireFUSE skips the test when /dev/fuse cannot be opened, except under
// CI=true, where a missing FUSE is a failure: CI must run these tests.
func requireFUSE(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("FUSE is required under CI=true: %v", err)
	}
	t.Skipf("skipping: FUSE not available: %v", err)
}

// testLogger sends records to t.Log: warnings and up normally, everything
// under -v. Records logged after the test ended are dropped.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// testOrigin starts an origin server for the test.
func testOrigin(t *testing.T) (*origin.Server, string) {
	t.Helper()
	srv := origin.New(origin.Options{Logger: testLogger(t)})
	return srv, srv.StartTest(t)
}

// genFile describes a generated object served by the test origin.
type genFile struct {
	path    string
	size    int64
	seed    uint64
	declare bool // the manifest gives the size (else it is resolved)
}

// serve puts the generated files on the origin and returns manifest entries
// for them.
func serve(srv *origin.Server, base string, files []genFile) []manifest.File {
	var out []manifest.File
	for i, f := range files {
		srv.PutGenerated(f.path, f.size, f.seed)
		size := int64(-1)
		if f.declare {
			size = f.size
		}
		out = append(out, manifest.File{
			Path: f.path, URL: base + "/" + f.path, Size: size,
			Priority: manifest.Normal, Line: i + 2,
		})
	}
	return out
}

// testMount mounts files on a fresh mountpoint; opts.CacheDir defaults to a
// fresh directory and opts.Logger to the test's. The mount is closed in
// t.Cleanup (closing it earlier is fine).
func testMount(t *testing.T, files []manifest.File, opts Options) *Mounted {
	t.Helper()
	requireFUSE(t)
	if opts.CacheDir == "" {
		opts.CacheDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	opts.Debug = opts.Debug || os.Getenv("FERRY_FUSE_DEBUG") != ""
	dir := t.TempDir()
	m, err := Mount(dir, &manifest.Manifest{Files: files}, opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNotMounted(t, dir)
	})
	return m
}

// assertNotMounted fails the test if dir is still a mountpoint.
func assertNotMounted(t *testing.T, dir string) {
	t.Helper()
	if _, ok, err := findMount(dir); err != nil {
		t.Errorf("mountinfo: %v", err)
	} else if ok {
		t.Errorf("%s is still mounted", dir)
	}
}

// generated returns the bytes [off, off+n) of a generated object.
func generated(seed uint64, off, n int64) []byte {
	p := make([]byte, n)
	origin.GeneratedBytes(seed, off, p)
	return p
}

// generatedSum is the SHA-256 of a whole generated object.
func generatedSum(seed uint64, size int64) [32]byte {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		origin.GeneratedBytes(seed, off, buf[:n])
		h.Write(buf[:n])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// fileSum is the SHA-256 of a file, read with 1 MiB reads.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	// Hide os.File's WriteTo so the copy makes plain 1 MiB reads.
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// getxattr reads an extended attribute of path.
func getxattr(path, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// progress parses user.ferry.progress ("LOCAL/SIZE").
func progress(t *testing.T, path string) (local, size int64) {
	t.Helper()
	v, err := getxattr(path, xattrProgress)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, xattrProgress, err)
	}
	a, b, ok := strings.Cut(v, "/")
	if !ok {
		t.Fatalf("%s = %q, want LOCAL/SIZE", xattrProgress, v)
	}
	local, err1 := strconv.ParseInt(a, 10, 64)
	size, err2 := strconv.ParseInt(b, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("%s = %q: %v", xattrProgress, v, err)
	}
	return local, size
}

// checkRange compares p with the generated bytes at off.
func checkRange(seed uint64, off int64, p []byte) error {
	want := generated(seed, off, int64(len(p)))
	if !bytes.Equal(p, want) {
		i := 0
		for i < len(p) && p[i] == want[i] {
			i++
		}
		return fmt.Errorf("bytes differ at offset %d (read of %d bytes at %d)", off+int64(i), len(p), off)
	}
	return nil
}
