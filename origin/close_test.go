package origin

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds; it fails t after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseCutsStalledAndSlowExchanges(t *testing.T) {
	checkLeaks(t)
	s := New(Options{Logger: testLogger(t)})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	s.PutGenerated("stalled", 1<<30, 1)
	s.PutGenerated("slow", 1<<20, 2)
	s.SetFaults("slow", Faults{BytesPerSec: 10 << 10})
	s.Put("late", []byte("x"))
	s.SetFaults("late", Faults{Latency: time.Hour})

	// A client that takes the headers and never reads the body: the
	// server's writes block once the socket buffers are full.
	stalled, err := c.Get(s.URL("stalled"))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close()
	var last int64 = -1
	waitFor(t, "the stalled response to stop growing", func() bool {
		cur := s.Stats("stalled").BytesSent
		still := cur > 0 && cur == last
		last = cur
		time.Sleep(50 * time.Millisecond)
		return still
	})

	// A slow download, a delayed answer and an upload whose body stalls.
	results := make(chan error, 3)
	go func() {
		resp, err := c.Get(s.URL("slow"))
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		results <- err
	}()
	go func() {
		resp, err := c.Get(s.URL("late"))
		if err == nil {
			resp.Body.Close()
		}
		results <- err
	}()
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		req, err := http.NewRequest(http.MethodPut, s.URL("upload"), pr)
		if err == nil {
			var resp *http.Response
			if resp, err = c.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		results <- err
	}()
	if _, err := pw.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all requests to reach the server", func() bool {
		return s.Stats("slow").BytesSent > 0 && s.Stats("late").Requests == 1 && s.Stats("upload").BytesReceived == 1000
	})

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Close hangs:\n%s", strings.Join(leakedGoroutines(), "\n\n"))
	}
	// The upload's client only gives up once its body source ends.
	pw.CloseWithError(io.ErrClosedPipe)
	for range 3 {
		if err := <-results; err == nil {
			t.Error("an exchange cut by Close ended without an error")
		}
	}
	if _, err := io.Copy(io.Discard, stalled.Body); err == nil {
		t.Error("the stalled body ended without an error")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestHandlerMounted(t *testing.T) {
	checkLeaks(t)
	s := New(Options{Logger: testLogger(t)})
	ts := httptest.NewServer(http.StripPrefix("/origin", s.Handler()))
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}

	s.PutGenerated("a/b", 100000, 4)
	s.SetFaults("a/b", Faults{ResetAfter: 1000, ResetCount: 1})
	resp, err := c.Get(ts.URL + "/origin/a/b")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(body) != 1000 {
		t.Fatalf("cut response: %d bytes, err %v", len(body), err)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/origin/a/b", nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, gen(4, 10, 10)) {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
}
