package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// tusCreate creates an upload of path and returns its URL (absolute).
func (h *harness) tusCreate(path string, length int64, hdr ...string) string {
	h.t.Helper()
	hdr = append([]string{"Tus-Resumable", "1.0.0", "Upload-Length", strconv.FormatInt(length, 10)}, hdr...)
	resp, body, err := h.do(http.MethodPost, path, nil, hdr...)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != 201 {
		h.t.Fatalf("creation: %s %s", resp.Status, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("tus") == "" {
		h.t.Fatalf("Location %q", resp.Header.Get("Location"))
	}
	base, _ := url.Parse(h.base)
	return base.ResolveReference(loc).String()
}

// tusDo sends a tus request to an upload URL.
func (h *harness) tusDo(method, u string, body []byte, hdr ...string) (*http.Response, []byte, error) {
	h.t.Helper()
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequest(method, u, bytes.NewReader(body))
	} else {
		req, err = http.NewRequest(method, u, nil)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/offset+octet-stream")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes(), err
}

func (h *harness) tusOffset(u string) int64 {
	h.t.Helper()
	resp, _, err := h.tusDo(http.MethodHead, u, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	wantStatus(h.t, resp, 200)
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		h.t.Fatalf("Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return off
}

func TestTusOptions(t *testing.T) {
	h := newHarness(t)
	resp, _, err := h.do(http.MethodOptions, "any", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if resp.Header.Get("Tus-Version") != "1.0.0" || resp.Header.Get("Tus-Extension") != "creation,termination" {
		t.Errorf("headers %v", resp.Header)
	}
}

func TestTusUploadInPieces(t *testing.T) {
	h := newHarness(t)
	data := gen(5, 0, 300000)
	sum := sha256.Sum256(data)
	u := h.tusCreate("in/a b.bin", int64(len(data)),
		"Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte("a b.bin"))+
			",sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	if off := h.tusOffset(u); off != 0 {
		t.Fatalf("new upload at %d", off)
	}
	resp, _, err := h.tusDo(http.MethodPatch, u, data[:100000], "Upload-Offset", "0")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if resp.Header.Get("Upload-Offset") != "100000" {
		t.Fatalf("Upload-Offset after PATCH: %q", resp.Header.Get("Upload-Offset"))
	}
	// A PATCH at the wrong offset is refused and changes nothing.
	resp, _, err = h.tusDo(http.MethodPatch, u, data[50000:60000], "Upload-Offset", "50000")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 409)
	if off := h.tusOffset(u); off != 100000 {
		t.Fatalf("offset %d after a refused PATCH", off)
	}
	if _, ok := h.s.Object("in/a b.bin"); ok {
		t.Fatal("stored before complete")
	}
	resp, _, err = h.tusDo(http.MethodPatch, u, data[100000:], "Upload-Offset", "100000")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if got, ok := h.s.Content("in/a b.bin"); !ok || !bytes.Equal(got, data) {
		t.Fatal("stored content differs")
	}
	if off := h.tusOffset(u); off != int64(len(data)) {
		t.Errorf("finished upload reports offset %d", off)
	}
	st := h.s.Stats("in/a b.bin")
	if st.BytesReceived != int64(len(data)) || st.Puts != 0 { // the refused PATCH was not read
		t.Errorf("stats %+v", st)
	}
}

func TestTusResumesAfterReset(t *testing.T) {
	h := newHarness(t)
	data := gen(6, 0, 1<<20)
	u := h.tusCreate("r.bin", int64(len(data)))
	h.s.SetFaults("r.bin", Faults{ResetAfter: 200000, ResetCount: 1})
	if resp, _, err := h.tusDo(http.MethodPatch, u, data, "Upload-Offset", "0"); err == nil {
		t.Fatalf("PATCH across a reset: %s", resp.Status)
	}
	off := h.tusOffset(u)
	if off != 200000 {
		t.Fatalf("offset after the reset %d, want 200000 (every byte read is kept)", off)
	}
	if got, ok := h.s.TusOffset("r.bin"); !ok || got != off {
		t.Errorf("TusOffset = %d, %v", got, ok)
	}
	resp, _, err := h.tusDo(http.MethodPatch, u, data[off:], "Upload-Offset", strconv.FormatInt(off, 10))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if got, _ := h.s.Content("r.bin"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if st := h.s.Stats("r.bin"); st.BytesReceived != int64(len(data)) || st.Resets != 1 {
		t.Errorf("stats %+v: every byte should have crossed the wire once", st)
	}
	if _, ok := h.s.TusOffset("r.bin"); ok {
		t.Error("TusOffset reports a finished upload")
	}
}

func TestTusPreconditionsAndChecksum(t *testing.T) {
	h := newHarness(t)
	h.s.Put("exists", []byte("old"))
	resp, _, err := h.do(http.MethodPost, "exists", nil, "Tus-Resumable", "1.0.0", "Upload-Length", "3", "If-None-Match", "*")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 412)

	// The object appears while the upload runs: refused at completion.
	u := h.tusCreate("late", 3, "If-None-Match", "*")
	h.s.Put("late", []byte("abc"))
	resp, _, err = h.tusDo(http.MethodPatch, u, []byte("xyz"), "Upload-Offset", "0")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 412)
	if got, _ := h.s.Content("late"); string(got) != "abc" {
		t.Errorf("content %q replaced", got)
	}

	sum := sha256.Sum256([]byte("right"))
	u = h.tusCreate("sum", 5, "Upload-Metadata", "sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	resp, _, err = h.tusDo(http.MethodPatch, u, []byte("wrong"), "Upload-Offset", "0")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 460)
	if _, ok := h.s.Object("sum"); ok {
		t.Error("stored an upload whose digest differs")
	}

	// Missing Tus-Resumable, bad metadata, no length, an unknown upload.
	for _, tc := range []struct {
		hdr  []string
		code int
	}{
		{[]string{"Upload-Length", "3"}, 405}, // not tus: a plain POST
		{[]string{"Tus-Resumable", "0.2.2", "Upload-Length", "3"}, 412},
		{[]string{"Tus-Resumable", "1.0.0", "Upload-Length", "3", "Upload-Metadata", "sha256 !!"}, 400},
		{[]string{"Tus-Resumable", "1.0.0", "Upload-Length", "3", "Upload-Metadata", "sha256 " + base64.StdEncoding.EncodeToString([]byte("short"))}, 400},
		{[]string{"Tus-Resumable", "1.0.0"}, 400},
	} {
		resp, _, err := h.do(http.MethodPost, "x", nil, tc.hdr...)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.code {
			t.Errorf("POST %q: %s, want %d", tc.hdr, resp.Status, tc.code)
		}
	}
	resp, _, err = h.tusDo(http.MethodHead, h.s.URL("x")+"?tus=999", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 404)
}

func TestTusEmptyUploadCompletesAtCreation(t *testing.T) {
	h := newHarness(t)
	u := h.tusCreate("empty", 0)
	if got, ok := h.s.Content("empty"); !ok || len(got) != 0 {
		t.Fatalf("empty upload: %q, %v", got, ok)
	}
	if off := h.tusOffset(u); off != 0 {
		t.Errorf("offset %d", off)
	}
}

func TestTusTooLongAndDelete(t *testing.T) {
	h := newHarness(t)
	u := h.tusCreate("long", 4)
	resp, _, err := h.tusDo(http.MethodPatch, u, []byte("12345"), "Upload-Offset", "0")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 400)
	if _, ok := h.s.Object("long"); ok {
		t.Error("stored an overlong upload")
	}
	u = h.tusCreate("del", 10)
	resp, _, err = h.tusDo(http.MethodDelete, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	resp, _, err = h.tusDo(http.MethodHead, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 404)
}

func TestTusStatusFaultApplies(t *testing.T) {
	h := newHarness(t)
	h.s.SetFaults("f", Faults{Status: 503, StatusCount: 1, RetryAfter: "1"})
	resp, _, err := h.do(http.MethodPost, "f", nil, "Tus-Resumable", "1.0.0", "Upload-Length", "1")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 503)
	u := h.tusCreate("f", 1)
	resp, _, err = h.tusDo(http.MethodPatch, u, []byte("z"), "Upload-Offset", "0")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 204)
	if st := h.s.Stats("f"); st.Statuses[503] != 1 || st.Statuses[201] != 1 || st.Statuses[204] != 1 {
		t.Errorf("statuses %v", st.Statuses)
	}
}
