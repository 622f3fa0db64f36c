package origin

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestRangeForms(t *testing.T) {
	h := newHarness(t)
	data := gen(7, 0, 1000)
	h.s.Put("a/obj.bin", data)
	info, _ := h.s.Object("a/obj.bin")

	tests := []struct {
		rng          string
		code         int
		contentRange string
		from, to     int // body is data[from:to]
	}{
		{"", 200, "", 0, 1000},
		{"bytes=0-0", 206, "bytes 0-0/1000", 0, 1},
		{"bytes=10-19", 206, "bytes 10-19/1000", 10, 20},
		{"bytes=990-", 206, "bytes 990-999/1000", 990, 1000},
		{"bytes=990-5000", 206, "bytes 990-999/1000", 990, 1000},
		{"bytes=-10", 206, "bytes 990-999/1000", 990, 1000},
		{"bytes=-2000", 206, "bytes 0-999/1000", 0, 1000},
		{"bytes=0-", 206, "bytes 0-999/1000", 0, 1000},
		{"bytes = 5 - 9", 206, "bytes 5-9/1000", 5, 10},
		{"bytes=999-999", 206, "bytes 999-999/1000", 999, 1000},
		{"bytes=0-1,5-6", 200, "", 0, 1000}, // several ranges: whole body
		{"items=0-1", 200, "", 0, 1000},     // other unit: ignored
		{"bytes=5-2", 200, "", 0, 1000},     // malformed: ignored
		{"bytes=abc", 200, "", 0, 1000},     // malformed: ignored
		{"bytes=+1-2", 200, "", 0, 1000},    // malformed: ignored
		{"bytes=1000-", 416, "bytes */1000", 0, 0},
		{"bytes=5000-6000", 416, "bytes */1000", 0, 0},
		{"bytes=-0", 416, "bytes */1000", 0, 0},
	}
	for _, tc := range tests {
		var hdr []string
		if tc.rng != "" {
			hdr = []string{"Range", tc.rng}
		}
		resp, body := h.get("a/obj.bin", hdr...)
		if resp.StatusCode != tc.code {
			t.Errorf("Range %q: status %d, want %d", tc.rng, resp.StatusCode, tc.code)
			continue
		}
		if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
			t.Errorf("Range %q: Content-Range %q, want %q", tc.rng, got, tc.contentRange)
		}
		if tc.code == 416 {
			continue
		}
		if want := data[tc.from:tc.to]; !bytes.Equal(body, want) {
			t.Errorf("Range %q: body of %d bytes differs from data[%d:%d]", tc.rng, len(body), tc.from, tc.to)
		}
		if resp.ContentLength != int64(tc.to-tc.from) {
			t.Errorf("Range %q: Content-Length %d, want %d", tc.rng, resp.ContentLength, tc.to-tc.from)
		}
		if resp.Header.Get("ETag") != info.ETag || resp.Header.Get("Accept-Ranges") != "bytes" ||
			resp.Header.Get("Last-Modified") != info.LastModified.Format(http.TimeFormat) {
			t.Errorf("Range %q: validators %v, want ETag %s", tc.rng, resp.Header, info.ETag)
		}
	}
}

func TestEmptyObject(t *testing.T) {
	h := newHarness(t)
	h.s.Put("empty", nil)
	resp, body := h.get("empty")
	wantStatus(t, resp, 200)
	if len(body) != 0 || resp.ContentLength != 0 {
		t.Fatalf("body %d bytes, Content-Length %d", len(body), resp.ContentLength)
	}
	for _, rng := range []string{"bytes=0-", "bytes=-1", "bytes=0-0"} {
		resp, _ := h.get("empty", "Range", rng)
		wantStatus(t, resp, 416)
		if got := resp.Header.Get("Content-Range"); got != "bytes */0" {
			t.Errorf("Range %q: Content-Range %q", rng, got)
		}
	}
}

func TestIfRange(t *testing.T) {
	h := newHarness(t)
	h.s.Put("f", gen(1, 0, 100))
	old, _ := h.s.Object("f")
	newData := gen(2, 0, 100)
	h.s.Put("f", newData)
	cur, _ := h.s.Object("f")
	lm := cur.LastModified.Format(http.TimeFormat)

	tests := []struct {
		name    string
		ifRange string
		code    int
	}{
		{"current etag", cur.ETag, 206},
		{"old etag", old.ETag, 200},
		{"weak current etag", "W/" + cur.ETag, 200},
		{"current date", lm, 206},
		{"old date", old.LastModified.Format(http.TimeFormat), 200},
		{"later date", cur.LastModified.Add(time.Hour).Format(http.TimeFormat), 200},
		{"garbage", "yesterday", 200},
	}
	for _, tc := range tests {
		resp, body := h.get("f", "Range", "bytes=10-19", "If-Range", tc.ifRange)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.code)
			continue
		}
		want := newData[10:20]
		if tc.code == 200 {
			want = newData
		}
		if !bytes.Equal(body, want) {
			t.Errorf("%s: wrong body (%d bytes)", tc.name, len(body))
		}
	}
}

