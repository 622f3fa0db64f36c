package cache

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentWritersAndReaders writes different blocks of several files
// from many goroutines while others read Present, Missing and ReadAt, call
// File and Flush; one more file is reset over and over while it is
// written. Run with -race.
func TestConcurrentWritersAndReaders(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{MaxOpenFiles: 2, CommitWindow: 200 * time.Microsecond})
	const bs, nblocks, nfiles, writers = 8192, 48, 4, 6
	const size = nblocks*bs - 100
	files := make([]*File, nfiles)
	gens := make([]uint64, nfiles)
	for i := range files {
		files[i], gens[i] = pinned(t, c, fmt.Sprintf("f%d", i), size, bs)
	}
	churn, _ := pinned(t, c, "churn", size, bs)

	var stop atomic.Bool
	var wg, readers sync.WaitGroup
	errc := make(chan error, 100)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	for w := range writers {
		wg.Go(func() {
			for i, f := range files {
				for idx := int64(w); idx < nblocks; idx += writers {
					if err := f.WriteBlock(gens[i], idx, blockData(uint64(i), idx, bs, size)); err != nil {
						report(err)
					}
				}
			}
		})
	}
	// The churn file: writers race with Reset; each generation's bytes
	// differ (seeded by the generation), so mixing would show.
	wg.Go(func() {
		for idx := int64(0); idx < 4*nblocks; idx++ {
			_, gen, ok := churn.Remote()
			if !ok {
				if err := churn.Pin(gen, Remote{Size: size, ETag: fmt.Sprint(gen)}); err != nil &&
					!errors.Is(err, ErrStale) {
					report(err)
				}
				continue
			}
			err := churn.WriteBlock(gen, idx%nblocks, blockData(100+gen, idx%nblocks, bs, size))
			if err != nil && !errors.Is(err, ErrStale) {
				report(err)
			}
		}
	})
	wg.Go(func() {
		for range 10 {
			if _, err := churn.Reset("test"); err != nil {
				report(err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	for r := range 3 {
		readers.Go(func() {
			buf := make([]byte, bs)
			for n := 0; !stop.Load(); n++ {
				i := (n + r) % nfiles
				f := files[i]
				idx := int64(n*7+r) % nblocks
				if f.Present(idx) {
					want := blockData(uint64(i), idx, bs, size)
					got := buf[:len(want)]
					if _, err := f.ReadAt(got, idx*bs); err != nil || !bytes.Equal(got, want) {
						report(fmt.Errorf("file %d block %d reads back wrong: %v", i, idx, err))
					}
				}
				// Blocks of f only ever become present, so every block
				// before the first missing one stays present.
				m := f.Missing(0, nblocks-1)
				if m == -1 {
					m = nblocks
				}
				for j := range m {
					if !f.Present(j) {
						report(fmt.Errorf("file %d: Missing said %d, but block %d is not present", i, m, j))
					}
				}
				_ = churn.Present(idx)
				_ = c.Stats()
				if g, err := c.File(fmt.Sprintf("f%d", i), "http://origin.test/"+fmt.Sprintf("f%d", i), size, bs); err != nil || g != f {
					report(fmt.Errorf("File: %v", err))
				}
			}
		})
	}
	readers.Go(func() {
		for !stop.Load() {
			if err := c.Flush(); err != nil {
				report(err)
			}
		}
	})
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if !f.Complete() || f.LocalBytes() != size {
			t.Fatalf("file %d: complete %v, %d bytes", i, f.Complete(), f.LocalBytes())
		}
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{})
	var total int64
	for i := range files {
		f, err := c.File(fmt.Sprintf("f%d", i), "http://origin.test/"+fmt.Sprintf("f%d", i), size, bs)
		if err != nil {
			t.Fatal(err)
		}
		if !f.Complete() {
			t.Fatalf("file %d not complete after reopen", i)
		}
		total += f.LocalBytes()
	}
	churn, err := c.File("churn", "http://origin.test/churn", size, bs)
	if err != nil {
		t.Fatal(err)
	}
	_, gen, _ := churn.Remote()
	for idx := int64(0); idx < nblocks; idx++ {
		if !churn.Present(idx) {
			continue
		}
		want := blockData(100+gen, idx, bs, size)
		got := make([]byte, len(want))
		if _, err := churn.ReadAt(got, idx*bs); err != nil || !bytes.Equal(got, want) {
			t.Errorf("churn block %d holds bytes of another generation: %v", idx, err)
		}
		if ok, err := churn.Verify(idx); !ok || err != nil {
			t.Errorf("churn Verify(%d) = %v, %v", idx, ok, err)
		}
	}
	total += churn.LocalBytes()
	if st := c.Stats(); st.LocalBytes != total || st.Files != nfiles+1 {
		t.Fatalf("Stats = %+v, want %d bytes in %d files", st, total, nfiles+1)
	}
}
