package origin

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusCount(t *testing.T) {
	h := newHarness(t)
	h.s.Put("f", []byte("payload"))
	h.s.SetFaults("f", Faults{Status: 503, StatusCount: 2, RetryAfter: "7"})
	for i := range 2 {
		resp, body := h.get("f")
		wantStatus(t, resp, 503)
		if resp.Header.Get("Retry-After") != "7" || string(body) == "payload" {
			t.Fatalf("request %d: Retry-After %q, body %q", i, resp.Header.Get("Retry-After"), body)
		}
	}
	resp, body := h.get("f")
	wantStatus(t, resp, 200)
	if string(body) != "payload" || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("after the count: body %q, headers %v", body, resp.Header)
	}
	if st := h.s.Stats("f"); st.Statuses[503] != 2 || st.Statuses[200] != 1 || st.Requests != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStatusForeverAndClear(t *testing.T) {
	h := newHarness(t)
	h.s.Put("f", []byte("payload"))
	h.s.SetFaults("f", Faults{Status: 429})
	for range 5 {
		resp, _ := h.get("f")
		wantStatus(t, resp, 429)
	}
	resp, _, err := h.do(http.MethodHead, "f", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 429)
	h.s.ClearFaults()
	resp, _ = h.get("f")
	wantStatus(t, resp, 200)
}

func TestGlobalFaultsAndOverride(t *testing.T) {
	h := newHarness(t)
	h.s.Put("a", []byte("a"))
	h.s.Put("b", []byte("b"))
	h.s.SetFaults("", Faults{Status: 500})
	h.s.SetFaults("b", Faults{})
	resp, _ := h.get("a")
	wantStatus(t, resp, 500)
	resp, _ = h.get("missing")
	wantStatus(t, resp, 500)
	resp, body := h.get("b")
	wantStatus(t, resp, 200)
	if string(body) != "b" {
		t.Fatalf("body %q", body)
	}
}

func TestResetAfter(t *testing.T) {
	h := newHarness(t)
	const seed = 5
	h.s.PutGenerated("f", 1<<20, seed)
	h.s.SetFaults("f", Faults{ResetAfter: 100000, ResetCount: 1})
	resp, body, err := h.do(http.MethodGet, "f", nil)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read after a reset: %v, want an error", err)
	}
	wantStatus(t, resp, 200)
	if len(body) != 100000 || !bytes.Equal(body, gen(seed, 0, 100000)) {
		t.Fatalf("got %d bytes before the reset, want the first 100000", len(body))
	}
	// The count is spent: the next response is whole.
	resp, body = h.get("f", "Range", "bytes=0-")
	wantStatus(t, resp, 206)
	if !bytes.Equal(body, gen(seed, 0, 1<<20)) {
		t.Fatal("second response differs")
	}
	if st := h.s.Stats("f"); st.Resets != 1 || st.BytesSent != 100000+1<<20 {
		t.Fatalf("stats %+v", st)
	}
}

func TestResetAfterSkipsShortBodies(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 1000, 1)
	h.s.SetFaults("f", Faults{ResetAfter: 500, ResetCount: 1})
	resp, body := h.get("f", "Range", "bytes=0-499") // exactly 500: not cut
	wantStatus(t, resp, 206)
	if len(body) != 500 {
		t.Fatalf("%d bytes", len(body))
	}
	if _, _, err := h.do(http.MethodGet, "f", nil); err == nil {
		t.Fatal("longer body not cut")
	}
}

func TestResetBeforeBody(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 1000, 1)
	h.s.SetFaults("f", Faults{ResetAfter: -1})
	resp, body, err := h.do(http.MethodGet, "f", nil)
	if err == nil {
		t.Fatal("no error")
	}
	wantStatus(t, resp, 200)
	if len(body) != 0 {
		t.Fatalf("%d body bytes before the reset", len(body))
	}
}

func TestShortBody(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 1<<20, 2)
	h.s.SetFaults("f", Faults{ShortBody: true})
	resp, body, err := h.do(http.MethodGet, "f", nil, "Range", "bytes=1000-100999")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	wantStatus(t, resp, 206)
	if resp.ContentLength != 100000 || resp.Header.Get("Content-Range") != "bytes 1000-100999/1048576" {
		t.Fatalf("declared %d, %q", resp.ContentLength, resp.Header.Get("Content-Range"))
	}
	if !bytes.Equal(body, gen(2, 1000, 50000)) {
		t.Fatalf("got %d bytes, want the first half", len(body))
	}
}

