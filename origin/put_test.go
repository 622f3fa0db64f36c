package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

func TestPutStoresAndServes(t *testing.T) {
	h := newHarness(t)
	data := gen(1, 0, 70000)
	resp, _, err := h.do(http.MethodPut, "up/a.bin", data)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 201)
	info, ok := h.s.Object("up/a.bin")
	if !ok || info.Size != 70000 || resp.Header.Get("ETag") != info.ETag {
		t.Fatalf("after PUT: %+v %v, ETag %q", info, ok, resp.Header.Get("ETag"))
	}
	if got, _ := h.s.Content("up/a.bin"); !bytes.Equal(got, data) {
		t.Fatal("stored content differs")
	}
	resp, body := h.get("up/a.bin", "Range", "bytes=100-199")
	wantStatus(t, resp, 206)
	if !bytes.Equal(body, data[100:200]) {
		t.Fatal("served range differs")
	}

	resp, _, err = h.do(http.MethodPut, "up/a.bin", []byte("v2"))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if got, _ := h.s.Content("up/a.bin"); string(got) != "v2" {
		t.Fatalf("replaced content %q", got)
	}
	st := h.s.Stats("up/a.bin")
	if st.Puts != 2 || st.BytesReceived != 70002 || st.Statuses[201] != 1 || st.Statuses[204] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPutPreconditions(t *testing.T) {
	h := newHarness(t)
	resp, _, err := h.do(http.MethodPut, "p", []byte("one"), "If-None-Match", "*")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 201)
	resp, _, err = h.do(http.MethodPut, "p", []byte("two"), "If-None-Match", "*")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 412)
	info, _ := h.s.Object("p")
	resp, _, err = h.do(http.MethodPut, "p", []byte("three"), "If-Match", `"stale"`)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 412)
	resp, _, err = h.do(http.MethodPut, "p", []byte("four"), "If-Match", info.ETag)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if got, _ := h.s.Content("p"); string(got) != "four" {
		t.Fatalf("content %q", got)
	}
}

func TestPutDigest(t *testing.T) {
	h := newHarness(t)
	data := []byte("digest me")
	for _, tc := range []struct {
		name, digest string
		code         int
	}{
		{"match", digestOf(data), 201},
		{"match among others", "sha-512=:AAAA:, " + digestOf(data), 204},
		{"other algorithm only", "md5=:AAAA:", 204},
		{"mismatch", digestOf([]byte("other")), 400},
		{"malformed", "sha-256=abc", 400},
		{"short", "sha-256=:AAAA:", 400},
	} {
		resp, body, err := h.do(http.MethodPut, "d", data, "Content-Digest", tc.digest)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d (%s), want %d", tc.name, resp.StatusCode, body, tc.code)
		}
	}
	if st := h.s.Stats("d"); st.Statuses[400] != 3 {
		t.Fatalf("stats %+v", st)
	}
	h.s.Remove("d")
	resp, _, err := h.do(http.MethodPut, "d", data, "Content-Digest", digestOf([]byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 400)
	if _, ok := h.s.Object("d"); ok {
		t.Fatal("a body with a wrong digest was stored")
	}
}

func TestPutContentEncoding(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("compressible "), 10000)

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zs := enc.EncodeAll(data, nil)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		coding string
		wire   []byte
	}{{"gzip", gz.Bytes()}, {"zstd", zs}} {
		path := "enc/" + tc.coding
		// The digest covers the body as sent (RFC 9530 Content-Digest).
		resp, body, err := h.do(http.MethodPut, path, tc.wire, "Content-Encoding", tc.coding, "Content-Digest", digestOf(tc.wire))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 201 {
			t.Fatalf("%s: status %d: %s", tc.coding, resp.StatusCode, body)
		}
		if got, _ := h.s.Content(path); !bytes.Equal(got, data) {
			t.Fatalf("%s: stored %d bytes, want the decoded %d", tc.coding, len(got), len(data))
		}
		if st := h.s.Stats(path); st.BytesReceived != int64(len(tc.wire)) {
			t.Fatalf("%s: BytesReceived %d, want the %d sent", tc.coding, st.BytesReceived, len(tc.wire))
		}
	}

	resp, _, err := h.do(http.MethodPut, "enc/br", data, "Content-Encoding", "br")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 415)
	resp, _, err = h.do(http.MethodPut, "enc/bad", []byte("not gzip at all"), "Content-Encoding", "gzip")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 400)
}

func TestPutFaults(t *testing.T) {
	h := newHarness(t)
	h.s.SetFaults("u", Faults{Status: 503, StatusCount: 1, RetryAfter: "2"})
	resp, _, err := h.do(http.MethodPut, "u", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 503)
	if resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if _, ok := h.s.Object("u"); ok {
		t.Fatal("stored under a Status fault")
	}

	h.s.SetFaults("u", Faults{ResetAfter: 10000, ResetCount: 1})
	data := gen(3, 0, 1<<20)
	if resp, _, err := h.do(http.MethodPut, "u", data); err == nil {
		t.Fatalf("PUT after a reset: %s", resp.Status)
	}
	if _, ok := h.s.Object("u"); ok {
		t.Fatal("stored a cut upload")
	}
	if st := h.s.Stats("u"); st.BytesReceived != 10000 || st.Resets != 1 {
		t.Fatalf("stats %+v", st)
	}
	resp, _, err = h.do(http.MethodPut, "u", data)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 201)
	if got, _ := h.s.Content("u"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

func TestPutTooLarge(t *testing.T) {
	checkLeaks(t)
	s := New(Options{MaxUploadSize: 1000})
	s.StartTest(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequest(http.MethodPut, s.URL("big"), bytes.NewReader(make([]byte, 1001)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	wantStatus(t, resp, 413)
}
