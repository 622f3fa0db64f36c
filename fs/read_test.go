package fs

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"ferry/cache"
	"ferry/manifest"
	"ferry/origin"
)

const testBlockSize = 256 << 10

// sizeFiles are the sizes every read test covers, around the block size.
func sizeFiles() []genFile {
	bs := int64(testBlockSize)
	return []genFile{
		{path: "empty", size: 0, seed: 1, declare: true},
		{path: "one", size: 1, seed: 2},
		{path: "dir/bs-1", size: bs - 1, seed: 3, declare: true},
		{path: "dir/bs", size: bs, seed: 4},
		{path: "dir/sub/bs+1", size: bs + 1, seed: 5, declare: true},
		{path: "dir/sub/1MiB+1", size: 1<<20 + 1, seed: 6},
		{path: "big", size: 64 << 20, seed: 7, declare: true},
	}
}

// TestReadBack reads every file whole and with 500 random preads, with and
// without background fill, from an origin with and without range support.
func TestReadBack(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noRange    bool
		background bool
	}{
		{"range", false, false},
		{"range-background", false, true},
		{"norange", true, false},
		{"norange-background", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, base := testOrigin(t)
			if tc.noRange {
				srv.SetFaults("", origin.Faults{NoRange: true})
			}
			files := sizeFiles()
			m := testMount(t, serve(srv, base, files), Options{BlockSize: testBlockSize, Background: tc.background})
			for _, f := range files {
				p := filepath.Join(m.Dir(), f.path)
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() != f.size {
					t.Errorf("%s: size %d, want %d", f.path, st.Size(), f.size)
				}
				if got, want := fileSum(t, p), generatedSum(f.seed, f.size); got != want {
					t.Errorf("%s: sha256 %x, want %x", f.path, got, want)
				}
			}
			// Random preads need a file whose blocks are not all local
			// yet to test anything: use a fresh mount.
			m2 := testMount(t, serve(srv, base, files[len(files)-1:]), Options{BlockSize: testBlockSize, Background: tc.background})
			randomReads(t, filepath.Join(m2.Dir(), "big"), 64<<20, 7, 500)
		})
	}
}

