package uploader

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"
)

// testSource is a StreamSource over a staged file that the test grows:
// Hashed is what the test declared written.
type testSource struct {
	path string

	mu       sync.Mutex
	cond     *sync.Cond
	hashed   int64
	released int
	stream   *Stream
}

func newTestSource(path string) *testSource {
	s := &testSource{path: path}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// write appends data to the staged file and declares it hashed.
func (s *testSource) write(t *testing.T, data []byte) {
	t.Helper()
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.hashed += int64(len(data))
	st := s.stream
	s.cond.Broadcast()
	s.mu.Unlock()
	if st != nil {
		st.Wake()
	}
}

func (s *testSource) Hashed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hashed
}

func (s *testSource) Sum(size int64) []byte {
	s.mu.Lock()
	for s.hashed < size && s.released == 0 {
		s.cond.Wait()
	}
	ok := s.hashed == size
	s.mu.Unlock()
	if !ok {
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	h := sha256.New()
	if n, err := io.Copy(h, io.LimitReader(f, size)); err != nil || n != size {
		return nil
	}
	return h.Sum(nil)
}

func (s *testSource) Release() {
	s.mu.Lock()
	s.released++
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *testSource) releases() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.released
}

// commitSent commits c as upload 1 and waits until it is sent.
func (fx *fixture) commitSent(c Content) {
	fx.t.Helper()
	if err := fx.u.Commit(1, c); err != nil {
		fx.t.Fatal(err)
	}
	fx.waitSent(c.Path)
}

// waitSent waits until upload 1 of path is sent.
func (fx *fixture) waitSent(path string) {
	fx.t.Helper()
	if state, err := fx.waitDone(path, 1); state != "sent" {
		fx.t.Fatalf("state %s: %v", state, err)
	}
}

// startStream starts a stream of seq at path over a fresh staged file.
func (fx *fixture) startStream(seq uint64, path string) (*Stream, *testSource) {
	fx.t.Helper()
	src := newTestSource(StagedPath(fx.staged, seq))
	if err := os.WriteFile(src.path, nil, 0o600); err != nil {
		fx.t.Fatal(err)
	}
	st := fx.u.StartStream(seq, path, src, 1)
	if st == nil {
		fx.t.Fatal("StartStream: no stream")
	}
	src.mu.Lock()
	src.stream = st
	src.mu.Unlock()
	return st, src
}

// waitStreamEnd waits until no stream runs.
func (fx *fixture) waitStreamEnd(src *testSource) {
	fx.t.Helper()
	waitFor(fx.t, "the stream to end", func() bool {
		fx.u.mu.Lock()
		defer fx.u.mu.Unlock()
		return !fx.u.streaming && src.releases() == 1
	})
}

// TestStreamSendsWhileWriting: the body goes out before the commit, the
// server stores nothing until the commit, then the whole content with a
// digest trailer it checks, in one PUT.
func TestStreamSendsWhileWriting(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	fx.u.SetStreams(StreamAlways)
	data := gen(1, 3<<20+17)
	st, src := fx.startStream(1, "s.bin")
	src.write(t, data[:2<<20])
	waitFor(t, "the first bytes at the server", func() bool {
		return fx.origin.Stats("up/s.bin").BytesReceived >= 2<<20
	})
	if _, ok := fx.content("s.bin"); ok {
		t.Fatal("the server has the file before its commit")
	}
	if fx.u.StartStream(2, "other.bin", newTestSource(StagedPath(fx.staged, 2)), 1) != nil {
		t.Error("a second stream started while one runs")
	}
	src.write(t, data[2<<20:])
	c := Content{Path: "s.bin", Size: int64(len(data)), MTime: time.Now(), Mode: 0o644, Stream: st}
	fx.commitSent(c)
	got, _ := fx.content("s.bin")
	if sum(got) != sum(data) {
		t.Fatalf("the server has %d bytes that differ", len(got))
	}
	if s := fx.origin.Stats("up/s.bin"); s.Puts != 1 || s.Statuses[201] != 1 {
		t.Errorf("PUTs %d, statuses %v: want one streamed PUT", s.Puts, s.Statuses)
	}
	fx.waitStreamEnd(src)
}

// TestStreamAbortStoresNothing: a stream abandoned before its commit (the
// file was rewritten out of order, removed, renamed) leaves nothing at the
// server; the commit that follows sends the file normally.
func TestStreamAbortStoresNothing(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	fx.u.SetStreams(StreamAlways)
	st, src := fx.startStream(1, "a.bin")
	src.write(t, gen(1, 1<<20))
	waitFor(t, "the first bytes at the server", func() bool {
		return fx.origin.Stats("up/a.bin").BytesReceived > 0
	})
	st.Abort()
	fx.waitStreamEnd(src)
	if _, ok := fx.content("a.bin"); ok {
		t.Fatal("the server stored an abandoned stream")
	}
	// The commit of an aborted stream queues a plain upload.
	data := gen(2, 1<<20+3)
	c := fx.stage(1, "a.bin", data)
	c.Stream = st
	fx.commitSent(c)
	if got, _ := fx.content("a.bin"); sum(got) != sum(data) {
		t.Fatal("the server has other bytes")
	}
	// Stored once: had the abandoned stream been stored, the commit's PUT
	// (If-None-Match: *) would have got a 412.
	if s := fx.origin.Stats("up/a.bin"); s.Statuses[201] != 1 || s.Statuses[412] != 0 {
		t.Errorf("statuses %v: want one stored", s.Statuses)
	}
}

