package fetcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

// doneLog collects OnDone calls.
type doneLog struct {
	mu    sync.Mutex
	infos []Info
}

func (d *doneLog) add(i Info) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.infos = append(d.infos, i)
}

func (d *doneLog) get() []Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Info(nil), d.infos...)
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSHA256MatchReportsCompleteOnce(t *testing.T) {
	var log doneLog
	fx := newFixture(t, Options{OnDone: log.add, Background: true})
	const size = 3*testBS + 9
	fx.origin.PutGenerated("ok.bin", size, 4)
	st := newMemStore(testBS)
	fl := fx.f.Add(Spec{Path: "ok.bin", URL: fx.origin.URL("ok.bin"), Size: size, SHA256: sumHex(want(4, 0, size))}, st)
	fx.f.Start()
	waitState(t, fl, StateComplete)
	deadline := time.Now().Add(10 * time.Second)
	for len(log.get()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Another read after completion must not report again.
	if err := fl.Ensure(context.Background(), 0, size); err != nil {
		t.Fatal(err)
	}
	got := log.get()
	if len(got) != 1 || got[0].State != StateComplete || got[0].Path != "ok.bin" || got[0].Local != size {
		t.Fatalf("OnDone calls = %+v, want one complete", got)
	}
}

func TestSHA256MismatchRefetchesOnceThenFails(t *testing.T) {
	var log doneLog
	fx := newFixture(t, Options{OnDone: log.add})
	const size = 4 * testBS
	fx.origin.PutGenerated("bad.bin", size, 5)
	st := newMemStore(testBS)
	wrong := sumHex(want(6, 0, size))
	fl := fx.f.Add(Spec{Path: "bad.bin", URL: fx.origin.URL("bad.bin"), Size: size, SHA256: wrong}, st)
	// Reads succeed while the file fills (the digest covers the whole
	// file); once it is complete and checked twice, they fail.
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if err = fl.Ensure(context.Background(), 0, size); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("reads of a file whose digest never matches kept succeeding")
	}
	if s, _ := fl.State(); s != StateFailed {
		t.Fatalf("state %s, want failed", s)
	}
	if st.resets != 1 {
		t.Fatalf("%d refetches, want exactly 1", st.resets)
	}
	if sent := fx.origin.Stats("bad.bin").BytesSent; sent != 2*size {
		t.Fatalf("origin sent %d bytes, want %d (the file twice)", sent, 2*size)
	}
	if got := log.get(); len(got) != 1 || got[0].State != StateFailed {
		t.Fatalf("OnDone calls = %+v, want one failed", got)
	}
	if err := fl.Ensure(context.Background(), 0, 1); err == nil {
		t.Fatal("a read of a failed file succeeded")
	}
}

func TestBlockHashMismatchIsNeverStored(t *testing.T) {
	fx := newFixture(t, Options{})
	const size = 3 * testBS
	fx.origin.PutGenerated("bh.bin", size, 8)
	hashes := make([][32]byte, 3)
	for i := range hashes {
		hashes[i] = sha256.Sum256(want(8, int64(i)*testBS, testBS))
	}
	hashes[2][0] ^= 1 // the manifest disagrees with the origin on block 2
	st := newMemStore(testBS)
	fl := fx.f.Add(Spec{Path: "bh.bin", URL: fx.origin.URL("bh.bin"), Size: size, BlockHashes: hashes, BlockHashSize: testBS}, st)
	if err := fl.Ensure(context.Background(), 0, 2*testBS); err != nil {
		t.Fatal(err)
	}
	if err := fl.Ensure(context.Background(), 2*testBS, testBS); err == nil {
		t.Fatal("a block that does not match its digest was returned")
	}
	if st.Present(2) {
		t.Fatal("a block that does not match its digest was stored")
	}
}

func TestPauseHoldsBackgroundButNotReads(t *testing.T) {
	fx := newFixture(t, Options{Background: true, ChunkSize: testBS})
	const size = 16 * testBS
	fl, st := fx.add("p.bin", size, 2, manifest.Normal)
	fl.Pause()
	fx.f.Start()
	if err := fl.Ensure(context.Background(), 5*testBS, 10); err != nil {
		t.Fatal(err)
	}
	// Give background fill every chance to run; it must not.
	time.Sleep(100 * time.Millisecond)
	if n := st.LocalBytes(); n != testBS {
		t.Fatalf("paused file holds %d bytes, want only the block read (%d)", n, testBS)
	}
	if info := fl.Info(); !info.Paused {
		t.Fatal("Info does not say paused")
	}
	fl.Resume()
	waitState(t, fl, StateComplete)
}

// A low-priority file completes while reads go on nonstop: the floor lets
// background requests of several blocks through however busy the reads
// keep the fetcher.
func TestLowPriorityFinishesUnderContinuousReads(t *testing.T) {
	fx := newFixture(t, Options{MaxConns: 2, Background: true, ChunkSize: 8 * testBS})
	const size = 32 * testBS
	low, _ := fx.add("low.bin", size, 1, manifest.Low)
	const hotBlocks = 4096 // more than the reads below get through before low completes
	reader, _ := fx.add("hot.bin", hotBlocks*testBS, 2, manifest.High)
	reader.Pause() // only the reads fetch it
	fx.origin.SetFaults("hot.bin", origin.Faults{Latency: 2 * time.Millisecond})
	fx.f.Start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reading atomic.Int64
	for w := range 2 {
		wg.Add(1)
		reading.Add(1)
		go func() {
			defer wg.Done()
			defer reading.Add(-1)
			// Nonstop demand reads, always of blocks not local yet.
			for i := int64(w); ctx.Err() == nil && i < hotBlocks; i += 2 {
				_ = reader.Ensure(ctx, i*testBS, 1)
			}
		}()
	}
	waitState(t, low, StateComplete)
	if n := reading.Load(); n != 2 {
		t.Errorf("the low file completed only after %d of 2 readers had stopped", 2-n)
	}
	cancel()
	wg.Wait()
}
