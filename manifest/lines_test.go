package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// prettyManifest writes n files, each over several lines, indented, with
// the given line ending; entry k gets extra text in place of its size.
func prettyManifest(n int, nl string, k int, extra string) string {
	var b strings.Builder
	b.WriteString("{" + nl + "  \"files\": [" + nl)
	for i := range n {
		if i > 0 {
			b.WriteString("," + nl)
		}
		size := fmt.Sprint(i)
		if i == k {
			size = extra
		}
		fmt.Fprintf(&b, "    {%s      \"path\": \"d%d/f%d\",%s      \"url\": \"https://h/%d\",%s      \"size\": %s%s    }",
			nl, i%10, i, nl, i, nl, size, nl)
	}
	b.WriteString(nl + "  ]" + nl + "}" + nl)
	return b.String()
}

// lineOf returns the line of the first occurrence of marker in s.
func lineOf(t *testing.T, s, marker string) int {
	t.Helper()
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("marker %q not found", marker)
	}
	return strings.Count(s[:i], "\n") + 1
}

// readers wraps a manifest's text in readers that split it differently.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"half", iotest.HalfReader},
	{"onebyte", iotest.OneByteReader},
}

func TestLinesOfEntries(t *testing.T) {
	for _, nl := range []string{"\n", "\r\n"} {
		in := prettyManifest(3000, nl, -1, "")
		for _, rd := range readers {
			m, err := Parse(rd.wrap(strings.NewReader(in)), "test.json", nil)
			if err != nil {
				t.Fatalf("%s %q: %v", rd.name, nl, err)
			}
			for i, f := range m.Files {
				// Each entry takes 5 lines after the 2 opening lines.
				if want := 3 + 5*i; f.Line != want {
					t.Fatalf("%s %q: files[%d].Line = %d, want %d", rd.name, nl, i, f.Line, want)
				}
			}
		}
	}
}

func TestLinesOfErrors(t *testing.T) {
	const n = 3000
	for _, tc := range []struct {
		name, extra, marker, field string
	}{
		{"type", `"12"`, `"12"`, "size"},
		{"syntax", "1,, \"x\": 1", ",,", ""},
		{"syntax on a later line", "1,\n\n  ]", "]", ""},
		{"utf8", "1, \"mtime\": \"\xe2\x82\"", "\xe2", ""},
		{"duplicate", "1, \"path\": \"d0/f0\"", `"path": "d0/f0"`, "path"}, // "path" twice in files[k]
		{"block count", "1,\n\"block_sha256\": {\"block_size\": 1,\n\"hashes\": []}", `"block_sha256"`, "block_sha256.hashes"},
	} {
		for _, k := range []int{0, 1, n / 2, n - 1} {
			in := prettyManifest(n, "\n", k, tc.extra)
			want := lineOf(t, in, tc.marker)
			if tc.name == "duplicate" { // the second "path" of entry k
				want = lineOf(t, in, tc.extra) + lineOf(t, in[strings.Index(in, tc.extra):], tc.marker) - 1
			}
			for _, rd := range readers {
				if rd.name == "onebyte" && k > 1 {
					continue // slow, and the middle is covered by "half"
				}
				_, err := Parse(rd.wrap(strings.NewReader(in)), "test.json", nil)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s k=%d %s: got %v, want an *Error", tc.name, k, rd.name, err)
				}
				if e.Line != want {
					t.Errorf("%s k=%d %s: line %d, want %d (%v)", tc.name, k, rd.name, e.Line, want, err)
				}
				if tc.field != "" && e.Field != fmt.Sprintf("files[%d].%s", k, tc.field) {
					t.Errorf("%s k=%d %s: field %q, want files[%d].%s", tc.name, k, rd.name, e.Field, k, tc.field)
				}
			}
		}
	}
}

// TestLineReaderWindow checks that the line reader keeps only the newlines
// of the part of the input the decoder has not passed yet.
func TestLineReaderWindow(t *testing.T) {
	in := prettyManifest(20000, "\n", -1, "")
	lr := &lineReader{r: strings.NewReader(in)}
	buf := make([]byte, 4096)
	maxKept := 0
	for {
		n, err := lr.Read(buf)
		if n > 0 {
			// Ask for the line of the last byte read, as the parser would
			// for an entry there.
			want := strings.Count(in[:lr.read-1], "\n") + 1
			if got := lr.lineAt(lr.read - 1); got != want {
				t.Fatalf("lineAt(%d) = %d, want %d", lr.read-1, got, want)
			}
			maxKept = max(maxKept, cap(lr.nl))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if maxKept > 4096 {
		t.Errorf("kept room for %d newlines, want at most one read's worth", maxKept)
	}
}

// TestUTF8AcrossReads splits multi-byte characters between reads.
func TestUTF8AcrossReads(t *testing.T) {
	in := manifestOf(`{"path": "é/€/𝄞", "url": "https://h/"}`)
	for _, rd := range readers {
		m, err := Parse(rd.wrap(strings.NewReader(in)), "test.json", nil)
		if err != nil || m.Files[0].Path != "é/€/𝄞" {
			t.Errorf("%s: got %v, %v", rd.name, m, err)
		}
	}
	bad := manifestOf(`{"path": "a", "url": "https://h/"}`, "{\"path\": \"\xf0\x9d\x84\", \"url\": \"https://h/\"}")
	for _, rd := range readers {
		_, err := Parse(rd.wrap(strings.NewReader(bad)), "test.json", nil)
		checkErr(t, errCase{line: 3, msg: "is not UTF-8"}, err)
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	in := manifestOf(`{"path": "a", "url": "https://h/"}`, `{"path": "b", "url": "https://h/"}`)
	r := io.MultiReader(strings.NewReader(in[:len(in)-10]), iotest.ErrReader(boom))
	_, err := Parse(r, "test.json", nil)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, boom) || e.Line != 3 || !strings.Contains(e.Msg, "read: boom") {
		t.Errorf("got %v, want an *Error on line 3 wrapping the read error", err)
	}
	_, err = Parse(iotest.ErrReader(boom), "test.json", nil)
	if !errors.As(err, &e) || !errors.Is(err, boom) || e.Line != 1 {
		t.Errorf("got %v, want an *Error on line 1 wrapping the read error", err)
	}
	// iotest.TimeoutReader fails its second read: data, then an error.
	_, err = Parse(iotest.TimeoutReader(bytes.NewReader([]byte(in))), "test.json", nil)
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("got %v, want the reader's error", err)
	}
}
