package fs

import (
	"context"
	"fmt"
	"testing"

	"ferry/control"
	"ferry/manifest"
)

// BenchmarkControlStatus measures a whole status (every transfer) and a
// metrics scrape over the control socket, for a mount of 10,000 files.
//
//	go test -run '^$' -bench BenchmarkControlStatus ./fs/
func BenchmarkControlStatus(b *testing.B) {
	requireFUSE(b)
	const n = 10000
	files := make([]manifest.File, n)
	for i := range files {
		p := fmt.Sprintf("d%02d/f%05d.bin", i%100, i)
		// Sizes are declared: nothing is asked of the (absent) origin.
		files[i] = manifest.File{Path: p, URL: "http://127.0.0.1:1/" + p, Size: 1 << 20, Priority: manifest.Normal}
	}
	m, err := Mount(b.TempDir(), &manifest.Manifest{Files: files}, Options{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	c, err := control.Dial(m.ControlSocket())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.Run("status", func(b *testing.B) {
		for b.Loop() {
			st, err := c.Status(ctx, control.Query{})
			if err != nil || len(st.Transfers) != n {
				b.Fatalf("%d transfers, %v", len(st.Transfers), err)
			}
		}
	})
	b.Run("totals", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Status(ctx, control.Query{NoFiles: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("metrics", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Metrics(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
