package fetcher

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

func TestNetworkLossPausesAndResumes(t *testing.T) {
	fx := newFixture(t, Options{Background: true, ChunkSize: testBS, MaxBackoff: 200 * time.Millisecond})
	var files []*File
	for i, p := range []string{"n1", "n2", "n3"} {
		fl, _ := fx.add(p, 32*testBS, uint64(i), manifest.Normal)
		files = append(files, fl)
	}
	fx.origin.SetFaults("", origin.Faults{BytesPerSec: 4 << 20})
	fx.f.Start()
	// Down once something arrived, for a while, then back.
	for files[0].Info().Local == 0 {
		time.Sleep(time.Millisecond)
	}
	fx.origin.SetDown(true)
	time.Sleep(time.Second)
	if n := files[0].Info(); n.State == StateFailed {
		t.Fatalf("network loss failed the file: %v", n.Err)
	}
	fx.origin.SetDown(false)
	fx.origin.ClearFaults()
	for _, fl := range files {
		waitState(t, fl, StateComplete)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	fx := newFixture(t, Options{})
	fl, _ := fx.add("busy.bin", testBS, 1, manifest.Normal)
	fx.origin.SetFaults("busy.bin", origin.Faults{Status: 429, StatusCount: 1, RetryAfter: "1"})
	start := time.Now()
	if err := fl.Ensure(context.Background(), 0, testBS); err != nil {
		t.Fatal(err)
	}
	// The test's backoff is 5 ms: only Retry-After explains a wait of a
	// second.
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("retried after %s, before Retry-After's 1s", d)
	}
	if n := fx.origin.Stats("busy.bin").Statuses[429]; n != 1 {
		t.Fatalf("origin answered 429 %d times, want 1", n)
	}
}

func TestStoreFailureFailsWaitingReads(t *testing.T) {
	fx := newFixture(t, Options{})
	fl, st := fx.add("full.bin", 4*testBS, 1, manifest.Normal)
	st.mu.Lock()
	st.failErr = errors.New("no space left on device")
	st.mu.Unlock()
	err := fl.Ensure(context.Background(), 0, 10)
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Ensure = %v, want the store's error", err)
	}
	// Once the store works again, reads do too.
	st.mu.Lock()
	st.failErr = nil
	st.mu.Unlock()
	if err := fl.Ensure(context.Background(), 0, 10); err != nil {
		t.Fatal(err)
	}
}
