package fetcher

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/manifest"
)

// A read waiting for a block gets it while the store is still writing it.
func TestReadCopiesBlockBeingWritten(t *testing.T) {
	// Each held write holds a worker: three reads need three.
	fx := newFixture(t, Options{MaxConns: 4})
	const size = 3*testBS + 17
	fl, st := fx.add("mem/held.bin", size, 21, manifest.Normal)
	// Block 0 is in the store before writes are held: a read spanning
	// blocks 0 and 1 takes one from the store, the other from memory.
	if err := fl.Ensure(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	st.mu.Lock()
	st.gate = gate
	st.mu.Unlock()
	defer close(gate) // lets the held write finish before Close

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range []struct{ off, n int64 }{{testBS + 100, 4096}, {size - 17, 17}, {testBS - 10, 20}} {
		p := make([]byte, r.n)
		copied, err := fl.EnsureCopy(ctx, p, r.off)
		if err != nil {
			t.Fatalf("EnsureCopy(%d, %d) with the store's writes held: %v", r.off, r.n, err)
		}
		if !copied {
			t.Fatalf("EnsureCopy(%d, %d) returned without copying, while no write finished", r.off, r.n)
		}
		if !bytes.Equal(p, want(21, r.off, r.n)) {
			t.Fatalf("EnsureCopy(%d, %d): wrong bytes", r.off, r.n)
		}
	}
	if n := st.LocalBytes(); n != testBS {
		t.Fatalf("store holds %d bytes while its writes are held; want block 0's %d", n, testBS)
	}
}

// Readers copying from a block while the worker retires it and reuses its
// buffer: -race reports any copy that overlaps the reuse, and the bytes
// must always be the origin's.
func TestConcurrentReadsOfBlocksInFlight(t *testing.T) {
	fx := newFixture(t, Options{MaxConns: 4})
	const size = 64 * testBS
	fl, st := fx.add("mem/many.bin", size, 22, manifest.Normal)
	gate := make(chan struct{})
	st.mu.Lock()
	st.gate = gate
	st.mu.Unlock()
	stop := make(chan struct{})
	var opener sync.WaitGroup
	opener.Add(1)
	go func() {
		// Writes finish one at a time, slowly, so that reads find blocks
		// in flight.
		defer opener.Done()
		for {
			select {
			case gate <- struct{}{}:
			case <-stop:
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var copiedN atomic.Int64
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 60 {
				off := rng.Int64N(size - 1)
				n := 1 + rng.Int64N(min(size-off, 2*testBS))
				p := make([]byte, n)
				copied, err := fl.EnsureCopy(ctx, p, off)
				if err != nil {
					t.Error(err)
					return
				}
				if copied {
					copiedN.Add(1)
				} else if _, err := st.ReadAt(p, off); err != nil {
					t.Errorf("EnsureCopy(%d, %d) returned false with the bytes not stored: %v", off, n, err)
					return
				}
				if !bytes.Equal(p, want(22, off, n)) {
					t.Errorf("bytes %d+%d differ from the origin (copied from memory: %v)", off, n, copied)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	opener.Wait()
	close(gate)
	// How many find a block in flight depends on timing; the test's
	// point is the bytes and the race detector.
	t.Logf("%d of 360 reads copied from blocks in flight", copiedN.Load())
}