// TestStreamChangedAfterCommit: a change after the commit, while the
// stream still sends, abandons it; the next commit's content arrives, and
// nothing else was ever stored.
func TestStreamChangedAfterCommit(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	fx.u.SetStreams(StreamAlways)
	st, src := fx.startStream(1, "c.bin")
	first := gen(1, 2<<20)
	src.write(t, first[:1<<20])
	waitFor(t, "the first bytes at the server", func() bool {
		return fx.origin.Stats("up/c.bin").BytesReceived >= 1<<20
	})
	// Committed with 2 MiB of which only 1 MiB is hashed: the stream waits.
	if err := os.WriteFile(src.path, first, 0o600); err != nil {
		t.Fatal(err)
	}
	c := Content{Path: "c.bin", Size: int64(len(first)), MTime: time.Now(), Mode: 0o644, Stream: st}
	if err := fx.u.Commit(1, c); err != nil {
		t.Fatal(err)
	}
	if ok, err := fx.u.Modify(1); !ok || err != nil {
		t.Fatalf("Modify: %v %v", ok, err)
	}
	fx.waitStreamEnd(src)
	final := gen(3, 1<<20+9)
	fx.commit(1, "c.bin", final)
	fx.waitSent("c.bin")
	if got, _ := fx.content("c.bin"); sum(got) != sum(final) {
		t.Fatal("the server has other bytes than the final content")
	}
	if s := fx.origin.Stats("up/c.bin"); s.Statuses[201] != 1 {
		t.Errorf("statuses %v: want one stored", s.Statuses)
	}
}

// TestStreamRefusedFallsBack: a server that wants Content-Length (411 to a
// chunked body) gets the file with a plain PUT, and no more streams.
func TestStreamRefusedFallsBack(t *testing.T) {
	var mu sync.Mutex
	stored := map[string][]byte{}
	digests := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 {
			w.WriteHeader(http.StatusLengthRequired)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		stored[r.URL.Path] = b
		digests[r.URL.Path] = r.Header.Get("Content-Digest")
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	fx := newFixture(t, Options{URL: srv.URL + "/in/", StreamIdle: 5 * time.Minute})
	fx.u.Start()
	fx.u.SetStreams(StreamAlways)
	data := gen(4, 2<<20+1)
	st, src := fx.startStream(1, "r.bin")
	src.write(t, data)
	c := Content{Path: "r.bin", Size: int64(len(data)), MTime: time.Now(), Mode: 0o644, Stream: st}
	fx.commitSent(c)
	mu.Lock()
	got, digest := stored["/in/r.bin"], digests["/in/r.bin"]
	mu.Unlock()
	want := sum(data)
	if sum(got) != want || digest != "sha-256=:"+base64.StdEncoding.EncodeToString(want[:])+":" {
		t.Fatalf("stored %d bytes, digest %q", len(got), digest)
	}
	fx.waitStreamEnd(src)
	if fx.u.StartStream(2, "next.bin", newTestSource(StagedPath(fx.staged, 2)), 1) != nil {
		t.Error("a stream started after the server refused one")
	}
}

// TestStreamStalledFallsBack: a server that takes a stream's request and
// then stops reading and answering cuts it after StallTimeout; the file
// goes with a plain PUT.
func TestStreamStalledFallsBack(t *testing.T) {
	var mu sync.Mutex
	stored := map[string][]byte{}
	streams := 0
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 {
			mu.Lock()
			streams++
			mu.Unlock()
			// Neither reads nor answers. The server notices no client
			// leaving while the body is unread: the test ends it.
			<-release
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		stored[r.URL.Path] = b
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before srv.Close, which waits for the handler
	fx := newFixture(t, Options{URL: srv.URL + "/in/", StreamIdle: 5 * time.Minute, StallTimeout: time.Second})
	fx.u.Start()
	fx.u.SetStreams(StreamAlways)
	data := gen(5, 16<<20)
	st, src := fx.startStream(1, "z.bin")
	src.write(t, data)
	c := Content{Path: "z.bin", Size: int64(len(data)), MTime: time.Now(), Mode: 0o644, Stream: st}
	fx.commitSent(c)
	mu.Lock()
	got, n := stored["/in/z.bin"], streams
	mu.Unlock()
	if sum(got) != sum(data) || n != 1 {
		t.Fatalf("stored %d bytes after %d streams", len(got), n)
	}
	fx.waitStreamEnd(src)
	unblock() // before the leak check
}

// TestStreamAuto: by default a stream starts only when the writer is
// faster than the last plain PUT was, and not before one was timed.
func TestStreamAuto(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	src := newTestSource(StagedPath(fx.staged, 2))
	if err := os.WriteFile(src.path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if fx.u.StartStream(2, "b.bin", src, 1e18) != nil {
		t.Fatal("a stream started before any upload was timed")
	}
	fx.commit(1, "a.bin", gen(1, StreamMinSize))
	fx.waitSent("a.bin")
	if fx.u.StartStream(2, "b.bin", src, 1) != nil {
		t.Fatal("a stream started for a writer slower than the link")
	}
	st := fx.u.StartStream(2, "b.bin", src, 1e18)
	if st == nil {
		t.Fatal("no stream for a writer faster than the link")
	}
	st.Abort()
	fx.waitStreamEnd(src)
	fx.u.SetStreams(StreamNever)
	if fx.u.StartStream(2, "b.bin", newTestSource(src.path), 1e18) != nil {
		t.Fatal("a stream started with streams off")
	}
}
