package manifest

import (
	"bytes"
	"errors"
	"math/bits"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks properties of Parse on any input: it never panics; an
// error is an *Error with a line that does not show expanded variables; a
// manifest it returns passes Validate, has every field in range, and
// formatting and parsing it again gives the same manifest.
//
// The seed corpus is testdata/fuzz/FuzzParse plus the golden inputs.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/good/*.json", "testdata/bad/*.json"} {
		names, _ := filepath.Glob(pattern)
		for _, name := range names {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data), "fuzz.json", lookupTest)
		if err != nil {
			if m != nil {
				t.Errorf("Parse returned a manifest and the error %v", err)
			}
			checkErrLine(t, err)
			if !bytes.Contains(data, []byte(testEnv["TOKEN"])) && strings.Contains(err.Error(), testEnv["TOKEN"]) {
				t.Errorf("error %v shows the value of an environment variable", err)
			}
			return
		}
		if err := Validate(m, "fuzz.json"); err != nil {
			t.Errorf("Validate rejects what Parse accepted: %v", err)
		}
		checkRanges(t, m)
		checkRoundTrip(t, m)
	})
}

// checkErrLine checks that err is an *Error with a line.
func checkErrLine(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, want a *Error", err, err)
	}
	if e.Line < 1 {
		t.Fatalf("error %v has line %d, want >= 1", err, e.Line)
	}
	if e.Msg == "" {
		t.Fatalf("error %v has no message", err)
	}
}

// checkRanges checks every field of m against the format's rules. It is
// written apart from the parser's own checks, on purpose.
func checkRanges(t *testing.T, m *Manifest) {
	t.Helper()
	paths := make(map[string]bool)
	for _, f := range m.Files {
		paths[f.Path] = true
	}
	lastLine := 0
	for i, f := range m.Files {
		if f.Line < max(lastLine, 1) {
			t.Errorf("files[%d].Line = %d, after %d", i, f.Line, lastLine)
		}
		lastLine = f.Line
		checkRangePath(t, f.Path)
		for dir := f.Path; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndexByte(dir, '/')]
			if paths[dir] {
				t.Errorf("file %q is also the directory of %q", dir, f.Path)
			}
		}
		checkRangeURL(t, f.URL)
		for _, u := range f.Mirrors {
			checkRangeURL(t, u)
		}
		if f.Mirrors != nil && len(f.Mirrors) == 0 {
			t.Errorf("files[%d].Mirrors is empty but not nil", i)
		}
		if f.Size < -1 || f.Size > 1<<62 {
			t.Errorf("files[%d].Size = %d", i, f.Size)
		}
		if f.SHA256 != "" && (len(f.SHA256) != 64 || strings.Trim(f.SHA256, "0123456789abcdef") != "") {
			t.Errorf("files[%d].SHA256 = %q", i, f.SHA256)
		}
		if !f.MTime.IsZero() && (f.MTime.Location().String() != "UTC" || f.MTime.Year() < 0 || f.MTime.Year() > 9999) {
			t.Errorf("files[%d].MTime = %v", i, f.MTime)
		}
		if f.Priority < Low || f.Priority > Foreground {
			t.Errorf("files[%d].Priority = %d", i, f.Priority)
		}
		checkRangeHeaders(t, f.Headers)
		if b := f.Blocks; b != nil {
			if b.BlockSize < 1 || b.BlockSize > 1<<30 || bits.OnesCount64(uint64(b.BlockSize)) != 1 {
				t.Errorf("files[%d].Blocks.BlockSize = %d", i, b.BlockSize)
			}
			if f.Size >= 0 && int64(len(b.Hashes)) != (f.Size+b.BlockSize-1)/b.BlockSize {
				t.Errorf("files[%d] has %d block hashes for size %d and block size %d", i, len(b.Hashes), f.Size, b.BlockSize)
			}
		}
	}
	if o := m.Outbox; o != nil {
		if o.Line < 1 {
			t.Errorf("Outbox.Line = %d", o.Line)
		}
		checkRangePath(t, o.Dir)
		checkRangeURL(t, o.URL)
		if !strings.HasSuffix(o.URL, "/") || strings.Contains(o.URL, "?") {
			t.Errorf("Outbox.URL = %q", o.URL)
		}
		if o.Protocol != "put" && o.Protocol != "tus" {
			t.Errorf("Outbox.Protocol = %q", o.Protocol)
		}
		if o.Encoding != "" && o.Encoding != "gzip" && o.Encoding != "zstd" {
			t.Errorf("Outbox.Encoding = %q", o.Encoding)
		}
		checkRangeHeaders(t, o.Headers)
		for p := range paths {
			if p == o.Dir || strings.HasPrefix(p, o.Dir+"/") || strings.HasPrefix(o.Dir, p+"/") {
				t.Errorf("file %q collides with the outbox %q", p, o.Dir)
			}
		}
	}
}

func checkRangePath(t *testing.T, p string) {
	t.Helper()
	if p == "" || len(p) > 4096 || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
		t.Errorf("path %q", p)
		return
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > 255 {
			t.Errorf("path %q has the segment %q", p, seg)
		}
	}
}

func checkRangeURL(t *testing.T, s string) {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || strings.Contains(s, "#") {
		t.Errorf("URL %q (%v)", s, err)
	}
}

func checkRangeHeaders(t *testing.T, h map[string]string) {
	t.Helper()
	if h != nil && len(h) == 0 {
		t.Error("headers are empty but not nil")
	}
	lower := make(map[string]bool)
	for name, v := range h {
		if name == "" || strings.ContainsAny(name, " \t\r\n:()<>@,;\\\"/[]?={}") || lower[strings.ToLower(name)] {
			t.Errorf("header name %q", name)
		}
		lower[strings.ToLower(name)] = true
		for _, c := range []byte(v) {
			if c < ' ' && c != '\t' || c == 0x7f {
				t.Errorf("header %q has the value %q", name, v)
			}
		}
	}
}

// checkRoundTrip checks that Parse(Format(m)) equals m apart from lines,
// puts files[i] on line i+2, and formats to the same bytes again.
func checkRoundTrip(t *testing.T, m *Manifest) {
	t.Helper()
	out, err := Format(m)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	m2, err := Parse(bytes.NewReader(out), "formatted.json", lookupTest)
	if err != nil {
		t.Fatalf("Parse(Format(m)): %v\n%s", err, out)
	}
	for i, f := range m2.Files {
		if f.Line != i+2 {
			t.Errorf("formatted files[%d] is on line %d, want %d", i, f.Line, i+2)
		}
	}
	if m2.Outbox != nil && m2.Outbox.Line != len(m2.Files)+3 {
		t.Errorf("formatted outbox is on line %d, want %d", m2.Outbox.Line, len(m2.Files)+3)
	}
	if a, b := withoutLines(m), withoutLines(m2); !reflect.DeepEqual(a, b) {
		t.Errorf("Parse(Format(m)) differs from m\nm:  %+v\nm2: %+v\nformatted:\n%s", a, b, out)
	}
	out2, err := Format(m2)
	if err != nil || !bytes.Equal(out, out2) {
		t.Errorf("Format is not stable: %v\n%s\n%s", err, out, out2)
	}
}

// withoutLines returns a copy of m with every Line zero.
func withoutLines(m *Manifest) *Manifest {
	c := &Manifest{Files: append([]File(nil), m.Files...)}
	for i := range c.Files {
		c.Files[i].Line = 0
	}
	if m.Outbox != nil {
		o := *m.Outbox
		o.Line = 0
		c.Outbox = &o
	}
	return c
}