func TestLongBody(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 10000, 4)
	h.s.SetFaults("f", Faults{LongBody: true})
	resp, body := h.get("f", "Range", "bytes=100-199")
	wantStatus(t, resp, 206)
	if resp.ContentLength != -1 || resp.Header.Get("Content-Range") != "bytes 100-199/10000" {
		t.Fatalf("Content-Length %d, Content-Range %q", resp.ContentLength, resp.Header.Get("Content-Range"))
	}
	if len(body) != 100+longBodyExtra || !bytes.Equal(body[:100], gen(4, 100, 100)) {
		t.Fatalf("got %d bytes, want the range and %d more", len(body), longBodyExtra)
	}
}

func TestWrongContentRange(t *testing.T) {
	h := newHarness(t)
	const size = 10000
	h.s.PutGenerated("f", size, 6)
	h.s.SetFaults("f", Faults{WrongContentRange: true})
	tests := []struct {
		rng, contentRange string
		from, n           int64
	}{
		{"bytes=0-999", "bytes 1000-1999/10000", 1000, 1000},     // forward one block
		{"bytes=8000-8999", "bytes 9000-9999/10000", 9000, 1000}, // forward, just fits
		{"bytes=9000-9999", "bytes 8000-8999/10000", 8000, 1000}, // backward
		{"bytes=-10", "bytes 9980-9989/10000", 9980, 10},         // suffix, backward
		{"bytes=5001-", "bytes 2-5000/10000", 2, 4999},           // open-ended, backward
		{"bytes=2000-8999", "bytes 2001-9000/10000", 2001, 7000}, // neither fits: one byte on
		{"bytes=1-9999", "bytes 0-9998/10000", 0, 9999},          // one byte back
		{"bytes=0-", "bytes 0-9999/10001", 0, 10000},             // whole: total off by one
	}
	for _, tc := range tests {
		resp, body := h.get("f", "Range", tc.rng)
		wantStatus(t, resp, 206)
		if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
			t.Errorf("%s: Content-Range %q, want %q", tc.rng, got, tc.contentRange)
			continue
		}
		if !bytes.Equal(body, gen(6, tc.from, int(tc.n))) {
			t.Errorf("%s: body does not match the declared range", tc.rng)
		}
	}
}

func TestContentEncodingAndHTMLError(t *testing.T) {
	h := newHarness(t)
	data := gen(8, 0, 300)
	h.s.Put("f", data)
	h.s.SetFaults("f", Faults{ContentEncoding: "gzip"})
	resp, body := h.get("f", "Range", "bytes=0-99")
	wantStatus(t, resp, 206)
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, data[:100]) {
		t.Fatalf("Content-Encoding %q, body equal %v", resp.Header.Get("Content-Encoding"), bytes.Equal(body, data[:100]))
	}

	h.s.SetFaults("f", Faults{HTMLError: true})
	resp, body = h.get("f", "Range", "bytes=0-99")
	wantStatus(t, resp, 200)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "<html>") ||
		resp.Header.Get("Content-Range") != "" {
		t.Fatalf("HTML error: %v %q", resp.Header, body)
	}
	resp, body, err := h.do(http.MethodHead, "f", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 200)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.ContentLength <= 0 || len(body) != 0 {
		t.Fatalf("HEAD of an HTML error: %v, %d body bytes", resp.Header, len(body))
	}
}

func TestNoRangeAndIgnoreIfRange(t *testing.T) {
	h := newHarness(t)
	h.s.Put("f", gen(1, 0, 100))
	old, _ := h.s.Object("f")
	data := gen(2, 0, 100)
	h.s.Put("f", data)

	h.s.SetFaults("f", Faults{NoRange: true})
	resp, body := h.get("f", "Range", "bytes=10-19")
	wantStatus(t, resp, 200)
	if !bytes.Equal(body, data) {
		t.Fatal("NoRange: body is not the whole object")
	}

	h.s.SetFaults("f", Faults{IgnoreIfRange: true})
	resp, body = h.get("f", "Range", "bytes=10-19", "If-Range", old.ETag)
	wantStatus(t, resp, 206)
	if !bytes.Equal(body, data[10:20]) {
		t.Fatal("IgnoreIfRange: body is not the new version's range")
	}
}

