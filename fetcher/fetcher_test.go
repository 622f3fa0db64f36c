package fetcher

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

const testBS = 64 << 10

// fixture is a fetcher wired to a real origin on loopback.
type fixture struct {
	t      *testing.T
	origin *origin.Server
	base   string
	f      *Fetcher
}

func newFixture(t *testing.T, opts Options) *fixture {
	if testing.Verbose() && opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	t.Helper()
	checkLeaks(t)
	o := origin.New(origin.Options{})
	base := o.StartTest(t)
	if opts.Backoff == 0 {
		opts.Backoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	}
	f := New(opts)
	t.Cleanup(func() { f.Close() })
	return &fixture{t: t, origin: o, base: base, f: f}
}

// add registers a generated object of size bytes at path.
func (fx *fixture) add(path string, size int64, seed uint64, prio manifest.Priority) (*File, *memStore) {
	fx.origin.PutGenerated(path, size, seed)
	st := newMemStore(testBS)
	fl := fx.f.Add(Spec{Path: path, URL: fx.origin.URL(path), Size: size, Priority: prio}, st)
	return fl, st
}

// checkLeaks fails the test when goroutines started during it outlive it.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf)
		}
	})
}

func want(seed uint64, off, n int64) []byte {
	p := make([]byte, n)
	origin.GeneratedBytes(seed, off, p)
	return p
}

// waitState polls until fl reaches state s or the deadline passes.
func waitState(t *testing.T, fl *File, s State) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := fl.State()
		if got == s {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s (err %v), want %s", fl.Path(), got, err, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEnsureRandomRanges(t *testing.T) {
	fx := newFixture(t, Options{MaxConns: 4})
	const size = 5<<20 + 123
	fl, st := fx.add("a/rand.bin", size, 7, manifest.Normal)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rng.Int64N(size)
		n := 1 + rng.Int64N(min(size-off, 300<<10))
		if err := fl.Ensure(context.Background(), off, n); err != nil {
			t.Fatal(err)
		}
		got, ok := st.bytes(off, n)
		if !ok {
			t.Fatalf("Ensure(%d, %d) returned with bytes missing", off, n)
		}
		if !bytes.Equal(got, want(7, off, n)) {
			t.Fatalf("bytes %d+%d differ from the origin", off, n)
		}
	}
	for idx, n := range st.writes {
		if n != 1 {
			t.Errorf("block %d stored %d times", idx, n)
		}
	}
	if sent := fx.origin.Stats("a/rand.bin").BytesSent; sent > size {
		t.Errorf("origin sent %d bytes for a %d-byte file", sent, size)
	}
}

func TestEnsureSmallAndEdgeSizes(t *testing.T) {
	fx := newFixture(t, Options{})
	for _, size := range []int64{0, 1, testBS - 1, testBS, testBS + 1} {
		path := "edge/" + strings.Repeat("x", int(size%7)+1) + "-" + time.Duration(size).String()
		fl, st := fx.add(path, size, uint64(size)+1, manifest.Normal)
		if err := fl.Ensure(context.Background(), 0, size+10); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, ok := st.bytes(0, size)
		if !ok || !bytes.Equal(got, want(uint64(size)+1, 0, size)) {
			t.Fatalf("size %d: wrong or missing bytes", size)
		}
		if s, _ := fl.State(); s != StateComplete {
			t.Fatalf("size %d: state %s, want complete", size, s)
		}
	}
}

func TestSizeUnknownIsProbed(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.origin.PutGenerated("u.bin", 300000, 3)
	st := newMemStore(testBS)
	fl := fx.f.Add(Spec{Path: "u.bin", URL: fx.origin.URL("u.bin"), Size: -1}, st)
	size, err := fl.Size(context.Background())
	if err != nil || size != 300000 {
		t.Fatalf("Size = %d, %v; want 300000", size, err)
	}
}

