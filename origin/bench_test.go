package origin

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkGenerated measures content generation alone.
func BenchmarkGenerated(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	var off int64
	for b.Loop() {
		GeneratedBytes(1, off, buf)
		off += int64(len(buf))
	}
}

// BenchmarkServeGenerated64MiB measures one whole GET of a generated 64 MiB
// object over loopback, read by net/http's client.
func BenchmarkServeGenerated64MiB(b *testing.B) {
	s := New(Options{})
	s.StartTest(b)
	s.PutGenerated("f", 64<<20, 1)
	tr := &http.Transport{}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	buf := make([]byte, 1<<20)
	b.SetBytes(64 << 20)
	for b.Loop() {
		resp, err := c.Get(s.URL("f"))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, onlyReader{resp.Body}, buf)
		resp.Body.Close()
		if err != nil || n != 64<<20 {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}

// onlyReader hides WriterTo so that CopyBuffer uses the buffer given.
type onlyReader struct{ io.Reader }
