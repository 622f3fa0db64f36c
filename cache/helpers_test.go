package cache

import (
	"errors"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// testLogger sends the cache's log to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// openTest opens dir and closes it at the end of the test (if the test did
// not).
func openTest(t testing.TB, dir string, opts Options) *Cache {
	t.Helper()
	if _, isTest := t.(*testing.T); isTest && opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Error(err)
		}
	})
	return c
}

func mustClose(t testing.TB, c *Cache) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// blockData is the content of block idx of a file of size bytes, seeded so
// different files differ.
func blockData(seed uint64, idx, bs, size int64) []byte {
	n := min(bs, size-idx*bs)
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + uint64(idx)*0xBF58476D1CE4E5B9 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// pinned returns the file at path, pinned to a remote of size bytes.
func pinned(t testing.TB, c *Cache, path string, size, bs int64) (*File, uint64) {
	t.Helper()
	f, err := c.File(path, "http://origin.test/"+path, size, bs)
	if err != nil {
		t.Fatal(err)
	}
	_, gen, ok := f.Remote()
	if ok {
		return f, gen
	}
	if err := f.Pin(gen, Remote{Size: size, ETag: `"` + path + `"`}); err != nil {
		t.Fatal(err)
	}
	return f, gen
}

func writeAll(t testing.TB, f *File, gen uint64, seed uint64, size int64) {
	t.Helper()
	bs := f.BlockSize()
	for idx := int64(0); idx < blocksOf(size, bs); idx++ {
		if err := f.WriteBlock(gen, idx, blockData(seed, idx, bs, size)); err != nil {
			t.Fatal(err)
		}
	}
}

// storedBlocks lists the block indexes of file id in the map.
func storedBlocks(t testing.TB, c *Cache, id uint64) []int64 {
	t.Helper()
	lo, hi := blockSpan(id)
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var idxs []int64
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := parseBlockKey(it.Key(), id)
		if err != nil {
			t.Fatal(err)
		}
		idxs = append(idxs, idx)
	}
	return idxs
}

// diskUsage returns the size and allocated bytes of a data file.
func diskUsage(t testing.TB, path string) (size, allocated int64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return 0, 0
		}
		t.Fatal(err)
	}
	return st.Size, st.Blocks * 512
}

func dataFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "data", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