func TestDown(t *testing.T) {
	h := newHarness(t)
	h.s.Put("a", []byte("a"))
	h.s.Put("b", []byte("b"))
	h.s.SetFaults("a", Faults{Down: true})
	if resp, _, err := h.do(http.MethodGet, "a", nil); err == nil {
		t.Fatalf("GET of a down path: %s", resp.Status)
	}
	resp, body := h.get("b")
	wantStatus(t, resp, 200)
	if string(body) != "b" {
		t.Fatalf("body %q", body)
	}
	if st := h.s.Stats("a"); st.Statuses[0] == 0 || st.Resets != st.Statuses[0] || len(st.Statuses) != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSetDown(t *testing.T) {
	h := newHarness(t)
	h.s.Put("a", []byte("a"))
	resp, _ := h.get("a") // leaves an idle keep-alive connection
	wantStatus(t, resp, 200)
	h.s.SetDown(true)
	for range 3 {
		if resp, _, err := h.do(http.MethodGet, "a", nil); err == nil {
			t.Fatalf("GET while down: %s", resp.Status)
		}
	}
	h.s.SetDown(false)
	resp, _ = h.get("a")
	wantStatus(t, resp, 200)
	h.s.SetDown(true)
	h.s.ClearFaults() // also ends SetDown
	resp, _ = h.get("a")
	wantStatus(t, resp, 200)
}

func TestLatency(t *testing.T) {
	h := newHarness(t)
	h.s.Put("f", []byte("f"))
	h.s.SetFaults("f", Faults{Latency: 300 * time.Millisecond})
	start := time.Now()
	resp, _ := h.get("f")
	wantStatus(t, resp, 200)
	// A lower bound: the delay cannot be shorter than asked.
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("took %v", took)
	}
}

func TestBytesPerSec(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 200<<10, 9)
	h.s.SetFaults("f", Faults{BytesPerSec: 100 << 10})
	start := time.Now()
	resp, body := h.get("f")
	took := time.Since(start)
	wantStatus(t, resp, 200)
	if !bytes.Equal(body, gen(9, 0, 200<<10)) {
		t.Fatal("paced body differs")
	}
	// A lower bound: 200 KiB at 100 KiB/s with the first step free.
	if took < 1500*time.Millisecond {
		t.Fatalf("200 KiB at 100 KiB/s took %v", took)
	}
}

func TestTotalBytesPerSec(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 100<<10, 9)
	h.s.SetFaults("f", Faults{TotalBytesPerSec: 100 << 10})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			resp, err := h.c.Get(h.s.URL("f"))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil && !bytes.Equal(body, gen(9, 0, 100<<10)) {
				err = errors.New("paced body differs")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Two responses of 100 KiB share 100 KiB/s.
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("2 x 100 KiB under a shared 100 KiB/s took %v", took)
	}
}

func TestMutateAfterBytes(t *testing.T) {
	h := newHarness(t)
	oldData, newData := gen(1, 0, 1<<20), gen(2, 0, 1<<20)
	h.s.Put("f", oldData)
	old, _ := h.s.Object("f")
	h.s.MutateAfterBytes("f", 256<<10, newData)

	resp, body := h.get("f", "Range", "bytes=0-131071")
	wantStatus(t, resp, 206)
	if cur, _ := h.s.Object("f"); cur.ETag != old.ETag || !bytes.Equal(body, oldData[:128<<10]) {
		t.Fatal("mutated too early")
	}
	// This response crosses the threshold: it still carries the old version.
	resp, body = h.get("f", "Range", "bytes=131072-", "If-Range", old.ETag)
	wantStatus(t, resp, 206)
	if !bytes.Equal(body, oldData[128<<10:]) {
		t.Fatal("the response in flight changed version")
	}
	cur, _ := h.s.Object("f")
	if cur.ETag == old.ETag {
		t.Fatal("not mutated after the threshold")
	}
	resp, body = h.get("f", "Range", "bytes=0-99", "If-Range", old.ETag)
	wantStatus(t, resp, 200)
	if resp.Header.Get("ETag") != cur.ETag || !bytes.Equal(body, newData) {
		t.Fatal("the new version is not served whole after If-Range with the old ETag")
	}
}

func TestResetCountOverRequests(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("f", 1<<16, 1)
	h.s.SetFaults("f", Faults{ResetAfter: 1000, ResetCount: 3})
	failures := 0
	for range 5 {
		if _, _, err := h.do(http.MethodGet, "f", nil); err != nil {
			failures++
		}
	}
	if failures != 3 {
		t.Fatalf("%d of 5 requests cut, want 3", failures)
	}
	if st := h.s.Stats("f"); st.Resets != 3 || st.BytesSent != 3*1000+2*(1<<16) {
		t.Fatalf("stats %+v", st)
	}
}
