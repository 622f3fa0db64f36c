package manifest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testEnv is the environment the tests parse with.
var testEnv = map[string]string{
	"TOKEN":   "s3cret",
	"EMPTY":   "",
	"NEWLINE": "bad\nvalue",
	"USER_1":  "alice",
}

func lookupTest(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

// manifestOf joins file objects into a manifest with files[i] on line i+2.
func manifestOf(files ...string) string {
	return "{\"files\": [\n" + strings.Join(files, ",\n") + "\n]}\n"
}

// withOutbox is manifestOf with an outbox on the line after the last file.
func withOutbox(outbox string, files ...string) string {
	return "{\"files\": [\n" + strings.Join(files, ",\n") + "\n],\n\"outbox\": " + outbox + "}\n"
}

const hash0 = "0000000000000000000000000000000000000000000000000000000000000000"

func TestParseFull(t *testing.T) {
	const upper = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"
	in := `{
  "files": [
    {"path": "data/big.bin", "url": "https://origin.example/big.bin",
     "size": 1073741824, "sha256": "` + upper + `", "mtime": "2026-01-02T03:04:05.5+01:00",
     "priority": "high", "pin": true, "mirrors": ["https://mirror.example/big.bin", "http://m2.example:8080/b?x=1"],
     "headers": {"Authorization": "Bearer ${TOKEN}", "X-Literal": "$$HOME $x ${EMPTY}end"},
     "block_sha256": {"block_size": 536870912, "hashes": ["` + hash0 + `", "` + upper + `"]}},
    {"path": "a\\b c/ü", "url": "http://h/x", "size": 0, "priority": null, "mtime": null}
  ],
  "outbox": {"dir": "out/box", "url": "https://upload.example/in", "protocol": "tus",
             "overwrite": true, "encoding": "zstd", "headers": {"X-User": "${USER_1}"}}
}`
	m, err := Parse(strings.NewReader(in), "test.json", lookupTest)
	if err != nil {
		t.Fatal(err)
	}
	var h1 [32]byte
	for i := range h1 {
		h1[i] = []byte{0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89}[i%8]
	}
	want := &Manifest{
		Files: []File{{
			Path:     "data/big.bin",
			URL:      "https://origin.example/big.bin",
			Size:     1 << 30,
			SHA256:   strings.ToLower(upper),
			MTime:    time.Date(2026, 1, 2, 2, 4, 5, 5e8, time.UTC),
			Priority: High,
			Pin:      true,
			Mirrors:  []string{"https://mirror.example/big.bin", "http://m2.example:8080/b?x=1"},
			Headers:  map[string]string{"Authorization": "Bearer s3cret", "X-Literal": "$$HOME $x end"},
			Blocks:   &BlockHashes{BlockSize: 1 << 29, Hashes: [][32]byte{{}, h1}},
			Line:     3,
		}, {
			Path: "a\\b c/ü", URL: "http://h/x", Size: 0, Priority: Normal, Line: 8,
		}},
		Outbox: &Outbox{Dir: "out/box", URL: "https://upload.example/in/", Protocol: "tus",
			Overwrite: true, Encoding: "zstd", Headers: map[string]string{"X-User": "alice"}, Line: 10},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got\n%#v\nwant\n%#v", m, want)
	}
	if m.Files[0].MTime.Location() != time.UTC {
		t.Errorf("mtime location %v, want UTC", m.Files[0].MTime.Location())
	}
}

func TestParseDefaults(t *testing.T) {
	m, err := Parse(strings.NewReader(withOutbox(`{"dir": "o", "url": "http://h/up/"}`,
		`{"path": "a", "url": "http://h/a"}`)), "test.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := File{Path: "a", URL: "http://h/a", Size: -1, Priority: Normal, Line: 2}
	if !reflect.DeepEqual(m.Files[0], want) {
		t.Errorf("got %#v, want %#v", m.Files[0], want)
	}
	wantO := &Outbox{Dir: "o", URL: "http://h/up/", Protocol: "put", Line: 4}
	if !reflect.DeepEqual(m.Outbox, wantO) {
		t.Errorf("got %#v, want %#v", m.Outbox, wantO)
	}
}

func TestParseAccepts(t *testing.T) {
	for _, in := range []string{
		`{"files": []}`,
		"\xef\xbb\xbf{\"files\": []}",
		"  {\"files\": []}  \n\t\r\n",
		`{"files": [], "outbox": null}`,
		`{"outbox": {"dir": "o", "url": "https://h/"}, "files": [{"path": "p", "url": "https://h/p"}]}`,
		manifestOf(`{"path": "a\\b", "url": "https://h/a?x=1&y=%20"}`),
		manifestOf(`{"path": "` + strings.Repeat("x", 255) + `/` + strings.Repeat("y", 255) + `", "url": "https://h/"}`),
		manifestOf(`{"path": "d/a", "url": "https://h/"}`, `{"path": "d/b", "url": "https://h/"}`, `{"path": "d/c/e", "url": "https://h/"}`),
		manifestOf(`{"path": "ab", "url": "https://h/"}`, `{"path": "a/b", "url": "https://h/"}`, `{"path": "a.b/c", "url": "https://h/"}`),
		manifestOf(`{"path": "a", "url": "https://user:pw@h:8443/p"}`),
		manifestOf(`{"path": "a", "url": "https://h/", "size": 0, "block_sha256": {"block_size": 1, "hashes": []}}`),
		manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"hashes": ["` + hash0 + `"], "block_size": 4}, "size": 4}`),
		manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 4, "hashes": ["` + hash0 + `", "` + hash0 + `"]}}`),
		manifestOf(`{"path": "a", "url": "https://h/", "size": 4611686018427387904, "mtime": "0000-01-01T00:00:00Z"}`),
		manifestOf(`{"path": "a", "url": "https://h/", "size": -0, "headers": {}, "mirrors": []}`),
		manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "$", "Y": "a$", "Z": "$$", "W": "\t$x{y}"}}`),
		manifestOf(`{"path": "a\u00e9", "url": "https://h/\u00e9"}`),
		withOutbox(`{"dir": "outbox", "url": "https://h/"}`, `{"path": "outbox2/a", "url": "https://h/"}`, `{"path": "x/outbox", "url": "https://h/"}`),
	} {
		if _, err := Parse(strings.NewReader(in), "test.json", lookupTest); err != nil {
			t.Errorf("Parse(%q): %v", in, err)
		}
	}
}

type errCase struct {
	name  string
	in    string
	line  int
	field string
	msg   string // a part of Error.Msg
}

func checkErr(t *testing.T, tc errCase, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want a *Error", err, err)
	}
	if e.Line != tc.line || e.Field != tc.field || !strings.Contains(e.Msg, tc.msg) {
		t.Errorf("got line %d, field %q, msg %q\nwant line %d, field %q, msg containing %q",
			e.Line, e.Field, e.Msg, tc.line, tc.field, tc.msg)
	}
	prefix := fmt.Sprintf("test.json:%d: ", tc.line)
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("Error() = %q, want prefix %q", err.Error(), prefix)
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, tc := range []errCase{
		// The top level.
		{"empty", "", 1, "", "the manifest is empty"},
		{"blank", "\n\n", 2, "", "the manifest is empty"},
		{"array", "\n[]", 2, "", "got an array (want a JSON object"},
		{"no files", "{\n}", 1, "files", `missing (want "files"`},
		{"files twice", "{\"files\": [],\n\"files\": []}", 2, "files", "appears twice"},
		{"outbox twice", "{\"files\": [], \"outbox\": null,\n\"outbox\": null}", 2, "outbox", "appears twice"},
		{"unknown top key", "{\"files\": [],\n\"file\": []}", 2, "", `unknown key "file"`},
		{"files object", "{\"files\":\n{}}", 2, "files", "got an object (want an array"},
		{"files null", "{\"files\": null}", 1, "files", "got null (want an array"},
		{"trailing value", "{\"files\": []}\n\n{}", 3, "", "got an object after the manifest's closing brace"},
		{"trailing garbage", "{\"files\": []}\nx", 2, "", "invalid JSON: invalid character 'x'"},
		{"truncated", "{\"files\": [\n{\"path\": \"a\",\n", 2, "", "unexpected end of the manifest"},
		{"truncated top", "{\"files\": [\n", 1, "", "unexpected end of the manifest"},
		{"bad syntax in entry", "{\"files\": [\n{\"path\": \"a\",\n \"url\": \"https://h/a\",\n \"size\": 1,,\n \"pin\": true}]}", 4, "", "invalid JSON: invalid character ','"},
		{"missing comma", manifestOf(`{"path": "a", "url": "https://h/a"}` + "\n" + `{"path": "b", "url": "https://h/b"}`), 3, "", "invalid JSON"},
		{"trailing comma", manifestOf(`{"path": "a", "url": "https://h/a"},`), 3, "", "invalid JSON: invalid character ']'"},
		{"newline in string", manifestOf("{\"path\": \"a\nb\", \"url\": \"https://h/\"}"), 2, "", "invalid JSON"},
		{"invalid utf8", manifestOf(`{"path": "a", "url": "https://h/"}`, "{\"path\": \"\xff\", \"url\": \"https://h/\"}"), 3, "", "byte 0xff at offset"},
		{"truncated utf8", "{\"files\": [\n\"\xc3", 2, "", "byte 0xc3 at offset 13 is not UTF-8"},
		{"bad key syntax", "{\"files\": [],\n1: 2}", 2, "", "invalid JSON"},

		// File objects.
		{"file not object", manifestOf(`{"path": "a", "url": "https://h/"}`, `"a"`), 3, "files[1]", `got the string "a" (want an object`},
		{"unknown key", manifestOf(`{"path": "a", "url": "https://h/", "szie": 1}`), 2, "files[0]", `unknown key "szie" (want path, url`},
		{"key twice", manifestOf(`{"path": "a", "url": "https://h/",` + "\n" + `"url": "https://h/"}`), 3, "files[0].url", "appears twice"},
		{"missing path", manifestOf(`{"url": "https://h/"}`), 2, "files[0]", `missing "path"`},
		{"missing url", manifestOf(`{"path": "a",` + "\n" + `"size": 1}`), 2, "files[0]", `missing "url"`},
		{"path null", manifestOf(`{"path": null, "url": "https://h/"}`), 2, "files[0].path", "got null (want a relative"},
		{"path number", manifestOf(`{"url": "https://h/",` + "\n" + `"path": 5}`), 3, "files[0].path", "got the number 5"},
		{"path empty", manifestOf(`{"path": "", "url": "https://h/"}`), 2, "files[0].path", `"" is empty`},
		{"path absolute", manifestOf(`{"path": "/etc/x", "url": "https://h/"}`), 2, "files[0].path", `"/etc/x" is absolute`},
		{"path trailing slash", manifestOf(`{"path": "a/", "url": "https://h/"}`), 2, "files[0].path", `ends with "/"`},
		{"path double slash", manifestOf(`{"path": "a//b", "url": "https://h/"}`), 2, "files[0].path", "empty segment"},
		{"path dotdot", manifestOf(`{"path": "a", "url": "https://h/"}`, `{"path": "../x", "url": "https://h/"}`), 3, "files[1].path",
			`"../x" leaves the mount (want a relative path without "." or ".." segments)`},
		{"path dot", manifestOf(`{"path": "a/./b", "url": "https://h/"}`), 2, "files[0].path", "leaves the mount"},
		{"path only dot", manifestOf(`{"path": ".", "url": "https://h/"}`), 2, "files[0].path", "leaves the mount"},
		{"path ends dotdot", manifestOf(`{"path": "a/..", "url": "https://h/"}`), 2, "files[0].path", "leaves the mount"},
		{"path NUL", manifestOf(`{"path": "a\u0000b", "url": "https://h/"}`), 2, "files[0].path", "NUL"},
		{"path long segment", manifestOf(`{"path": "a/` + long + `", "url": "https://h/"}`), 2, "files[0].path", "segment of 256 bytes"},
		{"path too long", manifestOf(`{"path": "` + strings.Repeat("abcdefg/", 512) + `z", "url": "https://h/"}`), 2, "files[0].path", "4097 bytes long"},
		{"path twice", manifestOf(`{"path": "a", "url": "https://h/"}`, `{"path": "b", "url": "https://h/"}`, `{"path": "a", "url": "https://h/"}`),
			4, "files[2].path", `"a" is listed twice (first as files[0] on line 2`},
		{"file then dir", manifestOf(`{"path": "a/b", "url": "https://h/"}`, `{"path": "a/b/c/d", "url": "https://h/"}`),
			3, "files[1].path", `"a/b/c/d" is inside "a/b", which is a file (files[0] on line 2`},
		{"dir then file", manifestOf(`{"path": "a/b/c", "url": "https://h/"}`, `{"path": "a/x", "url": "https://h/"}`, `{"path": "a/b", "url": "https://h/"}`),
			4, "files[2].path", `"a/b" is a file here, but files[0] on line 2 has the path "a/b/c"`},
		{"url scheme", manifestOf(`{"path": "a", "url": "ftp://h/a"}`), 2, "files[0].url", `"ftp://h/a" has scheme "ftp" (want an absolute http or https URL`},
		{"url relative", manifestOf(`{"path": "a", "url": "a/b"}`), 2, "files[0].url", `has scheme ""`},
		{"url no host", manifestOf(`{"path": "a", "url": "https:///a"}`), 2, "files[0].url", "has no host"},
		{"url port only", manifestOf(`{"path": "a", "url": "https://:80/a"}`), 2, "files[0].url", "has no host"},
		{"url opaque", manifestOf(`{"path": "a", "url": "https:h/a"}`), 2, "files[0].url", "has no host"},
		{"url fragment", manifestOf(`{"path": "a", "url": "https://h/a#x"}`), 2, "files[0].url", "#fragment"},
		{"url unparsable", manifestOf(`{"path": "a", "url": "http://[::1/"}`), 2, "files[0].url", "is not a URL"},
		{"url type", manifestOf(`{"path": "a", "url": ["https://h/"]}`), 2, "files[0].url", "got an array (want an http or https URL)"},
		{"mirrors type", manifestOf(`{"path": "a", "url": "https://h/", "mirrors": "https://m/"}`), 2, "files[0].mirrors", "got the string"},
		{"mirror bad", manifestOf(`{"path": "a", "url": "https://h/", "mirrors": ["https://m/",` + "\n" + `"file:///x"]}`), 3, "files[0].mirrors[1]", `has scheme "file"`},
		{"size string", manifestOf(`{"path": "a", "url": "https://h/", "size": "12"}`), 2, "files[0].size", `got the string "12" (want an integer number of bytes`},
		{"size fraction", manifestOf(`{"path": "a", "url": "https://h/", "size": 1.5}`), 2, "files[0].size", "1.5 is not an integer in digits only"},
		{"size exponent", manifestOf(`{"path": "a", "url": "https://h/", "size": 1e3}`), 2, "files[0].size", "1e3 is not an integer in digits only"},
		{"size negative", manifestOf(`{"path": "a", "url": "https://h/", "size": -5}`), 2, "files[0].size", "-5 is negative"},
		{"size huge negative", manifestOf(`{"path": "a", "url": "https://h/", "size": -99999999999999999999}`), 2, "files[0].size", "is negative"},
		{"size too large", manifestOf(`{"path": "a", "url": "https://h/", "size": 4611686018427387905}`), 2, "files[0].size", "is too large"},
		{"size overflow", manifestOf(`{"path": "a", "url": "https://h/", "size": 99999999999999999999}`), 2, "files[0].size", "is too large"},
		{"sha256 short", manifestOf(`{"path": "a", "url": "https://h/", "sha256": "abc"}`), 2, "files[0].sha256", `"abc" is 3 characters long (want 64 hex digits`},
		{"sha256 not hex", manifestOf(`{"path": "a", "url": "https://h/", "sha256": "` + strings.Repeat("g", 64) + `"}`), 2, "files[0].sha256", `non-hex character "g"`},
		{"sha256 type", manifestOf(`{"path": "a", "url": "https://h/", "sha256": 1}`), 2, "files[0].sha256", "got the number 1"},
		{"mtime text", manifestOf(`{"path": "a", "url": "https://h/", "mtime": "yesterday"}`), 2, "files[0].mtime", `"yesterday" is not an RFC 3339 time`},
		{"mtime date only", manifestOf(`{"path": "a", "url": "https://h/", "mtime": "2026-01-02"}`), 2, "files[0].mtime", "is not an RFC 3339 time"},
		{"mtime year", manifestOf(`{"path": "a", "url": "https://h/", "mtime": "9999-12-31T23:00:00-02:00"}`), 2, "files[0].mtime", "outside the years 0000 to 9999"},
		{"mtime type", manifestOf(`{"path": "a", "url": "https://h/", "mtime": 1700000000}`), 2, "files[0].mtime", "got the number"},
		{"priority unknown", manifestOf(`{"path": "a", "url": "https://h/", "priority": "urgent"}`), 2, "files[0].priority", `"urgent" is not a priority (want "foreground", "high", "normal" or "low")`},
		{"priority case", manifestOf(`{"path": "a", "url": "https://h/", "priority": "High"}`), 2, "files[0].priority", "is not a priority"},
		{"priority number", manifestOf(`{"path": "a", "url": "https://h/", "priority": 2}`), 2, "files[0].priority", "got the number 2"},
		{"pin string", manifestOf(`{"path": "a", "url": "https://h/", "pin": "yes"}`), 2, "files[0].pin", `got the string "yes" (want true or false)`},
		{"headers type", manifestOf(`{"path": "a", "url": "https://h/", "headers": ["X: y"]}`), 2, "files[0].headers", "got an array (want an object of header names"},
		{"header value type", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": 1}}`), 2, `files[0].headers["X"]`, "got the number 1 (want a string)"},
		{"header name", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X Y": "1"}}`), 2, `files[0].headers["X Y"]`, `is not a header name: " " is not allowed`},
		{"header empty name", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"": "1"}}`), 2, `files[0].headers[""]`, `"" is not a header name`},
		{"header reserved", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"range": "bytes=0-"}}`), 2, `files[0].headers["range"]`, "is set by ferry itself"},
		{"header twice", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "1",` + "\n" + `"X": "2"}}`), 3, `files[0].headers["X"]`, "appears twice"},
		{"header case twice", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"x-a": "1", "X-A": "2"}}`), 2, `files[0].headers`, `"X-A" and "x-a" are the same header`},
		{"header control", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "a\u0001"}}`), 2, `files[0].headers["X"]`, "control character"},
		{"var unset", manifestOf(`{"path": "a", "url": "https://h/",` + "\n" + `"headers": {"Authorization": "Bearer ${ORIGIN_TOKEN}"}}`), 3,
			`files[0].headers["Authorization"]`, `environment variable "ORIGIN_TOKEN" is not set`},
		{"var bad name", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "${1A}"}}`), 2, `files[0].headers["X"]`, `names the variable "1A"`},
		{"var empty name", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "${}"}}`), 2, `files[0].headers["X"]`, `names the variable ""`},
		{"var unterminated", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "${TOKEN"}}`), 2, `files[0].headers["X"]`, `without a closing "}"`},
		{"var newline", manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "${NEWLINE}"}}`), 2, `files[0].headers["X"]`, `"${NEWLINE}" after expanding variables contains the control character "\n"`},
		{"blocks type", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": []}`), 2, "files[0].block_sha256", "got an array"},
		{"blocks unknown key", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"size": 1}}`), 2, "files[0].block_sha256", `unknown key "size"`},
		{"blocks missing", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 1}}`), 2, "files[0].block_sha256", `missing "block_size" or "hashes"`},
		{"blocks key twice", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 1, "block_size": 1}}`), 2, "files[0].block_sha256.block_size", "appears twice"},
		{"block size 3", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 3, "hashes": []}}`), 2, "files[0].block_sha256.block_size", "3 is not a power of two"},
		{"block size 0", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 0, "hashes": []}}`), 2, "files[0].block_sha256.block_size", "0 is not a power of two"},
		{"block size large", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 2147483648, "hashes": []}}`), 2, "files[0].block_sha256.block_size", "is too large"},
		{"block hash bad", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 1,` + "\n" + `"hashes": ["` + hash0 + `", "x"]}}`), 3, "files[0].block_sha256.hashes[1]", `"x" is 1 characters long`},
		{"block hashes type", manifestOf(`{"path": "a", "url": "https://h/", "block_sha256": {"block_size": 1, "hashes": {}}}`), 2, "files[0].block_sha256.hashes", "got an object"},
		{"block count", manifestOf(`{"path": "a", "url": "https://h/",` + "\n" + `"block_sha256": {"block_size": 4, "hashes": ["` + hash0 + `", "` + hash0 + `"]},` + "\n" + `"size": 9}`),
			3, "files[0].block_sha256.hashes", "has 2 hashes, but size 9 in blocks of 4 needs 3"},

		// The outbox.
		{"outbox type", withOutbox(`[]`), 4, "outbox", "got an array (want an object"},
		{"outbox unknown key", withOutbox(`{"dir": "o", "url": "https://h/", "method": "PUT"}`), 4, "outbox", `unknown key "method" (want dir, url`},
		{"outbox key twice", withOutbox(`{"dir": "o", "url": "https://h/", "dir": "p"}`), 4, "outbox.dir", "appears twice"},
		{"outbox missing dir", withOutbox(`{"url": "https://h/"}`), 4, "outbox", `missing "dir"`},
		{"outbox missing url", withOutbox("{\n\"dir\": \"o\"}"), 4, "outbox", `missing "url"`},
		{"outbox dir", withOutbox("{\"url\": \"https://h/\",\n\"dir\": \"../o\"}"), 5, "outbox.dir", "leaves the mount"},
		{"outbox dir type", withOutbox(`{"url": "https://h/", "dir": true}`), 4, "outbox.dir", "got true"},
		{"outbox url", withOutbox(`{"dir": "o", "url": "ftp://h/"}`), 4, "outbox.url", `has scheme "ftp"`},
		{"outbox url query", withOutbox(`{"dir": "o", "url": "https://h/in?sig=1"}`), 4, "outbox.url", "has a ?query"},
		{"outbox protocol", withOutbox(`{"dir": "o", "url": "https://h/", "protocol": "post"}`), 4, "outbox.protocol", `"post" is not allowed (want "put" or "tus")`},
		{"outbox encoding", withOutbox(`{"dir": "o", "url": "https://h/", "encoding": "br"}`), 4, "outbox.encoding", `"br" is not allowed (want "gzip", "zstd"`},
		{"outbox overwrite", withOutbox(`{"dir": "o", "url": "https://h/", "overwrite": 1}`), 4, "outbox.overwrite", "got the number 1 (want true or false)"},
		{"outbox header", withOutbox(`{"dir": "o", "url": "https://h/", "headers": {"X": "${NOPE}"}}`), 4, `outbox.headers["X"]`, `"NOPE" is not set`},
		{"outbox is file", withOutbox(`{"url": "https://h/",`+"\n"+`"dir": "a/o"}`, `{"path": "a/o", "url": "https://h/"}`), 5, "outbox.dir",
			`"a/o" is also the path of a file, files[0] on line 2`},
		{"outbox holds file", withOutbox(`{"dir": "a", "url": "https://h/"}`, `{"path": "b", "url": "https://h/"}`, `{"path": "a/x/y", "url": "https://h/"}`), 5, "outbox.dir",
			`"a" holds "a/x/y" of files[1] on line 3`},
		{"outbox in file", withOutbox(`{"dir": "a/o", "url": "https://h/"}`, `{"path": "a", "url": "https://h/"}`), 4, "outbox.dir",
			`"a/o" is inside "a", which is a file (files[0] on line 2`},
		{"file in outbox", "{\"outbox\": {\"dir\": \"o\", \"url\": \"https://h/\"},\n\"files\": [\n{\"path\": \"o/a\", \"url\": \"https://h/\"}]}", 3, "files[0].path",
			`"o/a" is inside the outbox directory "o" (line 1) (want files outside the outbox)`},
		{"file is outbox", "{\"outbox\": {\"dir\": \"o\", \"url\": \"https://h/\"},\n\"files\": [\n{\"path\": \"o\", \"url\": \"https://h/\"}]}", 3, "files[0].path",
			`"o" is the outbox directory (line 1)`},
		{"file holds outbox", "{\"outbox\": {\"dir\": \"o/p\", \"url\": \"https://h/\"},\n\"files\": [\n{\"path\": \"o\", \"url\": \"https://h/\"}]}", 3, "files[0].path",
			`"o" is a file, but the outbox directory "o/p"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(strings.NewReader(tc.in), "test.json", lookupTest)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error", m)
			}
			if m != nil {
				t.Errorf("Parse returned a manifest with an error")
			}
			checkErr(t, tc, err)
		})
	}
}

