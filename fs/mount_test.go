package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"ferry/cache"
	"ferry/fetcher"
	"ferry/manifest"
)

func TestToErrno(t *testing.T) {
	log := testLogger(t)
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{context.Canceled, syscall.EINTR},
		{fmt.Errorf("wait: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("x: %w", fetcher.ErrTimeout), syscall.EIO},
		{fetcher.ErrClosed, syscall.EIO},
		{cache.ErrClosed, syscall.EIO},
		{fs.ErrNotExist, syscall.ENOENT},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.ENOSPC}, syscall.ENOSPC},
		{errors.New("something else"), syscall.EIO},
	} {
		if got := toErrno(log, "test", "p", tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestMountErrors(t *testing.T) {
	requireFUSE(t)
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "f", size: 10, seed: 1, declare: true}})
	cacheDir := t.TempDir()
	opts := Options{CacheDir: cacheDir, Logger: testLogger(t)}
	man := &manifest.Manifest{Files: files}

	if _, err := Mount(filepath.Join(t.TempDir(), "missing"), man, opts); err == nil {
		t.Error("mounting on a missing directory succeeded")
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	if _, err := Mount(notDir, man, opts); err == nil {
		t.Error("mounting on a file succeeded")
	}
	if _, err := Mount(t.TempDir(), man, Options{}); err == nil {
		t.Error("mounting without a cache directory succeeded")
	}

	m := testMount(t, files, Options{})
	_, err := Mount(m.Dir(), man, opts)
	if err == nil || !strings.Contains(err.Error(), "already a ferry mount") {
		t.Errorf("mounting twice: %v", err)
	}
	// The failed mounts closed the cache: it opens again.
	c, err := cache.Open(cacheDir, cache.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("the cache stayed locked after failed mounts: %v", err)
	}
	c.Close()
}

// TestUnmountFromOutside unmounts with umount(2), as `ferry unmount` does:
// Wait returns, and Close then releases everything.
func TestUnmountFromOutside(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "f", size: 10, seed: 1, declare: true}})
	m := testMount(t, files, Options{})
	if ok, err := IsFerryMount(m.Dir()); err != nil || !ok {
		t.Fatalf("IsFerryMount = %v, %v", ok, err)
	}
	if err := Unmount(m.Dir()); err != nil {
		t.Fatal(err)
	}
	m.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertNotMounted(t, m.Dir())
	if err := Unmount(m.Dir()); err == nil {
		t.Error("unmounting a plain directory succeeded")
	}
}

// TestCloseWhileBusy closes a mount while a file in it is open: the plain
// unmount fails (EBUSY), so Close detaches the mount and aborts the
// connection; the open file then fails instead of hanging.
func TestCloseWhileBusy(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "f", size: 1 << 20, seed: 1, declare: true}})
	m := testMount(t, files, Options{})
	f, err := os.Open(filepath.Join(m.Dir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertNotMounted(t, m.Dir())
	if _, err := f.ReadAt(make([]byte, 10), 500000); err == nil {
		t.Error("a read on the aborted mount succeeded")
	}
}
