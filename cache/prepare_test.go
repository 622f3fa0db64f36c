package cache

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"ferry/internal/testutil"
)

// waitOpen waits until f's data file is open in the fd cache.
func waitOpen(t *testing.T, f *File) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		f.c.fds.mu.Lock()
		open := f.fd != nil
		f.c.fds.mu.Unlock()
		if open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("data file not open 30 s after Prepare")
		}
	}
}

// TestPrepareOpensDataFile checks that Prepare creates the data file ahead
// of the first write, and that it empties a data file left over without
// blocks (an ID whose record a crash lost) as the first write's open did.
func TestPrepareOpensDataFile(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	const bs = 64 << 10
	f, gen := pinned(t, c, "a", 2*bs, bs)
	if err := os.MkdirAll(c.dir+"/data", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.DataPath(), bytes.Repeat([]byte{0xee}, 2*bs), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Prepare()
	waitOpen(t, f)
	if st, err := os.Stat(f.DataPath()); err != nil || st.Size() != 0 {
		t.Fatalf("data file after Prepare: %v, %v; want an empty file", st, err)
	}
	f.Prepare() // open already: nothing to do
	data := blockData(1, 1, bs, 2*bs)
	if err := f.WriteBlock(gen, 1, data); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, bs)
	if _, err := f.ReadAt(got, bs); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt: %v, bytes equal %v", err, bytes.Equal(got, data))
	}
	if _, err := f.ReadAt(got, 0); err == nil {
		t.Fatal("ReadAt of block 0, never written, succeeded")
	}
}

// TestPrepareRacesWritesAndClose runs Prepare beside the first writes and
// reads of many files and closes the cache while some opens may still run:
// every write lands, and no goroutine is left (Close waits for them).
func TestPrepareRacesWritesAndClose(t *testing.T) {
	testutil.CheckLeaks(t, "ferry/cache.(*File).Prepare")
	dir := t.TempDir()
	c, err := Open(dir, Options{Logger: testLogger(t), MaxOpenFiles: 4})
	if err != nil {
		t.Fatal(err)
	}
	const bs = 64 << 10
	const n = 40
	for i := range n {
		f, gen := pinned(t, c, fmt.Sprintf("f%d", i), bs, bs)
		f.Prepare()
		data := blockData(uint64(i), 0, bs, bs)
		if err := f.WriteBlock(gen, 0, data); err != nil {
			t.Fatal(err)
		}
		f.Prepare()
		got := make([]byte, bs)
		if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("file %d: ReadAt: %v, bytes equal %v", i, err, bytes.Equal(got, data))
		}
	}
	for i := range n {
		f, _ := pinned(t, c, fmt.Sprintf("late%d", i), bs, bs)
		f.Prepare()
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{})
	for i := range n {
		f, _ := pinned(t, c, fmt.Sprintf("f%d", i), bs, bs)
		if !f.Complete() {
			t.Fatalf("file %d not complete after a clean close", i)
		}
	}
}
