package cache

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

const (
	benchBS   = 1 << 20
	benchSize = 1 << 30 // 1 GiB in 1 MiB blocks: 1024 blocks
)

// benchFile returns a pinned 1 GiB file whose even blocks are present
// (bits only: the benchmark does not write 512 MiB first).
func benchFile(b *testing.B) *File {
	c := openTest(b, b.TempDir(), Options{})
	f, _ := pinned(b, c, "big", benchSize, benchBS)
	bm := f.bits.Load()
	for i := int64(0); i < benchSize/benchBS; i += 2 {
		bm.set(i)
	}
	return f
}

func BenchmarkPresent(b *testing.B) {
	f := benchFile(b)
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if f.Present(int64(i & 1023)) {
			n++
		}
	}
	if n == 0 {
		b.Fatal("nothing present")
	}
}

func BenchmarkPresentParallel(b *testing.B) {
	f := benchFile(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			f.Present(int64(i & 1023))
		}
	})
}

// BenchmarkPresentRWMutex is the alternative that was not taken: a plain
// bitmap behind a sync.RWMutex, read in parallel.
func BenchmarkPresentRWMutex(b *testing.B) {
	var mu sync.RWMutex
	words := make([]uint64, 16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			mu.RLock()
			_ = words[(i&1023)>>6]&(1<<(i&63)) != 0
			mu.RUnlock()
		}
	})
}

// BenchmarkMissing scans the whole bitmap of a 1 GiB file of 1 MiB blocks
// whose only missing block is the last.
func BenchmarkMissing(b *testing.B) {
	f := benchFile(b)
	bm := f.bits.Load()
	for i := int64(0); i < 1023; i++ {
		bm.set(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		if f.Missing(0, 1023) != 1023 {
			b.Fatal("wrong Missing")
		}
	}
}

// BenchmarkWriteBlock writes 1 MiB blocks and, at the end, waits until
// they are durable (fdatasync + synced Pebble batch), so the MB/s include
// the group commit.
func BenchmarkWriteBlock(b *testing.B) {
	c := openTest(b, b.TempDir(), Options{})
	data := blockData(1, 0, benchBS, benchBS)
	const perFile = 256 // 256 MiB per file, then a fresh one (bounds disk use)
	var f *File
	var gen uint64
	b.SetBytes(benchBS)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%perFile == 0 {
			if f != nil {
				if _, err := f.Reset("bench"); err != nil {
					b.Fatal(err)
				}
			}
			f, gen = pinned(b, c, fmt.Sprintf("f%d", i/perFile), perFile*benchBS, benchBS)
		}
		if err := f.WriteBlock(gen, int64(i%perFile), data); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFirstUse is a small file's first use in the cache: its record
// (Cache.File), its pin and its one 64 KiB block, whose write creates the
// data file; a group commit makes them durable now and then, as it would
// while a program reads many small files in a row.
func BenchmarkFirstUse(b *testing.B) {
	c := openTest(b, b.TempDir(), Options{MaxOpenFiles: 64})
	const bs = 64 << 10
	data := blockData(1, 0, bs, bs)
	b.SetBytes(bs)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f, gen := pinned(b, c, fmt.Sprintf("small/f%d", i), bs, bs)
		if err := f.WriteBlock(gen, 0, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFileNew is Cache.File for a path the cache has never seen (a
// first mount of a big manifest).
func BenchmarkFileNew(b *testing.B) {
	c := openTest(b, b.TempDir(), Options{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := c.File(fmt.Sprintf("dir%d/file%d.bin", i%1000, i), "http://origin.test/x", 1<<20, benchBS); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileExisting is Cache.File for a path with a record, after a
// restart (a remount): the lookup, the record and the bounded block scan
// (each file has 4 blocks stored).
func BenchmarkFileExisting(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	const size = 4 * 4096
	path := func(i int) string { return fmt.Sprintf("dir%d/file%d.bin", i%1000, i) }
	batch := c.db.NewBatch()
	for i := range n {
		f, err := c.File(path(i), "http://origin.test/x", size, 4096)
		if err != nil {
			b.Fatal(err)
		}
		_, gen, _ := f.Remote()
		if err := f.Pin(gen, Remote{Size: size}); err != nil {
			b.Fatal(err)
		}
		for idx := range int64(4) {
			batch.Set(blockKey(f.ID(), idx), blockState{length: 4096, gen: gen}.encode(), nil)
		}
	}
	if err := batch.Commit(nil); err != nil {
		b.Fatal(err)
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	c = openTest(b, dir, Options{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%n == 0 && i > 0 { // a remount: nothing loaded yet
			b.StopTimer()
			if err := c.Close(); err != nil {
				b.Fatal(err)
			}
			c = openTest(b, dir, Options{})
			b.StartTimer()
		}
		f, err := c.File(path(i%n), "http://origin.test/x", size, 4096)
		if err != nil {
			b.Fatal(err)
		}
		if !f.Complete() {
			b.Fatal("blocks not loaded")
		}
	}
}

// BenchmarkFileLoaded is Cache.File for a path already returned once while
// the cache is open.
func BenchmarkFileLoaded(b *testing.B) {
	c := openTest(b, b.TempDir(), Options{})
	if _, err := c.File("a/b", "u", 10, 4096); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.File("a/b", "u", 10, 4096); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen100kBlocks is Open (then Close) of a cache directory whose
// map holds 100,000 blocks (1,000 files of 100), with an LRU index to
// match: startup must not depend on the number of blocks. The first
// Stats is included: it is what the limit needs.
func BenchmarkOpen100kBlocks(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	const files, perFile, bs = 1000, 100, 4096
	var total int64
	for i := range files {
		f, gen := pinned(b, c, fmt.Sprintf("dir%d/file%d.bin", i%10, i), perFile*bs, bs)
		batch := c.db.NewBatch()
		for idx := range int64(perFile) {
			batch.Set(blockKey(f.ID(), idx), blockState{length: bs, gen: gen, clock: uint64(i)}.encode(), nil)
			batch.Set(lruKey(uint64(i), f.ID(), idx), nil, nil)
			total += bs
		}
		batch.Set(keyLocalBytes, u64(uint64(total)), nil)
		if err := batch.Commit(nil); err != nil {
			b.Fatal(err)
		}
	}
	// A cache that has run for a while: its tables are compacted.
	if err := c.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		b.Fatal(err)
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := Open(dir, Options{MaxSize: total})
		if err != nil {
			b.Fatal(err)
		}
		if st := c.Stats(); st.LocalBytes != total {
			b.Fatalf("Stats = %+v, want %d bytes", st, total)
		}
		b.StopTimer()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkOpenEmpty is Open (then Close) of an empty cache directory, to
// compare with BenchmarkOpen100kBlocks.
func BenchmarkOpenEmpty(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