// randomReads checks n preads at random offsets and lengths, from four
// goroutines.
func randomReads(t *testing.T, path string, size int64, seed uint64, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(uint64(len(path)), 99))
	type read struct{ off, n int64 }
	reads := make([]read, n)
	for i := range reads {
		off := rng.Int64N(size)
		reads[i] = read{off, min(1+rng.Int64N(3*testBlockSize), size-off)}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(reads); i += 4 {
				r := reads[i]
				buf := make([]byte, r.n)
				got, err := f.ReadAt(buf, r.off)
				if err != nil && !(err == io.EOF && int64(got) == r.n) {
					errs <- err
					return
				}
				if err := checkRange(seed, r.off, buf[:got]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTailReadFetchesOnlyTail reads the last 4 KiB of a 64 MiB file from a
// slow origin: only the last blocks may cross the network.
func TestTailReadFetchesOnlyTail(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 64 << 20
	files := serve(srv, base, []genFile{{path: "big.bin", size: size, seed: 11, declare: true}})
	srv.SetFaults("big.bin", origin.Faults{BytesPerSec: 4 << 20})
	m := testMount(t, files, Options{BlockSize: 1 << 20})
	p := filepath.Join(m.Dir(), "big.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, size-4096); err != nil {
		t.Fatal(err)
	}
	if err := checkRange(11, size-4096, buf); err != nil {
		t.Fatal(err)
	}
	if sent := srv.Stats("big.bin").BytesSent; sent > 3<<20 {
		t.Errorf("origin sent %d bytes for a 4 KiB read at the end, want at most 3 blocks", sent)
	}
	waitStored(t, p, 4096)
	if local, _ := progress(t, p); local > 3<<20 {
		t.Errorf("local bytes %d after a 4 KiB tail read", local)
	}
	if st, err := getxattr(p, xattrState); err != nil || st != "partial" {
		t.Errorf("state %q, %v; want partial", st, err)
	}
}

// buildZip returns a zip of stored (uncompressed) random entries of about
// size bytes in all, and the entries' contents.
func buildZip(t *testing.T, entries int, size int64) ([]byte, map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(5, 6))
	contents := map[string][]byte{}
	per := size / int64(entries)
	for i := range entries {
		name := filepath.Join("dir", string(rune('a'+i%26)), "entry-"+strconv.Itoa(i)+".bin")
		data := make([]byte, per)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		contents[name] = data
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), contents
}

// TestZipListing lists a 32 MiB zip of 2048 entries through the mount and
// reads a few entries, while most of the zip stays remote.
func TestZipListing(t *testing.T) {
	srv, base := testOrigin(t)
	data, contents := buildZip(t, 2048, 32<<20)
	srv.Put("big.zip", data)
	srv.SetFaults("big.zip", origin.Faults{BytesPerSec: 8 << 20})
	m := testMount(t, []manifest.File{{Path: "big.zip", URL: base + "/big.zip", Size: int64(len(data)), Line: 2}},
		Options{BlockSize: 1 << 20})
	p := filepath.Join(m.Dir(), "big.zip")
	zr, err := zip.OpenReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != len(contents) {
		t.Fatalf("zip lists %d entries, want %d", len(zr.File), len(contents))
	}
	for _, zf := range zr.File {
		if _, ok := contents[zf.Name]; !ok {
			t.Fatalf("unexpected entry %q", zf.Name)
		}
	}
	local, size := progress(t, p)
	if size != int64(len(data)) {
		t.Errorf("progress size %d, want %d", size, len(data))
	}
	if local*4 >= size {
		t.Errorf("%d of %d bytes local after listing: want under 25%%", local, size)
	}
	if sent := srv.Stats("big.zip").BytesSent; sent*4 >= size {
		t.Errorf("origin sent %d of %d bytes: want under 25%%", sent, size)
	}
	// The entries read back right (reading them makes more local).
	for i, zf := range zr.File {
		if i%700 != 7 {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", zf.Name, err)
		}
		if !bytes.Equal(got, contents[zf.Name]) {
			t.Errorf("%s: content differs", zf.Name)
		}
	}
}

// TestRestartReusesLocalBlocks stops a mount mid-fill and mounts the same
// cache again: every file completes with the right bytes, and no block that
// was local before the restart crosses the network again.
func TestRestartReusesLocalBlocks(t *testing.T) {
	srv, base := testOrigin(t)
	gen := []genFile{
		{path: "a.bin", size: 24 << 20, seed: 21, declare: true},
		{path: "b/b.bin", size: 16<<20 + 12345, seed: 22},
		{path: "c.bin", size: 300 << 10, seed: 23, declare: true},
	}
	files := serve(srv, base, gen)
	srv.SetFaults("", origin.Faults{BytesPerSec: 16 << 20})
	cacheDir := t.TempDir()
	opts := Options{CacheDir: cacheDir, BlockSize: testBlockSize, Background: true}

	m := testMount(t, files, opts)
	// Make some blocks local for sure: the first 2 MiB of each big file.
	for _, f := range gen[:2] {
		fh, err := os.Open(filepath.Join(m.Dir(), f.path))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2<<20)
		if _, err := io.ReadFull(fh, buf); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		if err := checkRange(f.seed, 0, buf); err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// What is local now, straight from the cache.
	before := localBytes(t, cacheDir, files)
	for i, f := range gen[:2] {
		if before[i].bytes < 2<<20 {
			t.Fatalf("%s: %d bytes local after reading 2 MiB", f.path, before[i].bytes)
		}
	}
	srv.ResetStats()

	m2 := testMount(t, files, opts)
	for i, f := range gen {
		p := filepath.Join(m2.Dir(), f.path)
		if got, want := fileSum(t, p), generatedSum(f.seed, f.size); got != want {
			t.Errorf("%s: sha256 %x, want %x", f.path, got, want)
		}
		if st, err := getxattr(p, xattrState); err != nil || st != "complete" {
			t.Errorf("%s: state %q, %v; want complete", f.path, st, err)
		}
		// No block that was local before the restart is asked for
		// again, and about the rest crossed the network: a transfer cut
		// short when a read steals its blocks may waste a little.
		st := srv.Stats(f.path)
		if idx := refetched(t, st.Ranges, before[i].blocks); idx >= 0 {
			t.Errorf("%s: block %d was local before the restart and was fetched again", f.path, idx)
		}
		// The bytes an origin had sent past the cut of a transfer that a
		// waiting read took blocks from are lost: allow 1/16 of the file.
		if limit := f.size - before[i].bytes + 4*testBlockSize + f.size/16; st.BytesSent > limit {
			t.Errorf("%s: %d bytes sent after restart with %d of %d local before: more than %d",
				f.path, st.BytesSent, before[i].bytes, f.size, limit)
		}
	}
}

// localState is what was local of one file, straight from the cache.
type localState struct {
	bytes  int64
	blocks map[int64]bool // present block indexes
}

// localBytes opens the cache directory (no mount may hold it) and returns
// what is local of each file.
func localBytes(t *testing.T, dir string, files []manifest.File) []localState {
	t.Helper()
	c, err := cache.Open(dir, cache.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := make([]localState, len(files))
	for i, f := range files {
		cf, err := c.File(f.Path, f.URL, f.Size, testBlockSize)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = localState{bytes: cf.LocalBytes(), blocks: map[int64]bool{}}
		r, _, ok := cf.Remote()
		if !ok {
			continue
		}
		for idx := int64(0); idx*testBlockSize < r.Size; idx++ {
			if cf.Present(idx) {
				out[i].blocks[idx] = true
			}
		}
	}
	return out
}

// refetched returns the first block of local that one of the Range headers
// asked for again, or -1.
func refetched(t *testing.T, ranges []string, local map[int64]bool) int64 {
	t.Helper()
	for _, r := range ranges {
		var a, b int64
		if _, err := fmt.Sscanf(r, "bytes=%d-%d", &a, &b); err != nil {
			t.Fatalf("unexpected Range %q", r)
		}
		for idx := a / testBlockSize; idx <= b/testBlockSize; idx++ {
			if local[idx] {
				return idx
			}
		}
	}
	return -1
}

// TestCloseSendsNoFlush checks that closing a manifest file costs no FLUSH
// round trip (FOPEN_NOFLUSH on every open), whether the handle is served
// by ferry (the file is partial) or by the kernel (complete, passthrough).
func TestCloseSendsNoFlush(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 256 << 10
	files := serve(srv, base, []genFile{{path: "a.bin", size: size, seed: 3, declare: true}})
	m := testMount(t, files, Options{})
	p := filepath.Join(m.Dir(), "a.bin")
	buf := make([]byte, 4096)
	for i := range 5 {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(i) * 4096
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := checkRange(3, off, buf); err != nil {
			t.Fatal(err)
		}
	}
	if sum := fileSum(t, p); sum != generatedSum(3, size) {
		t.Fatal("file differs from the origin's")
	}
	if n := m.root.sh.flushes.Load(); n != 0 {
		t.Errorf("%d FLUSH requests reached ferry; want none", n)
	}
}
