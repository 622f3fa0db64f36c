package fetcher

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"ferry/manifest"
	"ferry/origin"
)

// Warm opens a connection before the first read, and the read uses it.
func TestWarmConnectionServesFirstRead(t *testing.T) {
	checkLeaks(t)
	o := origin.New(origin.Options{})
	o.PutGenerated("w.bin", 4*testBS, 31)
	var conns, heads atomic.Int64
	h := o.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			heads.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	f := New(Options{MaxConns: 2})
	t.Cleanup(func() { f.Close() })
	url := srv.URL + "/w.bin"
	f.Warm([]string{url, url, "://bad", srv.URL + "/other"}) // one host: one request
	f.warming.Wait()
	if c, n := conns.Load(), heads.Load(); c != 1 || n != 1 {
		t.Fatalf("after Warm: %d connections, %d HEAD requests; want 1 and 1", c, n)
	}
	st := newMemStore(testBS)
	fl := f.Add(Spec{Path: "w.bin", URL: url, Size: 4 * testBS, Priority: manifest.Normal}, st)
	if err := fl.Ensure(context.Background(), 3*testBS, 10); err != nil {
		t.Fatal(err)
	}
	if got, ok := st.bytes(3*testBS, 10); !ok || string(got) != string(want(31, 3*testBS, 10)) {
		t.Fatal("wrong bytes after the read")
	}
	if c := conns.Load(); c != 1 {
		t.Errorf("the first read opened a connection of its own (%d in all); want the warm one used", c)
	}
}
