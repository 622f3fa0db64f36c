package uploader

import (
	"crypto/sha256"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"ferry/cache"
	"ferry/internal/testutil"
	"ferry/origin"
)

// fixture is an uploader over a real cache (Pebble in a temporary
// directory) sending to a real origin on loopback.
type fixture struct {
	t      *testing.T
	origin *origin.Server
	base   string // origin base URL + "/up/"
	dir    string // cache directory
	staged string
	cache  *cache.Cache
	u      *Uploader
	opts   Options

	mu    sync.Mutex
	done  map[string][]string // path -> states reported by OnDone
	errs  map[string]error    // path -> last OnDone error
	sent  []uint64            // OnSent calls
	doneC chan struct{}       // gets a value on every OnDone
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	checkLeaks(t)
	o := origin.New(origin.Options{})
	base := o.StartTest(t)
	fx := &fixture{t: t, origin: o, base: base + "/up/", dir: t.TempDir(),
		done: map[string][]string{}, errs: map[string]error{}, doneC: make(chan struct{}, 1000)}
	fx.opts = opts
	fx.open()
	return fx
}

// open opens the cache and a new uploader over it (not started).
func (fx *fixture) open() {
	t := fx.t
	t.Helper()
	c, err := cache.Open(fx.dir, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fx.cache = c
	if fx.staged, err = c.OutboxDir(); err != nil {
		t.Fatal(err)
	}
	opts := fx.opts
	if opts.URL == "" {
		opts.URL = fx.base
	}
	opts.StagedDir = fx.staged
	opts.TempDir = fx.dir + "/outbox-tmp"
	if opts.Backoff == 0 {
		opts.Backoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	opts.OnSent = func(seq uint64) {
		fx.mu.Lock()
		fx.sent = append(fx.sent, seq)
		fx.mu.Unlock()
	}
	opts.OnDone = func(path, state string, err error) {
		fx.mu.Lock()
		fx.done[path] = append(fx.done[path], state)
		fx.errs[path] = err
		fx.mu.Unlock()
		fx.doneC <- struct{}{}
	}
	u, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	fx.u = u
	t.Cleanup(fx.close)
}

// close stops the uploader and closes the cache (again is fine).
func (fx *fixture) close() {
	if fx.u != nil {
		if err := fx.u.Close(); err != nil {
			fx.t.Error(err)
		}
		fx.u = nil
	}
	if fx.cache != nil {
		if err := fx.cache.Close(); err != nil {
			fx.t.Error(err)
		}
		fx.cache = nil
	}
}

// stage writes data as the staged file of seq and returns its Content.
func (fx *fixture) stage(seq uint64, path string, data []byte) Content {
	fx.t.Helper()
	if err := os.WriteFile(StagedPath(fx.staged, seq), data, 0o600); err != nil {
		fx.t.Fatal(err)
	}
	return Content{Path: path, Size: int64(len(data)), MTime: time.Now(), Mode: 0o644}
}

// commit stages data and commits it.
func (fx *fixture) commit(seq uint64, path string, data []byte) {
	fx.t.Helper()
	if err := fx.u.Commit(seq, fx.stage(seq, path, data)); err != nil {
		fx.t.Fatal(err)
	}
}

// waitDone waits until path was reported n times, and returns the last
// state.
func (fx *fixture) waitDone(path string, n int) (string, error) {
	fx.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		fx.mu.Lock()
		states, err := fx.done[path], fx.errs[path]
		fx.mu.Unlock()
		if len(states) >= n {
			return states[len(states)-1], err
		}
		select {
		case <-fx.doneC:
		case <-deadline:
			fx.t.Fatalf("%s: no outcome after 60s (status %+v)", path, fx.status(path))
		}
	}
}

func (fx *fixture) status(path string) []Status {
	var out []Status
	for _, e := range fx.u.Entries() {
		if e.Path == path {
			st, _ := fx.u.Status(e.Seq)
			out = append(out, st)
		}
	}
	return out
}

// waitFor polls cond (the state of a running upload has no event) until
// it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// content returns the origin's object at path relative to the upload base.
func (fx *fixture) content(path string) ([]byte, bool) {
	return fx.origin.Content("up/" + path)
}

func gen(seed uint64, n int) []byte {
	p := make([]byte, n)
	origin.GeneratedBytes(seed, 0, p)
	return p
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// testLogger is the shared test logger (internal/testutil).
func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t) }

// checkLeaks fails the test when goroutines of this package or of HTTP
// connections outlive it (internal/testutil). Register it first.
func checkLeaks(t *testing.T) {
	testutil.CheckLeaks(t, "ferry/uploader.", "net/http.(*persistConn)")
}
