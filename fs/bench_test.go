package fs

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"ferry/manifest"
	"ferry/origin"
)

const benchSize = 256 << 20

// benchRead reads path whole with 1 MiB reads.
func benchRead(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	if err != nil || n != benchSize {
		b.Fatalf("read %d bytes: %v", n, err)
	}
}

func benchFiles(b *testing.B) []manifest.File {
	srv := origin.New(origin.Options{})
	base, err := srv.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	srv.PutGenerated("big", benchSize, 1)
	return []manifest.File{{Path: "big", URL: base + "/big", Size: benchSize, Line: 1}}
}

func benchMount(b *testing.B, files []manifest.File, cacheDir string) *Mounted {
	requireFUSE(b)
	m, err := Mount(b.TempDir(), &manifest.Manifest{Files: files}, Options{CacheDir: cacheDir})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkColdRead reads a file sequentially through a fresh mount and
// cache: every byte comes from the loopback origin.
func BenchmarkColdRead(b *testing.B) {
	files := benchFiles(b)
	b.SetBytes(benchSize)
	for b.Loop() {
		b.StopTimer()
		m := benchMount(b, files, b.TempDir())
		b.StartTimer()
		benchRead(b, filepath.Join(m.Dir(), "big"))
		b.StopTimer()
		m.Close()
		b.StartTimer()
	}
}

// BenchmarkCompleteRead reads a file that is complete in the cache through
// a fresh mount (empty page cache): passthrough, where the kernel offers it.
func BenchmarkCompleteRead(b *testing.B) {
	files := benchFiles(b)
	cacheDir := b.TempDir()
	m := benchMount(b, files, cacheDir)
	benchRead(b, filepath.Join(m.Dir(), "big"))
	m.Close()
	b.SetBytes(benchSize)
	for b.Loop() {
		b.StopTimer()
		m := benchMount(b, files, cacheDir)
		b.StartTimer()
		benchRead(b, filepath.Join(m.Dir(), "big"))
		b.StopTimer()
		if m.root.sh.reads.Load() != 0 {
			b.ReportMetric(float64(m.root.sh.reads.Load()), "daemon-reads/op")
		}
		m.Close()
		b.StartTimer()
	}
}

// BenchmarkRandom4K reads 4 KiB at random offsets of a file whose blocks
// are all local, through the daemon (passthrough off), on a fresh mount: the
// cost of the FUSE read path of this package.
func BenchmarkRandom4K(b *testing.B) {
	files := benchFiles(b)
	cacheDir := b.TempDir()
	m := benchMount(b, files, cacheDir)
	benchRead(b, filepath.Join(m.Dir(), "big"))
	m.Close()
	m = benchMount(b, files, cacheDir)
	defer m.Close()
	m.root.sh.passthrough.Store(false)
	f, err := os.Open(filepath.Join(m.Dir(), "big"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(4096)
	for b.Loop() {
		off := rng.Int64N(benchSize/4096) * 4096
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
}