// TestErrorKeepsSecrets checks that an expanded value never shows in errors.
func TestErrorKeepsSecrets(t *testing.T) {
	env := func(string) (string, bool) { return "top\x01secret", true }
	_, err := Parse(strings.NewReader(manifestOf(`{"path": "a", "url": "https://h/", "headers": {"X": "${S}"}}`)), "test.json", env)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("got %v, want an error that does not show the value", err)
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"${TOKEN}", "s3cret", ""},
		{"Bearer ${TOKEN}!", "Bearer s3cret!", ""},
		{"${TOKEN}${USER_1}", "s3cretalice", ""},
		{"a${EMPTY}b", "ab", ""},
		{"$$", "$$", ""},
		{"$${TOKEN}", "$${TOKEN}", ""},
		{"$$${TOKEN}", "$$s3cret", ""},
		{"$", "$", ""},
		{"a$b", "a$b", ""},
		{"${TOKEN}$", "s3cret$", ""},
		{"${_x}", "", `"_x" is not set`},
		{"${NOPE}", "", `"NOPE" is not set`},
		{"${TOKEN", "", "without a closing"},
		{"${A-B}", "", `names the variable "A-B"`},
		{"${9}", "", `names the variable "9"`},
	} {
		got, err := expand(tc.in, lookupTest)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.msg, tc.err)):
			t.Errorf("expand(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
	if _, err := expand("${TOKEN}", nil); err == nil {
		t.Error("expand with a nil env succeeded, want every variable unset")
	}
}