func TestHead(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("g", 5000, 3)
	info, _ := h.s.Object("g")
	resp, body, err := h.do(http.MethodHead, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 200)
	if len(body) != 0 || resp.ContentLength != 5000 || resp.Header.Get("ETag") != info.ETag ||
		resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("HEAD: body %d bytes, headers %v", len(body), resp.Header)
	}
	resp, _, err = h.do(http.MethodHead, "g", nil, "Range", "bytes=100-199")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 206)
	if resp.Header.Get("Content-Range") != "bytes 100-199/5000" || resp.ContentLength != 100 {
		t.Fatalf("HEAD with Range: %v", resp.Header)
	}
	st := h.s.Stats("g")
	if st.HeadRequests != 2 || st.RangeRequests != 1 || st.BytesSent != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := newHarness(t)
	resp, _ := h.get("missing")
	wantStatus(t, resp, 404)
	h.s.Put("x", []byte("x"))
	h.s.Remove("x")
	resp, _ = h.get("x")
	wantStatus(t, resp, 404)
	if _, ok := h.s.Object("x"); ok {
		t.Fatal("Object after Remove")
	}
	resp, _, err := h.do(http.MethodPost, "x", []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, resp, 405)
	if st := h.s.Stats("missing"); st.Statuses[404] != 1 || st.Requests != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConditionalGet(t *testing.T) {
	h := newHarness(t)
	h.s.Put("c", []byte("hello"))
	info, _ := h.s.Object("c")
	resp, body := h.get("c", "If-None-Match", info.ETag)
	wantStatus(t, resp, 304)
	if len(body) != 0 {
		t.Fatalf("304 with a body of %d bytes", len(body))
	}
	resp, _ = h.get("c", "If-None-Match", `"other"`)
	wantStatus(t, resp, 200)
	resp, _ = h.get("c", "If-Match", `"other"`)
	wantStatus(t, resp, 412)
	resp, _ = h.get("c", "If-Match", info.ETag)
	wantStatus(t, resp, 200)
}

func TestVersions(t *testing.T) {
	h := newHarness(t)
	var prev ObjectInfo
	for i := range 3 {
		h.s.Put("v", []byte("same bytes"))
		info, ok := h.s.Object("v")
		if !ok || info.Size != 10 || info.Generated {
			t.Fatalf("Object: %+v %v", info, ok)
		}
		if i > 0 && (info.ETag == prev.ETag || !info.LastModified.After(prev.LastModified) || info.Version <= prev.Version) {
			t.Fatalf("version %d %+v does not follow %+v", i, info, prev)
		}
		if info.ETag[0] != '"' || info.ETag[len(info.ETag)-1] != '"' {
			t.Fatalf("ETag %s not quoted", info.ETag)
		}
		resp, _ := h.get("v")
		if resp.Header.Get("ETag") != info.ETag || resp.Header.Get("Last-Modified") != info.LastModified.Format(http.TimeFormat) {
			t.Fatalf("served validators %v, want %+v", resp.Header, info)
		}
		prev = info
	}
}

func TestURLEscapes(t *testing.T) {
	h := newHarness(t)
	h.s.Put("dir/a b%c?.bin", []byte("odd"))
	u := h.s.URL("dir/a b%c?.bin")
	if want := h.base + "/dir/a%20b%25c%3F.bin"; u != want {
		t.Fatalf("URL %q, want %q", u, want)
	}
	resp, body := h.get("dir/a b%c?.bin")
	wantStatus(t, resp, 200)
	if string(body) != "odd" {
		t.Fatalf("body %q", body)
	}
	if st := h.s.Stats("/dir/a b%c?.bin"); st.Requests != 1 || st.BytesSent != 3 {
		t.Fatalf("stats %+v", st)
	}
	if got := strconv.Itoa(int(h.s.TotalBytesSent())); got != "3" {
		t.Fatalf("TotalBytesSent %s", got)
	}
}
