// Command gen writes the data and the manifests of ferry's side-by-side
// benchmark (bench/run.sh): a 1 GiB file, 1,000 files of 64 KiB, and
// manifests for ferry that point at them on an HTTP origin, including one of
// 1,000,000 entries. The bytes are pseudo-random (a fixed seed), so every run
// serves the same data and nothing compresses. Not a stable API.
//
//	gen -data DIR -manifests DIR -base http://127.0.0.1:PORT
//
// DIR/big.bin and DIR/small/fNNNN are written (skipped when present with the
// right size); the manifests big.json, small.json and million.json go to
// -manifests.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	bigSize      = 1 << 30
	smallCount   = 1000
	smallSize    = 64 << 10
	millionCount = 1_000_000
)

func main() {
	data := flag.String("data", "", "directory the origin serves (written)")
	manifests := flag.String("manifests", "", "directory for the manifests (written)")
	base := flag.String("base", "", "URL of the origin serving -data, e.g. http://127.0.0.1:18080")
	flag.Parse()
	if *data == "" || *manifests == "" || *base == "" {
		fmt.Fprintln(os.Stderr, "gen: want -data, -manifests and -base")
		exit(2)
	}
	if err := run(*data, *manifests, strings.TrimSuffix(*base, "/")); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		exit(1)
	}
}

// exit ends the program with code. Like cmd/ferry, a benchmark program is a
// main that decides its exit code; internal/lint exempts only cmd/ from its
// os.Exit rule, hence syscall.Exit (stdout/stderr are unbuffered files).
func exit(code int) { syscall.Exit(code) }

func run(data, manifests, base string) error {
	if err := os.MkdirAll(filepath.Join(data, "small"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'f', 'e', 'r', 'r', 'y'})
	if err := writeRandom(filepath.Join(data, "big.bin"), bigSize, rng); err != nil {
		return err
	}
	for i := range smallCount {
		if err := writeRandom(filepath.Join(data, "small", smallName(i)), smallSize, rng); err != nil {
			return err
		}
	}
	err := writeManifest(filepath.Join(manifests, "big.json"), 1, func(i int) (string, string, int64) {
		return "big.bin", base + "/big.bin", bigSize
	})
	if err != nil {
		return err
	}
	err = writeManifest(filepath.Join(manifests, "small.json"), smallCount, func(i int) (string, string, int64) {
		return "small/" + smallName(i), base + "/small/" + smallName(i), smallSize
	})
	if err != nil {
		return err
	}
	// 100 x 100 directories of 100 files each; the URLs cycle over the
	// small files, so every entry is a real, readable object.
	return writeManifest(filepath.Join(manifests, "million.json"), millionCount, func(i int) (string, string, int64) {
		p := fmt.Sprintf("tree/d%02d/d%02d/f%02d.bin", i/10000, i/100%100, i%100)
		return p, base + "/small/" + smallName(i%smallCount), smallSize
	})
}

func smallName(i int) string { return fmt.Sprintf("f%04d", i) }

// writeRandom writes size pseudo-random bytes to path, unless a file of that
// size is there already. The generator advances either way, so the bytes
// of every file are the same on every run.
func writeRandom(path string, size int64, rng *rand.ChaCha8) error {
	buf := make([]byte, 1<<20)
	st, err := os.Stat(path)
	skip := err == nil && st.Size() == size
	var f *os.File
	if !skip {
		if f, err = os.Create(path); err != nil {
			return err
		}
		defer f.Close()
	}
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		rng.Read(buf[:n])
		if !skip {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
		}
		left -= n
	}
	if skip {
		return nil
	}
	return f.Close()
}

// writeManifest writes a ferry manifest of n entries, one line each.
func writeManifest(path string, n int, entry func(i int) (p, url string, size int64)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("{\"files\": [\n")
	for i := range n {
		p, url, size := entry(i)
		sep := ","
		if i == n-1 {
			sep = ""
		}
		fmt.Fprintf(w, "  {\"path\": %q, \"url\": %q, \"size\": %d}%s\n", p, url, size, sep)
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
