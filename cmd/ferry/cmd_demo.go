package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"ferry/fs"
	"ferry/manifest"
	"ferry/origin"
)

func demoCommand() *command {
	var dir, rate, level string
	return &command{
		name:    "demo",
		args:    "",
		summary: "serve sample files from a local origin and mount them",
		detail: `Start a local HTTP origin on 127.0.0.1 with sample files (random data, a zip,
text), slowed to --rate so the background fill can be watched, write a
manifest for them and mount it at --dir (default: a new temporary directory).
Prints what to try, then serves until Ctrl-C and removes everything it made.`,
		example: "  ferry demo --dir /tmp/ferry-demo --rate 2M",
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			f.StringVar(&dir, "dir", "", "mountpoint (an existing empty directory; default: a new temporary one)")
			f.StringVar(&rate, "rate", "4M", "bytes per second the origin sends, all files together (0: unlimited)")
			f.StringVar(&level, "log-level", "warn", "debug, info, warn or error")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 0 {
					return usagef("demo", "demo takes no arguments")
				}
				bps, err := parseSize(rate)
				if err != nil {
					return usagef("demo", "--rate: %v", err)
				}
				lv, err := parseLevel(level)
				if err != nil {
					return usagef("demo", "--log-level: %v", err)
				}
				log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv}))
				return runDemo(ctx, e, dir, bps, log)
			}
		},
	}
}

// demoFile is one sample file: generated (seed, size) or data.
type demoFile struct {
	path    string
	data    []byte
	size    int64
	seed    uint64
	declare bool // the manifest gives the size; else ferry asks with HEAD
}

func demoFiles() ([]demoFile, error) {
	zipData, err := demoZip()
	if err != nil {
		return nil, err
	}
	return []demoFile{
		{path: "README.txt", data: []byte(demoReadme), declare: true},
		{path: "data/random-16M.bin", size: 16 << 20, seed: 16, declare: true},
		{path: "data/random-64M.bin", size: 64 << 20, seed: 64},
		{path: "archives/photos.zip", data: zipData, declare: true},
		{path: "logs/app.log", data: demoLog(), declare: true},
	}, nil
}

const demoReadme = `This file came from a local HTTP origin through ferry.

Everything under this mount is fetched on demand: a read of bytes that are
not local yet fetches exactly those blocks first, while the background fill
copies every file in priority order. The attributes user.ferry.state and
user.ferry.progress show how far each file is.
`

// demoZip builds a zip of 40 stored random "photos" and a few deflated
// text files.
func demoZip() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("photos/img-%03d.jpg", i), Method: zip.Store})
		if err != nil {
			return nil, err
		}
		p := make([]byte, 200<<10)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if _, err := w.Write(p); err != nil {
			return nil, err
		}
	}
	for i := range 3 {
		w, err := zw.Create(fmt.Sprintf("notes/note-%d.txt", i))
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(w, strings.Repeat(fmt.Sprintf("note %d: lazily fetched\n", i), 500)); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// demoLog is about 1 MiB of log lines.
func demoLog() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "2026-01-02T03:04:%02dZ INFO request id=%d path=/item/%d status=200\n", i%60, i, i*7)
	}
	return b.Bytes()
}

// manifestJSON is the manifest format as written by the demo.
type manifestJSON struct {
	Files []manifestFileJSON `json:"files"`
}

type manifestFileJSON struct {
	Path   string `json:"path"`
	URL    string `json:"url"`
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256"`
}

// writeDemoManifest puts the files on srv and writes their manifest.
func writeDemoManifest(srv *origin.Server, base, path string, files []demoFile) error {
	var mj manifestJSON
	for _, f := range files {
		h := sha256.New()
		if f.data != nil {
			srv.Put(f.path, f.data)
			f.size = int64(len(f.data))
			h.Write(f.data)
		} else {
			srv.PutGenerated(f.path, f.size, f.seed)
			buf := make([]byte, 1<<20)
			for off := int64(0); off < f.size; off += int64(len(buf)) {
				n := min(int64(len(buf)), f.size-off)
				origin.GeneratedBytes(f.seed, off, buf[:n])
				h.Write(buf[:n])
			}
		}
		mf := manifestFileJSON{Path: f.path, URL: base + "/" + f.path, SHA256: hex.EncodeToString(h.Sum(nil))}
		if f.declare {
			mf.Size = &f.size
		}
		mj.Files = append(mj.Files, mf)
	}
	data, err := json.MarshalIndent(mj, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func runDemo(ctx context.Context, e *env, mountDir string, rate int64, log *slog.Logger) error {
	tmp, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(tmp)
	if mountDir == "" {
		mountDir = filepath.Join(tmp, "mnt")
		if err := os.Mkdir(mountDir, 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	srv := origin.New(origin.Options{Logger: log})
	base, err := srv.Start()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer srv.Close()
	if rate > 0 {
		srv.SetFaults("", origin.Faults{TotalBytesPerSec: rate})
	}
	files, err := demoFiles()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	manifestPath := filepath.Join(tmp, "manifest.json")
	if err := writeDemoManifest(srv, base, manifestPath, files); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	m, err := manifest.Open(manifestPath, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	mnt, err := fs.MountContext(ctx, mountDir, m, fs.Options{
		CacheDir:   filepath.Join(tmp, "cache"),
		Background: true,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	printDemoGuide(e.stdout, base, rate, manifestPath, mnt.Dir())
	unmounted := make(chan struct{})
	go func() {
		mnt.Wait()
		close(unmounted)
	}()
	select {
	case <-ctx.Done():
	case <-unmounted:
	}
	err = mnt.Close()
	<-unmounted
	fmt.Fprintln(e.stdout, "ferry demo: unmounted and cleaned up")
	return err
}

func printDemoGuide(w io.Writer, base string, rate int64, manifestPath, dir string) {
	speed := "unlimited"
	if rate > 0 {
		speed = fmt.Sprintf("%.1f MiB/s", float64(rate)/(1<<20))
	}
	fmt.Fprintf(w, "ferry demo: origin %s (%s), manifest %s\n", base, speed, manifestPath)
	fmt.Fprintf(w, "mounted at %s. Try, in another terminal:\n\n", dir)
	for _, l := range [][2]string{
		{"the tree: sizes are known before any byte is local", "ls -lR " + dir},
		{"state, progress (LOCAL/SIZE bytes) and URL (getfattr is in the attr package)", "getfattr -d " + dir + "/data/random-64M.bin"},
		{"watch the background fill", "watch getfattr -n user.ferry.progress " + dir + "/data/random-64M.bin"},
		{"read the end of a file: its last block is fetched first", "tail -c 4096 " + dir + "/data/random-16M.bin | od -A d -t x1 | head -3"},
		{"list the zip without fetching all of it", "unzip -l " + dir + "/archives/photos.zip"},
		{"compare with the manifest's digest", "sha256sum " + dir + "/data/random-16M.bin; grep -A3 random-16M " + manifestPath},
		{"a text file", "cat " + dir + "/README.txt"},
	} {
		fmt.Fprintf(w, "  # %s\n  %s\n", l[0], l[1])
	}
	fmt.Fprintf(w, "\nPress Ctrl-C (or run 'ferry unmount %s') to unmount and clean up.\n", dir)
}
