package fs

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
	"ferry/uploader"
)

// BenchmarkOutboxVsCurl drops a file (1 GiB, or FERRY_BENCH_UPLOAD_SIZE
// bytes) into the outbox with cp and waits until it was sent and left the
// outbox, and uploads the same file with curl -T to the same server in the
// same iteration. It reports the median rates, the median time cp took,
// the ratio of the medians (curl time / drop time: 1 means as fast as
// curl) and the median of the ratios of each iteration's pair
// (pair-ratio: on a machine whose load drifts, the two of a pair ran
// closest together). The source is read again, untimed, before each
// contender, so that neither reads it from the disk when something else
// on the machine dropped the page cache. Two servers, each in a process of its
// own, like a real server (in this process its garbage collection would
// slow the mount): the test origin, which keeps uploads in memory, and a
// sink that discards the body, which shows ferry's own cost. One untimed
// round of each warms the servers up. With FERRY_BENCH_NOSTREAM set, each
// again with streamed uploads always on and always off; with FERRY_BENCH_PACED set, the test
// origin alone, taking each upload at 100 MB/s.
//
//	go test -run '^$' -bench OutboxVsCurl -benchtime 3x ./fs/
func BenchmarkOutboxVsCurl(b *testing.B) {
	requireFUSE(b)
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl not installed")
	}
	size := int64(1 << 30)
	if v := os.Getenv("FERRY_BENCH_UPLOAD_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("FERRY_BENCH_UPLOAD_SIZE: %v", err)
		}
		size = n
	}
	if order, err := os.ReadFile(pageReportingOrder); err == nil && strings.TrimSpace(string(order)) != "11" {
		b.Logf("free page reporting to the VM's host is on (page_reporting_order %s): cp's new pages may cost host faults "+
			"that curl -T does not pay; bench/run.sh pauses it (echo 11 > %s)", strings.TrimSpace(string(order)), pageReportingOrder)
	}
	src := filepath.Join(b.TempDir(), "src.bin")
	writeGenerated(b, src, size, 99)
	warm(b, src)
	variants := []string{"origin", "discard"}
	if os.Getenv("FERRY_BENCH_PACED") != "" {
		// The test origin taking each upload at 100 MB/s, like a server
		// across a network: the upload, not the copy, is the slow part.
		variants = []string{"paced"}
	}
	if os.Getenv("FERRY_BENCH_NOSTREAM") != "" {
		// The same with streamed uploads always on and always off (the
		// default streams when the writer is faster than the last upload
		// was), to see what streaming gains.
		for _, v := range variants {
			variants = append(variants, v+"-stream", v+"-nostream")
		}
	}
	for _, variant := range variants {
		server, mode, _ := strings.Cut(variant, "-")
		streams := map[string]uploader.StreamMode{"": uploader.StreamAuto,
			"stream": uploader.StreamAlways, "nostream": uploader.StreamNever}[mode]
		b.Run(variant, func(b *testing.B) {
			base := startBenchServer(b, server, size)
			benchDrop(b, src, size, base+"/up/", streams, func() {
				for _, p := range []string{"curl.bin", "drop.bin"} {
					req, _ := http.NewRequest(http.MethodDelete, base+"/up/"+p, nil)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
				}
			})
		})
	}
}

// startBenchServer runs TestOutboxBenchServer in a child process and
// returns its base URL; the child ends when the benchmark does.
func startBenchServer(b *testing.B, kind string, size int64) string {
	return startChildServer(b, "TestOutboxBenchServer", "FERRY_BENCH_SERVER="+kind, "FERRY_BENCH_UPLOAD_SIZE="+strconv.FormatInt(size, 10))
}