func TestBackgroundFillsByPriority(t *testing.T) {
	// One connection: background work is strictly one job at a time, so the
	// order in which files are first written shows the order of the queue.
	fx := newFixture(t, Options{MaxConns: 1, Background: true, ChunkSize: testBS})
	var order atomic.Int64
	type entry struct {
		fl    *File
		st    *memStore
		seed  uint64
		first atomic.Int64
	}
	prios := []manifest.Priority{manifest.Low, manifest.Normal, manifest.Foreground, manifest.High}
	var es []*entry
	for i, p := range prios {
		e := &entry{seed: uint64(i + 10)}
		e.fl, e.st = fx.add("bg/"+p.String(), 4*testBS+5, e.seed, p)
		es = append(es, e)
	}
	// Record when each file received its first block.
	done := make(chan struct{})
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		for {
			for _, e := range es {
				if e.first.Load() == 0 && e.st.LocalBytes() > 0 {
					e.first.Store(order.Add(1))
				}
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	fx.origin.SetFaults("", origin.Faults{Latency: 20 * time.Millisecond})
	fx.f.Start()
	for _, e := range es {
		waitState(t, e.fl, StateComplete)
	}
	close(done)
	<-watch
	// Foreground, then High, then Normal, then Low.
	rank := map[manifest.Priority]int64{manifest.Foreground: 1, manifest.High: 2, manifest.Normal: 3, manifest.Low: 4}
	for i, e := range es {
		if got := e.first.Load(); got != rank[prios[i]] {
			t.Errorf("%s file started %d-th, want %d-th", prios[i], got, rank[prios[i]])
		}
		got, ok := e.st.bytes(0, 4*testBS+5)
		if !ok || !bytes.Equal(got, want(e.seed, 0, 4*testBS+5)) {
			t.Errorf("%s file: wrong bytes", prios[i])
		}
	}
}

func TestOriginIgnoringRangeStreams(t *testing.T) {
	fx := newFixture(t, Options{MaxConns: 4})
	const size = 3<<20 + 17
	fl, st := fx.add("norange.bin", size, 5, manifest.Normal)
	fx.origin.SetFaults("norange.bin", origin.Faults{NoRange: true})
	// The last bytes first: the stream must deliver them in order.
	if err := fl.Ensure(context.Background(), size-4096, 4096); err != nil {
		t.Fatal(err)
	}
	got, ok := st.bytes(size-4096, 4096)
	if !ok || !bytes.Equal(got, want(5, size-4096, 4096)) {
		t.Fatal("last 4 KiB wrong or missing")
	}
	if err := fl.Ensure(context.Background(), 0, size); err != nil {
		t.Fatal(err)
	}
	got, _ = st.bytes(0, size)
	if !bytes.Equal(got, want(5, 0, size)) {
		t.Fatal("file differs from the origin")
	}
	for idx, n := range st.writes {
		if n != 1 {
			t.Errorf("block %d stored %d times", idx, n)
		}
	}
}

func TestVersionChangeResets(t *testing.T) {
	fx := newFixture(t, Options{})
	const size = 8 * testBS
	fl, st := fx.add("v.bin", size, 1, manifest.Normal)
	if err := fl.Ensure(context.Background(), 0, testBS); err != nil {
		t.Fatal(err)
	}
	v2 := want(2, 0, size)
	fx.origin.Put("v.bin", v2)
	if err := fl.Ensure(context.Background(), 0, size); err != nil {
		t.Fatal(err)
	}
	got, ok := st.bytes(0, size)
	if !ok || !bytes.Equal(got, v2) {
		t.Fatal("after the change the file is not the new version")
	}
	if st.resets != 1 {
		t.Fatalf("store reset %d times, want 1", st.resets)
	}
}

func TestPermanentErrorFails(t *testing.T) {
	fx := newFixture(t, Options{})
	st := newMemStore(testBS)
	fl := fx.f.Add(Spec{Path: "gone", URL: fx.origin.URL("gone"), Size: 1000}, st)
	err := fl.Ensure(context.Background(), 0, 10)
	if StatusCode(err) != http.StatusNotFound {
		t.Fatalf("Ensure = %v, want HTTP 404", err)
	}
	if s, serr := fl.State(); s != StateFailed || StatusCode(serr) != 404 {
		t.Fatalf("State = %s, %v; want failed with 404", s, serr)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	fx := newFixture(t, Options{})
	fl, st := fx.add("flaky.bin", 4*testBS, 9, manifest.Normal)
	fx.origin.SetFaults("flaky.bin", origin.Faults{Status: 503, StatusCount: 3, RetryAfter: "0"})
	if err := fl.Ensure(context.Background(), 0, 4*testBS); err != nil {
		t.Fatal(err)
	}
	got, _ := st.bytes(0, 4*testBS)
	if !bytes.Equal(got, want(9, 0, 4*testBS)) {
		t.Fatal("wrong bytes after retries")
	}
	if n := fx.origin.Stats("flaky.bin").Statuses[503]; n != 3 {
		t.Fatalf("origin answered 503 %d times, want 3", n)
	}
}

func TestBadResponsesAreNeverStored(t *testing.T) {
	cases := map[string]origin.Faults{
		"wrong-content-range": {WrongContentRange: true},
		"content-encoding":    {ContentEncoding: "gzip"},
		"short-body":          {ShortBody: true},
		"html-error":          {HTMLError: true},
		"reset":               {ResetAfter: testBS + 100},
	}
	for name, faults := range cases {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Options{})
			const size = 4 * testBS
			fl, st := fx.add("bad.bin", size, 11, manifest.Normal)
			if name == "html-error" {
				// Pin the real version first, so that a 200 page is a
				// different object, not "an origin ignoring Range".
				if err := fl.Ensure(context.Background(), 0, 1); err != nil {
					t.Fatal(err)
				}
			}
			fx.origin.SetFaults("bad.bin", faults)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_ = fl.Ensure(ctx, testBS, size-testBS)
			// Whatever was stored is right.
			for idx := range int64(4) {
				if b, ok := st.bytes(idx*testBS, testBS); ok && !bytes.Equal(b, want(11, idx*testBS, testBS)) {
					t.Fatalf("block %d holds wrong bytes", idx)
				}
			}
			fx.origin.ClearFaults()
			if err := fl.Ensure(context.Background(), 0, size); err != nil {
				t.Fatal(err)
			}
			if got, ok := st.bytes(0, size); ok && !bytes.Equal(got, want(11, 0, size)) {
				t.Fatal("file differs from the origin")
			}
		})
	}
}

