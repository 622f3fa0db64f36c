package manifest

import (
	"bytes"
	"flag"
	"fmt"
	"runtime"
	"testing"
)

var benchEntries = flag.Int("entries", 100_000, "number of files in BenchmarkParse's manifest")

// genManifest returns a manifest of n files shaped like one `ferry manifest`
// writes: one object per line, in a few hundred directories, with size,
// sha256, mtime and a shared Authorization header.
func genManifest(n int) []byte {
	var b bytes.Buffer
	b.WriteString("{\"files\": [\n")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"path": "dir%03d/sub%d/file-%07d.bin", "url": "https://origin.example/data/file-%07d.bin", `+
			`"size": %d, "sha256": "%064x", "mtime": "2026-01-02T03:04:05Z", "headers": {"Authorization": "Bearer ${TOKEN}"}}`,
			i%500, i%7, i, i, i*4096+17, i)
	}
	b.WriteString("\n],\n\"outbox\": {\"dir\": \"outbox\", \"url\": \"https://upload.example/in/\"}}\n")
	return b.Bytes()
}

func benchEnv(name string) (string, bool) {
	if name == "TOKEN" {
		return "secret", true
	}
	return "", false
}

// BenchmarkParse parses a generated manifest of -entries files (100k by
// default) and reports the time and allocated bytes per file, and the heap
// the parsed manifest keeps.
func BenchmarkParse(b *testing.B) {
	n := *benchEntries
	data := genManifest(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var m *Manifest
	for b.Loop() {
		m = nil // let the previous result go before parsing again
		var err error
		m, err = Parse(bytes.NewReader(data), "bench.json", benchEnv)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(m.Files) != n {
		b.Fatalf("parsed %d files, want %d", len(m.Files), n)
	}
	runtime.ReadMemStats(&after)
	perEntry := float64(b.N) * float64(n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/perEntry, "ns/entry")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/perEntry, "B/entry")
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "kept-B/entry")
	runtime.KeepAlive(m)
	runtime.KeepAlive(data)
}