// TestOutboxBenchServer is the server process of BenchmarkOutboxVsCurl;
// it does nothing in a normal test run. It prints its base URL, serves
// until its stdin closes, and answers DELETE by dropping the object.
func TestOutboxBenchServer(t *testing.T) {
	kind := os.Getenv("FERRY_BENCH_SERVER")
	if kind == "" {
		t.Skip("the server process of BenchmarkOutboxVsCurl")
	}
	size, _ := strconv.ParseInt(os.Getenv("FERRY_BENCH_UPLOAD_SIZE"), 10, 64)
	var h http.Handler
	switch kind {
	case "origin", "paced":
		srv := origin.New(origin.Options{MaxUploadSize: size + 1})
		defer srv.Close()
		if kind == "paced" {
			for _, p := range []string{"up/curl.bin", "up/drop.bin"} {
				srv.SetFaults(p, origin.Faults{BytesPerSec: 100e6})
			}
		}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete {
				srv.Remove(strings.TrimPrefix(r.URL.Path, "/"))
				w.WriteHeader(http.StatusNoContent)
				return
			}
			srv.Handler().ServeHTTP(w, r)
		})
	default:
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusCreated)
		})
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	fmt.Println(hs.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func benchDrop(b *testing.B, src string, size int64, url string, streams uploader.StreamMode, reset func()) {
	box := manifest.Outbox{Dir: "outbox", URL: url, Protocol: "put"}
	m, err := Mount(b.TempDir(), &manifest.Manifest{Outbox: &box}, Options{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	m.outbox.up.SetStreams(streams)
	dst := filepath.Join(m.Dir(), "outbox", "drop.bin")
	// Warm-up round, untimed.
	reset()
	timeCurl(b, src, url+"curl.bin")
	timeDrop(b, src, dst)
	var curls, drops, cps, pairs []time.Duration
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		reset()
		runtime.GC()
		// Alternate the order so neither always runs on a warmer machine.
		if i%2 == 1 {
			b.StopTimer()
			warm(b, src)
			primeMemory(b)
			b.StartTimer()
			cp, drop := timeDrop(b, src, dst)
			cps, drops = append(cps, cp), append(drops, drop)
		}
		b.StopTimer()
		warm(b, src)
		primeMemory(b)
		b.StartTimer()
		curls = append(curls, timeCurl(b, src, url+"curl.bin"))
		if i%2 == 0 {
			b.StopTimer()
			warm(b, src)
			primeMemory(b)
			b.StartTimer()
			cp, drop := timeDrop(b, src, dst)
			cps, drops = append(cps, cp), append(drops, drop)
		}
		// A ratio as a Duration of 1e9 units, for median.
		pairs = append(pairs, time.Duration(float64(time.Second)*curls[i].Seconds()/drops[i].Seconds()))
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	c, d := median(curls), median(drops)
	b.ReportMetric(mbps(c), "curl-MB/s")
	b.ReportMetric(mbps(d), "drop-MB/s")
	b.ReportMetric(median(cps).Seconds(), "cp-s")
	b.ReportMetric(c.Seconds()/d.Seconds(), "ratio")
	b.ReportMetric(median(pairs).Seconds(), "pair-ratio")
	b.Logf("curl %v, drop %v (cp %v)", curls, drops, cps)
}

// median of ds (the upper one of an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// timeCurl uploads src with curl -T and returns how long it took.
func timeCurl(b *testing.B, src, url string) time.Duration {
	start := time.Now()
	out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", src, url).CombinedOutput()
	d := time.Since(start)
	if err != nil || !strings.HasPrefix(string(out), "20") {
		b.Fatalf("curl -T: %v: %s", err, out)
	}
	return d
}

// timeDrop copies src into the outbox with cp and waits until the upload
// finished and the file left the outbox. It returns how long cp took and
// how long it all took.
func timeDrop(b *testing.B, src, dst string) (cp, total time.Duration) {
	start := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v: %s", err, out)
	}
	cp = time.Since(start)
	for {
		_, err := os.Lstat(dst)
		if errors.Is(err, os.ErrNotExist) {
			return cp, time.Since(start)
		}
		if st, _ := getxattr(dst, xattrState); st == "failed" {
			reason, _ := getxattr(dst, xattrError)
			b.Fatalf("upload failed: %s", reason)
		}
		time.Sleep(time.Millisecond)
	}
}

// pageReportingOrder is the knob of free page reporting to a VM's host;
// above the largest page order (10) nothing is reported.
const pageReportingOrder = "/sys/module/page_reporting/parameters/page_reporting_order"

// primeMemory touches 3 GiB of memory and frees it, right before a
// contender runs. On a VM that hands free memory back to its host
// (virtio_balloon free page reporting, DAMON pageout), the first write into
// a page the host took back costs a fault in the host (1 GiB by curl -o:
// 3.4–6.4 s after the machine sat idle, 1.1–1.3 s right after another run
// freed its memory; bench/README.md), and cp into the outbox writes 1 GiB
// of new pages that curl -T does not. Primed, both start with memory the VM
// holds, as on a machine without a balloon.
func primeMemory(b testing.TB) {
	m, err := syscall.Mmap(-1, 0, 3<<30, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_POPULATE)
	if err != nil {
		b.Fatalf("prime memory: %v", err)
	}
	if err := syscall.Munmap(m); err != nil {
		b.Fatalf("prime memory: %v", err)
	}
}

// warm reads path once so both contenders start from the page cache.
func warm(b testing.TB, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(fmt.Errorf("warm: %w", err))
	}
}
