package fs

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

// BenchmarkDemandLatency measures random 4 KiB reads of blocks that are not
// local yet, on an idle mount and on one where four other files saturate
// the origin with background fill, in the same run. It reports the p50 and
// p99 latency of the reads; issue 4's target is p99 under load within 2x of
// idle.
func BenchmarkDemandLatency(b *testing.B) {
	for _, load := range []bool{false, true} {
		name := "idle"
		if load {
			name = "loaded"
		}
		b.Run(name, func(b *testing.B) { benchDemandLatency(b, load) })
	}
}

func benchDemandLatency(b *testing.B, load bool) {
	requireFUSE(b)
	const size = 1 << 30
	// The origin runs in a process of its own, as a real one would: in
	// this process it would compete with the mount for the Go scheduler.
	base := startLatencyOrigin(b)
	files := []manifest.File{{Path: "target", URL: base + "/target", Size: size, Priority: manifest.Low, Line: 1}}
	if load {
		for i := range 4 {
			p := fmt.Sprintf("load%d", i)
			files = append(files, manifest.File{Path: p, URL: base + "/" + p, Size: 4 << 30, Priority: manifest.High, Line: i + 2})
		}
	}
	m, err := Mount(b.TempDir(), &manifest.Manifest{Files: files}, Options{CacheDir: b.TempDir(), Background: true})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, fl := range m.fetcher.Files() {
		if fl.Path() == "target" {
			fl.Pause() // only the reads below fetch it
		}
	}
	if load {
		// Let the background fill reach full speed.
		time.Sleep(500 * time.Millisecond)
	}
	f, err := os.Open(filepath.Join(m.Dir(), "target"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	blocks := rand.New(rand.NewPCG(7, 7)).Perm(size / DefaultBlockSize)
	buf := make([]byte, 4096)
	var lat []time.Duration
	i := 0
	// The background fill's rate during the reads: the floor it keeps.
	bgBytes := func() int64 {
		var n int64
		for _, fl := range m.fetcher.Files() {
			if fl.Path() != "target" {
				n += fl.Info().Fetched
			}
		}
		return n
	}
	bg0, t0 := bgBytes(), time.Now()
	for b.Loop() {
		blk := blocks[i%len(blocks)]
		i++
		off := int64(blk)*DefaultBlockSize + int64(blk%(DefaultBlockSize/4096))*4096
		start := time.Now()
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		if err := checkRange(1, off, buf); err != nil {
			b.Fatal(err)
		}
	}
	if load {
		b.ReportMetric(float64(bgBytes()-bg0)/time.Since(t0).Seconds()/1e6, "bg-MB/s")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// startLatencyOrigin runs TestLatencyBenchOrigin in a child process and
// returns its base URL; the child ends with the benchmark.
func startLatencyOrigin(b *testing.B) string {
	return startChildServer(b, "TestLatencyBenchOrigin", "FERRY_LATENCY_ORIGIN=1")
}

// startChildServer runs the test named test of this binary in a child
// process, with env added to its environment. The child prints its base
// URL on its first line and serves until its stdin closes, which happens
// when the benchmark ends.
func startChildServer(b *testing.B, test string, env ...string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	var base string
	if _, err := fmt.Fscanln(stdout, &base); err != nil || !strings.HasPrefix(base, "http://") {
		b.Fatalf("%s: %q, %v", test, base, err)
	}
	go io.Copy(io.Discard, stdout)
	return base
}

// TestLatencyBenchOrigin is the origin process of BenchmarkDemandLatency;
// it does nothing in a normal test run. It serves the generated objects
// until its stdin closes.
func TestLatencyBenchOrigin(t *testing.T) {
	if os.Getenv("FERRY_LATENCY_ORIGIN") == "" {
		t.Skip("the origin process of BenchmarkDemandLatency")
	}
	srv := origin.New(origin.Options{})
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.PutGenerated("target", 1<<30, 1)
	for i := range 4 {
		srv.PutGenerated(fmt.Sprintf("load%d", i), 4<<30, uint64(i+2))
	}
	fmt.Println(base)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
