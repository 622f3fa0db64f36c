package fetcher

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

// Malformed answers that must cost a retry, not the file: the fault is
// transient (a proxy, a portal), so once it is gone the file fills right,
// with the version pinned before the fault and no restart.

// pinnedFile registers a generated object whose store already has its
// validator pinned (as after a restart), declared with its size.
func pinnedFile(t *testing.T, fx *fixture, path string, size int64, seed uint64) (*File, *memStore) {
	t.Helper()
	fx.origin.PutGenerated(path, size, seed)
	info, _ := fx.origin.Object(path)
	st := newMemStore(testBS)
	if err := st.Pin(0, Remote{Size: size, ETag: info.ETag, LastModified: info.LastModified.Format(http.TimeFormat)}); err != nil {
		t.Fatal(err)
	}
	return fx.f.Add(Spec{Path: path, URL: fx.origin.URL(path), Size: size}, st), st
}

// faultThenClear runs Ensure of the whole file for a moment under the fault,
// checks that the file neither failed nor was reset and that what was
// stored is right, then clears the fault and checks the file fills right.
func faultThenClear(t *testing.T, fx *fixture, fl *File, st *memStore, path string, size int64, seed uint64, f origin.Faults) {
	t.Helper()
	fx.origin.SetFaults(path, f)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := fl.Ensure(ctx, 0, size)
	cancel()
	if err == nil {
		t.Fatal("Ensure succeeded under the fault")
	}
	if s, serr := fl.State(); s == StateFailed {
		t.Fatalf("a transient malformed answer failed the file: %v", serr)
	}
	st.mu.Lock()
	resets := st.resets
	st.mu.Unlock()
	if resets != 0 {
		t.Fatalf("a malformed answer reset the file %d times (a spurious version change)", resets)
	}
	if fx.origin.Stats(path).Requests == 0 {
		t.Fatal("no request reached the origin")
	}
	fx.origin.ClearFaults()
	if err := fl.Ensure(context.Background(), 0, size); err != nil {
		t.Fatal(err)
	}
	got, ok := st.bytes(0, size)
	if !ok || !bytes.Equal(got, want(seed, 0, size)) {
		t.Fatal("the file differs from the origin")
	}
}

// TestWrongTotalIsNotAVersionChange: a 206 for the whole object whose
// Content-Range total is off by one, with the pinned strong ETag, is a
// malformed answer, not a new version: a strong ETag names one
// representation, length included.
func TestWrongTotalIsNotAVersionChange(t *testing.T) {
	fx := newFixture(t, Options{})
	const size = 4*testBS + 100
	fl, st := pinnedFile(t, fx, "w.bin", size, 21)
	faultThenClear(t, fx, fl, st, "w.bin", size, 21, origin.Faults{WrongContentRange: true})
}

// TestErrorPageBeforePinIsTransient: an HTML error page with 200 (no ETag,
// no Last-Modified, not the declared size) answering the first ranged
// request of a file is not the object: no byte of it is stored and the
// file does not fail.
func TestErrorPageBeforePinIsTransient(t *testing.T) {
	fx := newFixture(t, Options{})
	const size = 3 * testBS
	fx.origin.PutGenerated("h.bin", size, 22)
	st := newMemStore(testBS)
	fl := fx.f.Add(Spec{Path: "h.bin", URL: fx.origin.URL("h.bin"), Size: size}, st)
	faultThenClear(t, fx, fl, st, "h.bin", size, 22, origin.Faults{HTMLError: true})
}

// TestLongBodyStoresOnlyWholeBlocks: a body longer than its Content-Range
// (chunked, so only a client that counts notices) never gets its last block
// stored; the blocks before it are the right bytes.
func TestLongBodyStoresOnlyWholeBlocks(t *testing.T) {
	fx := newFixture(t, Options{})
	const size = 4 * testBS
	fl, st := fx.add("l.bin", size, 23, manifest.Normal)
	faultThenClear(t, fx, fl, st, "l.bin", size, 23, origin.Faults{LongBody: true})
	st.mu.Lock()
	defer st.mu.Unlock()
	for idx, n := range st.writes {
		if n != 1 {
			t.Errorf("block %d stored %d times", idx, n)
		}
	}
}
