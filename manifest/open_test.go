package manifest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstded(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenCompressed(t *testing.T) {
	plain, err := os.ReadFile("testdata/good/example.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(bytes.NewReader(plain), "example.json", lookupTest)
	if err != nil {
		t.Fatal(err)
	}
	big := []byte(prettyManifest(5000, "\n", -1, ""))
	wantBig, err := Parse(bytes.NewReader(big), "big.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want *Manifest
	}{
		{"m.json", plain, want},
		{"m.json.gz", gzipped(t, plain), want},
		{"m.json.zst", zstded(t, plain), want},
		{"m.json.zstd", zstded(t, plain), want},
		{"sniffed-gzip.json", gzipped(t, plain), want},
		{"sniffed-zstd", zstded(t, plain), want},
		{"big.json.gz", gzipped(t, big), wantBig},
		{"big.json.zst", zstded(t, big), wantBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env func(string) (string, bool)
			if tc.want == want {
				env = lookupTest
			}
			got, err := Open(writeFile(t, tc.name, tc.data), env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing.json"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "manifest: ") {
		t.Errorf("missing file: %v", err)
	}

	notGzip := writeFile(t, "m.json.gz", []byte(`{"files": []}`))
	_, err = Open(notGzip, nil)
	var e *Error
	if !errors.As(err, &e) || e.Name != notGzip || !strings.Contains(e.Msg, "not gzip data") {
		t.Errorf("plain JSON named .gz: %v", err)
	}

	notZstd := writeFile(t, "m.json.zst", []byte(`{"files": []}`))
	if _, err = Open(notZstd, nil); !errors.As(err, &e) || !strings.Contains(err.Error(), "m.json.zst") {
		t.Errorf("plain JSON named .zst: %v", err)
	}

	// A corrupt stream fails while parsing, with the line reached so far.
	data := gzipped(t, []byte(manifestOf(`{"path": "a", "url": "https://h/"}`)))
	data[len(data)-5] ^= 0xff // the CRC-32 and length trailer
	corrupt := writeFile(t, "corrupt.json.gz", data)
	if _, err = Open(corrupt, nil); !errors.As(err, &e) || e.Line < 1 || e.Err == nil || !strings.Contains(e.Msg, "read: ") {
		t.Errorf("corrupt gzip: %v", err)
	}

	// Errors in a compressed manifest name its lines like a plain one.
	bad := writeFile(t, "bad.json.zst", zstded(t, []byte(manifestOf(`{"path": "a", "url": "https://h/"}`, `{"path": "/b", "url": "https://h/"}`))))
	_, err = Open(bad, nil)
	if !errors.As(err, &e) || e.Line != 3 || e.Field != "files[1].path" || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Errorf("bad zstd manifest: %v", err)
	}
}
