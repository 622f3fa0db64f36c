package manifest

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func validManifest() *Manifest {
	return &Manifest{
		Files: []File{
			{Path: "a/b.bin", URL: "https://h/b", Size: 10, Priority: High, Line: 2,
				Headers: map[string]string{"Authorization": "Bearer x"},
				Blocks:  &BlockHashes{BlockSize: 4, Hashes: make([][32]byte, 3)}},
			{Path: "a/c.bin", URL: "http://h/c", Size: -1, Priority: Low, Line: 3,
				MTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))},
		},
		Outbox: &Outbox{Dir: "out", URL: "https://h/in/", Protocol: "put", Line: 5},
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(validManifest(), "mem"); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(m *Manifest)
		line   int
		field  string
		msg    string
	}{
		{"path", func(m *Manifest) { m.Files[1].Path = "a/../x" }, 3, "files[1].path", "leaves the mount"},
		{"duplicate", func(m *Manifest) { m.Files[1].Path = "a/b.bin" }, 3, "files[1].path", "listed twice (first as files[0] on line 2"},
		{"file is dir", func(m *Manifest) { m.Files[1].Path = "a" }, 3, "files[1].path", "makes it a directory"},
		{"url", func(m *Manifest) { m.Files[0].URL = "gopher://h/" }, 2, "files[0].url", `has scheme "gopher"`},
		{"size", func(m *Manifest) { m.Files[0].Size = -2 }, 2, "files[0].size", "out of range"},
		{"sha upper", func(m *Manifest) { m.Files[0].SHA256 = strings.Repeat("A", 64) }, 2, "files[0].sha256", "lowercase"},
		{"mtime", func(m *Manifest) { m.Files[1].MTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, 3, "files[1].mtime", "outside the years"},
		{"priority", func(m *Manifest) { m.Files[1].Priority = 9 }, 3, "files[1].priority", "out of range"},
		{"mirror", func(m *Manifest) { m.Files[1].Mirrors = []string{"https://m/", "x"} }, 3, "files[1].mirrors[1]", `"x" has scheme ""`},
		{"header name", func(m *Manifest) { m.Files[0].Headers = map[string]string{"A:B": "1"} }, 2, `files[0].headers["A:B"]`, "not a header name"},
		{"header value", func(m *Manifest) { m.Files[0].Headers = map[string]string{"A": "1\r\nB: 2"} }, 2, `files[0].headers["A"]`, "control character"},
		{"header case", func(m *Manifest) { m.Files[0].Headers = map[string]string{"A": "1", "a": "2"} }, 2, `files[0].headers`, "the same header"},
		{"block size", func(m *Manifest) { m.Files[0].Blocks.BlockSize = 6 }, 2, "files[0].block_sha256.block_size", "not a power of two"},
		{"block count", func(m *Manifest) { m.Files[0].Size = 13 }, 2, "files[0].block_sha256.hashes", "needs 4"},
		{"outbox dir", func(m *Manifest) { m.Outbox.Dir = "/out" }, 5, "outbox.dir", "absolute"},
		{"outbox url slash", func(m *Manifest) { m.Outbox.URL = "https://h/in" }, 5, "outbox.url", `does not end with "/"`},
		{"outbox protocol", func(m *Manifest) { m.Outbox.Protocol = "" }, 5, "outbox.protocol", `"" is not allowed`},
		{"outbox encoding", func(m *Manifest) { m.Outbox.Encoding = "gz" }, 5, "outbox.encoding", `"gz" is not allowed`},
		{"outbox header", func(m *Manifest) { m.Outbox.Headers = map[string]string{"Host": "x"} }, 5, `outbox.headers["Host"]`, "set by ferry"},
		{"outbox holds file", func(m *Manifest) { m.Outbox.Dir = "a" }, 5, "outbox.dir", `"a" holds "a/b.bin"`},
		{"outbox is file", func(m *Manifest) { m.Outbox.Dir = "a/c.bin" }, 5, "outbox.dir", "also the path of a file"},
		{"outbox first", func(m *Manifest) { m.Outbox.Dir = "a"; m.Outbox.Line = 1 }, 2, "files[0].path", `inside the outbox directory "a" (line 1)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			tc.change(m)
			err := Validate(m, "mem")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if e.Line != tc.line || e.Field != tc.field || !strings.Contains(e.Msg, tc.msg) || e.Name != "mem" {
				t.Errorf("got %v\nwant line %d, field %q, msg containing %q", err, tc.line, tc.field, tc.msg)
			}
		})
	}
	if err := Validate(nil, "mem"); err == nil {
		t.Error("Validate(nil) succeeded")
	}
}

func TestFormat(t *testing.T) {
	m := validManifest()
	out, err := Format(m)
	if err != nil {
		t.Fatal(err)
	}
	// The mtime is written in UTC.
	if !bytes.Contains(out, []byte(`"mtime":"2026-01-02T02:04:05Z"`)) {
		t.Errorf("Format wrote\n%s\nwant the mtime in UTC", out)
	}
	back, err := Parse(bytes.NewReader(out), "f.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Files[1].MTime.Equal(m.Files[1].MTime) {
		t.Errorf("mtime %v, want %v", back.Files[1].MTime, m.Files[1].MTime)
	}
	back.Files[1].MTime = m.Files[1].MTime
	if a, b := withoutLines(m), withoutLines(back); !reflect.DeepEqual(a, b) {
		t.Errorf("Parse(Format(m)) = %+v, want %+v", b, a)
	}

	// Format refuses what it cannot write back faithfully.
	m.Files[0].Headers = map[string]string{"X": "a${B}"}
	if _, err := Format(m); err == nil || !strings.Contains(err.Error(), `files[0].headers["X"]: the value contains "${"`) || strings.Contains(err.Error(), "a${B}") {
		t.Errorf("Format with a header that would expand: %v", err)
	}
	m.Files[0].Headers = map[string]string{"X": "a$${B}$"}
	if _, err := Format(m); err != nil {
		t.Errorf("Format with $${: %v", err)
	}
	m.Files[0].Path = ""
	if _, err := Format(m); err == nil {
		t.Error("Format of an invalid manifest succeeded")
	}
	if _, err := Format(nil); err == nil {
		t.Error("Format(nil) succeeded")
	}
}
