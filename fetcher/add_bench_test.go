package fetcher

import (
	"runtime"
	"strconv"
	"testing"

	"ferry/manifest"
)

// BenchmarkAdd measures registering files, the per-entry cost of mounting a
// large manifest: time and the heap kept per file.
func BenchmarkAdd(b *testing.B) {
	f := New(Options{})
	defer f.Close()
	st := newMemStore(testBS)
	specs := make([]Spec, b.N)
	for i := range specs {
		p := "dir/file" + strconv.Itoa(i)
		specs[i] = Spec{Path: p, URL: "http://127.0.0.1:1/" + p, Size: 1 << 20, Priority: manifest.Normal}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		f.Add(specs[i], st)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-B/file")
}
