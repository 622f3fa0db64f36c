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

// BenchmarkPick measures how background fill picks the next file when
// most files of a large manifest, of every rank, are complete and the two
// left are the last: the cost of one pick must not grow with the number of
// files.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			f := New(Options{})
			defer f.Close()
			st := newMemStore(testBS)
			var tail []*File
			for i := range n {
				p := "dir/file" + strconv.Itoa(i)
				fl := f.Add(Spec{Path: p, URL: "http://127.0.0.1:1/" + p, Size: 1 << 20, Priority: manifest.Priority(i % 4)}, st)
				f.mu.Lock()
				if i < n-2 {
					fl.done = true // complete
				} else {
					fl.size = 1 << 20
				}
				f.mu.Unlock()
				if i >= n-2 {
					tail = append(tail, fl)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				f.mu.Lock()
				got := f.pickLocked()
				f.mu.Unlock()
				if got == nil || got != tail[0] && got != tail[1] {
					b.Fatalf("picked %v, want one of the last two files", got)
				}
			}
		})
	}
}
