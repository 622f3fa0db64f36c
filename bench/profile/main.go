// Command profile mounts a manifest with ferry's fs.Mount inside its own
// process and runs one workload of bench/run.sh's figures through the
// mount, so that `go tool pprof` sees ferry's side of every request. Not a
// stable API.
//
//	profile -manifest M.json -mode cold|warm|rand|tail|tail2|small|fill|million [-cpuprofile F] [-memprofile F] [-blockprofile F] [-trace F]
//
// The CPU profile covers the workload (and, for -mode million, the mount);
// the heap profile is taken at the end, after a GC. The origin must be
// running (bench/run.sh with KEEP=1 leaves the manifests; or any server).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	ferryfs "ferry/fs"
	"ferry/manifest"
)

func main() {
	man := flag.String("manifest", "", "ferry manifest (required)")
	mode := flag.String("mode", "cold", "cold, warm, rand, tail, tail2, small, fill or million")
	cpu := flag.String("cpuprofile", "", "write a CPU profile here")
	mem := flag.String("memprofile", "", "write a heap profile here")
	mutex := flag.String("mutexprofile", "", "write a mutex profile here")
	block := flag.String("blockprofile", "", "write a block profile (where goroutines wait) here")
	tr := flag.String("trace", "", "write an execution trace of the workload here (go tool trace)")
	bg := flag.Bool("background", false, "background fill (always on for -mode fill)")
	bs := flag.Int64("block-size", 0, "block size (0: ferry's default)")
	conns := flag.Int("max-conns", 0, "connections (0: ferry's default)")
	flag.Parse()
	if *man == "" {
		fmt.Fprintln(os.Stderr, "profile: want -manifest")
		exit(2)
	}
	if *mutex != "" {
		runtime.SetMutexProfileFraction(10)
	}
	if *block != "" {
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	}
	o := opts{manifest: *man, mode: *mode, cpu: *cpu, mem: *mem, mutex: *mutex, block: *block, trace: *tr,
		background: *bg || *mode == "fill", blockSize: *bs, maxConns: *conns}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		exit(1)
	}
}

// exit ends the program with code; see bench/gen for why not os.Exit.
func exit(code int) { syscall.Exit(code) }

type opts struct {
	manifest, mode, cpu, mem, mutex, block, trace string
	background                                    bool
	blockSize                                     int64
	maxConns                                      int
}

func run(o opts) (err error) {
	tmp, err := os.MkdirTemp("", "ferry-profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	mnt := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	var stopCPU func()
	if o.mode == "million" {
		if stopCPU, err = startProfiles(o); err != nil {
			return err
		}
	}
	start := time.Now()
	m, err := manifest.Open(o.manifest, os.LookupEnv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mt, err := ferryfs.Mount(mnt, m, ferryfs.Options{CacheDir: filepath.Join(tmp, "cache"),
		BlockSize: o.blockSize, MaxConns: o.maxConns, Background: o.background, Logger: log})
	if err != nil {
		return err
	}
	m = nil
	defer func() {
		if cerr := mt.Close(); err == nil {
			err = cerr
		}
	}()
	fmt.Fprintf(os.Stderr, "mounted in %s\n", time.Since(start).Round(time.Millisecond))
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return err
	}
	if stopCPU == nil {
		if stopCPU, err = startProfiles(o); err != nil {
			return err
		}
	}
	start = time.Now()
	werr := workload(o.mode, mnt)
	fmt.Fprintf(os.Stderr, "%s took %s\n", o.mode, time.Since(start).Round(time.Microsecond))
	stopCPU()
	if werr != nil {
		return werr
	}
	return writeProfiles(o)
}

// startProfiles starts the CPU profile and the execution trace that were
// asked for and returns what stops them.
func startProfiles(o opts) (func(), error) {
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, p := range []struct {
		path         string
		start        func(io.Writer) error
		stopProfiler func()
	}{{o.cpu, pprof.StartCPUProfile, pprof.StopCPUProfile}, {o.trace, trace.Start, trace.Stop}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			stop()
			return nil, err
		}
		if err := p.start(f); err != nil {
			f.Close()
			stop()
			return nil, err
		}
		stops = append(stops, func() {
			p.stopProfiler()
			f.Close()
		})
	}
	return stop, nil
}

func writeProfiles(o opts) error {
	for _, p := range []struct{ name, path string }{{"heap", o.mem}, {"mutex", o.mutex}, {"block", o.block}} {
		if p.path == "" {
			continue
		}
		runtime.GC()
		f, err := os.Create(p.path)
		if err != nil {
			return err
		}
		if err := pprof.Lookup(p.name).WriteTo(f, 0); err != nil {
			return err
		}
		f.Close()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "heap in use %d MiB, sys %d MiB\n", ms.HeapInuse>>20, ms.Sys>>20)
	return nil
}

func workload(mode, mnt string) error {
	big := filepath.Join(mnt, "big.bin")
	switch mode {
	case "cold":
		return readWhole(big)
	case "warm":
		if err := readWhole(big); err != nil {
			return err
		}
		start := time.Now()
		err := readWhole(big)
		fmt.Fprintf(os.Stderr, "warm read took %s\n", time.Since(start).Round(time.Microsecond))
		return err
	case "rand":
		return randomReads(big, 2000)
	case "tail":
		return tail(big)
	case "tail2":
		// The first block first: the version is pinned, the data file
		// exists and a connection is open when the tail is read.
		f, err := os.Open(big)
		if err != nil {
			return err
		}
		_, err = f.ReadAt(make([]byte, 4096), 0)
		f.Close()
		if err != nil {
			return err
		}
		return tail(big)
	case "small":
		return readTree(filepath.Join(mnt, "small"))
	case "fill":
		return waitComplete(big)
	case "million":
		n := 0
		err := filepath.WalkDir(mnt, func(string, fs.DirEntry, error) error { n++; return nil })
		fmt.Fprintf(os.Stderr, "walked %d entries\n", n)
		return err
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func readWhole(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return err
}

// randomReads does n random 4 KiB preads (readahead off, as fio's
// randread) and prints the latency percentiles.
func randomReads(path string, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	lat := make([]time.Duration, n)
	for i := range lat {
		off := rng.Int64N(st.Size()/4096) * 4096
		t := time.Now()
		if _, err := f.ReadAt(buf, off); err != nil {
			return err
		}
		lat[i] = time.Since(t)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Fprintf(os.Stderr, "random 4 KiB: p50 %s p90 %s p99 %s max %s\n", lat[n/2], lat[n*9/10], lat[n*99/100], lat[n-1])
	return nil
}

func tail(path string) error {
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	t1 := time.Now()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	t2 := time.Now()
	_, err = f.ReadAt(buf, st.Size()-4096)
	t3 := time.Now()
	f.Close()
	fmt.Fprintf(os.Stderr, "open %s, pread %s, close %s\n", t1.Sub(t0), t3.Sub(t2), time.Since(t3))
	return err
}

func readTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	buf := make([]byte, 128<<10)
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func waitComplete(path string) error {
	buf := make([]byte, 64)
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		n, err := syscall.Getxattr(path, "user.ferry.state", buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == "complete" {
			return nil
		}
	}
	return errors.New("not complete after 5 minutes")
}