func TestReadTimeout(t *testing.T) {
	fx := newFixture(t, Options{ReadTimeout: 200 * time.Millisecond})
	fl, _ := fx.add("slow.bin", testBS, 1, manifest.Normal)
	fx.origin.SetDown(true)
	err := fl.Ensure(context.Background(), 0, 10)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Ensure = %v, want ErrTimeout", err)
	}
}

func TestEnsureHonoursContext(t *testing.T) {
	fx := newFixture(t, Options{})
	fl, _ := fx.add("stall.bin", testBS, 1, manifest.Normal)
	fx.origin.SetFaults("stall.bin", origin.Faults{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- fl.Ensure(ctx, 0, 10) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Ensure = %v, want context.Canceled", err)
	}
}

func TestCloseWakesReaders(t *testing.T) {
	fx := newFixture(t, Options{})
	fl, _ := fx.add("stall.bin", testBS, 1, manifest.Normal)
	fx.origin.SetFaults("stall.bin", origin.Faults{Latency: time.Hour})
	errc := make(chan error, 1)
	go func() { errc <- fl.Ensure(context.Background(), 0, 10) }()
	time.Sleep(20 * time.Millisecond)
	fx.f.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Ensure = %v, want ErrClosed", err)
	}
}

func TestRedirectDropsHeadersForAnotherHost(t *testing.T) {
	checkLeaks(t)
	var gotKey atomic.Value
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey.Store(r.Header.Get("X-Api-Key") + "|" + r.Header.Get("Authorization"))
		http.ServeContent(w, r, "x", time.Unix(0, 0), bytes.NewReader(make([]byte, 100)))
	}))
	t.Cleanup(target.Close)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL+"/x", http.StatusFound))
	t.Cleanup(redirect.Close)
	f := New(Options{})
	t.Cleanup(func() { f.Close() })
	h := http.Header{"X-Api-Key": {"secret"}, "Authorization": {"Bearer secret"}}
	fl := f.Add(Spec{Path: "x", URL: redirect.URL + "/x", Size: 100, Header: h}, newMemStore(testBS))
	if err := fl.Ensure(context.Background(), 0, 100); err != nil {
		t.Fatal(err)
	}
	if got := gotKey.Load(); got != "|" {
		t.Fatalf("the other host received headers %q", got)
	}
}

func TestContentRangeParser(t *testing.T) {
	good := map[string]contentRange{
		"bytes 0-0/1":     {0, 0, 1},
		"bytes 10-19/100": {10, 19, 100},
		"bytes 99-99/100": {99, 99, 100},
	}
	for in, w := range good {
		if got, err := parseContentRange(in); err != nil || got != w {
			t.Errorf("parseContentRange(%q) = %v, %v; want %v", in, got, err, w)
		}
	}
	for _, in := range []string{"", "bytes */100", "bytes 5-4/100", "bytes 0-100/100", "items 0-1/2", "bytes -1-2/3", "bytes 0-1/x", "bytes 0-1"} {
		if _, err := parseContentRange(in); err == nil {
			t.Errorf("parseContentRange(%q) accepted", in)
		}
	}
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 10-19/100", "bytes */5", "bytes 1-0/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			return
		}
		if cr.first < 0 || cr.last < cr.first || cr.total <= cr.last {
			t.Fatalf("parseContentRange(%q) = %+v: out of range", s, cr)
		}
	})
}
