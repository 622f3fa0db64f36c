package fs

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/manifest"
)

var (
	millionEntries    = flag.Int("mount-entries", 1_000_000, "files in BenchmarkMountMillion's manifest")
	millionBackground = flag.Bool("mount-background", false, "BenchmarkMountMillion mounts with background fill (every file registered at mount)")
)

// writeTreeManifest writes a manifest of n files shaped like bench/gen's
// million.json: tree/dNN/dNN/fNN.bin, sizes given, URLs on a closed port
// (nothing is fetched).
func writeTreeManifest(tb testing.TB, n int) string {
	p := filepath.Join(tb.TempDir(), "million.json")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("{\"files\": [\n")
	for i := range n {
		if i > 0 {
			w.WriteString(",\n")
		}
		fmt.Fprintf(w, `{"path": "tree/d%02d/d%02d/f%02d.bin", "url": "http://127.0.0.1:1/small/f%04d", "size": 65536}`,
			i/10000%100, i/100%100, i%100, i%1000)
	}
	w.WriteString("\n]}\n")
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// walkCount counts the entries below dir (find DIR | wc -l, minus one):
// readdir only, as find does.
func walkCount(tb testing.TB, dir string) int {
	n := 0
	var walk func(string)
	walk = func(d string) {
		entries, err := os.ReadDir(d)
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range entries {
			n++
			if e.IsDir() {
				walk(filepath.Join(d, e.Name()))
			}
		}
	}
	walk(dir)
	return n
}

// vmKB reads a VmHWM or VmRSS line of /proc/self/status, in KiB.
func vmKB(tb testing.TB, field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err == nil {
				return kb
			}
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkMountMillion is figure 8 in process: open a manifest of
// -mount-entries files (1,000,000), mount it without background fill,
// list the whole tree as find does, unmount. It reports the mount (parse
// included) and the listing, the heap in use after the listing, and the
// process's peak RSS (VmHWM: meaningful for the first iteration; run with
// -benchtime 1x). Run with -benchmem. With -mount-background every file
// is registered at mount (and its fill fails: the URLs are on a closed
// port).
func BenchmarkMountMillion(b *testing.B) {
	requireFUSE(b)
	n := *millionEntries
	path := writeTreeManifest(b, n)
	runtime.GC()
	var mountTime, walkTime time.Duration
	var heap float64
	for b.Loop() {
		start := time.Now()
		m, err := manifest.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		mnt, err := Mount(b.TempDir(), m, Options{CacheDir: b.TempDir(), Background: *millionBackground})
		if err != nil {
			b.Fatal(err)
		}
		m = nil
		mountTime += time.Since(start)
		start = time.Now()
		got := walkCount(b, mnt.Dir())
		walkTime += time.Since(start)
		if want := n + 1 + n/10000 + n/100; got != want {
			b.Errorf("listed %d entries, want %d", got, want)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = float64(ms.HeapInuse) / (1 << 20)
		if err := mnt.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(mountTime.Seconds()/float64(b.N), "mount-s/op")
	b.ReportMetric(walkTime.Seconds()/float64(b.N), "list-s/op")
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(vmKB(b, "VmHWM")/1024, "peak-RSS-MiB")
}