func TestHeadersShared(t *testing.T) {
	in := manifestOf(
		`{"path": "a", "url": "https://h/", "headers": {"Authorization": "Bearer ${TOKEN}"}}`,
		`{"path": "b", "url": "https://h/", "headers": {"Authorization": "Bearer ${TOKEN}"}}`,
		`{"path": "c", "url": "https://h/", "headers": {"Authorization": "Bearer x"}}`,
		`{"path": "d", "url": "https://h/"}`)
	m, err := Parse(strings.NewReader(in), "test.json", lookupTest)
	if err != nil {
		t.Fatal(err)
	}
	f := m.Files
	if reflect.ValueOf(f[0].Headers).UnsafePointer() != reflect.ValueOf(f[1].Headers).UnsafePointer() {
		t.Error("equal headers of files[0] and files[1] are not shared")
	}
	if f[2].Headers["Authorization"] != "Bearer x" || f[0].Headers["Authorization"] != "Bearer s3cret" {
		t.Errorf("headers %v, %v", f[0].Headers, f[2].Headers)
	}
	if f[3].Headers != nil {
		t.Errorf("files[3] headers %v, want nil", f[3].Headers)
	}
}

func TestPriority(t *testing.T) {
	for p := Low; p <= Foreground; p++ {
		got, err := ParsePriority(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePriority(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if Low != 0 || Foreground != 3 || !(Low < Normal && Normal < High && High < Foreground) {
		t.Error("priorities are not ordered Low=0 < Normal < High < Foreground=3")
	}
	if s := Priority(7).String(); s != "Priority(7)" {
		t.Errorf("Priority(7).String() = %q", s)
	}
	if _, err := ParsePriority("urgent"); err == nil || !strings.HasPrefix(err.Error(), "manifest: ") {
		t.Errorf("ParsePriority(urgent) error %v, want one starting with manifest:", err)
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Name: "m.json", Line: 12, Field: "files[3].path", Msg: "bad"}, "m.json:12: files[3].path: bad"},
		{Error{Name: "m.json", Line: 1, Msg: "bad"}, "m.json:1: bad"},
		{Error{Field: "outbox.url", Msg: "bad"}, "manifest: outbox.url: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	inner := errors.New("disk on fire")
	if !errors.Is(&Error{Err: inner}, inner) {
		t.Error("Error does not unwrap to Err")
	}
}
