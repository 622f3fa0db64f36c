package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// maxZstdWindow bounds the memory a zstd manifest may make the decoder
// allocate; zstd's default levels use windows of at most 8 MiB.
const maxZstdWindow = 128 << 20

// Open reads the manifest file at path with Parse, decompressing it first
// when its name ends in ".gz" or ".zst", or, whatever its name, when it
// starts with the gzip or zstd magic number. Errors name path as given. env
// is as for Parse.
func Open(path string, env func(string) (string, bool)) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	kind := "json"
	switch {
	case strings.HasSuffix(path, ".gz"):
		kind = "gzip"
	case strings.HasSuffix(path, ".zst"), strings.HasSuffix(path, ".zstd"):
		kind = "zstd"
	default:
		head, _ := br.Peek(len(zstdMagic))
		if bytes.HasPrefix(head, gzipMagic) {
			kind = "gzip"
		} else if bytes.HasPrefix(head, zstdMagic) {
			kind = "zstd"
		}
	}
	var r io.Reader = br
	var size int64 // the JSON's length, when it is the file's
	if st, err := f.Stat(); err == nil && kind == "json" {
		size = st.Size()
	}
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, &Error{Name: path, Msg: "not gzip data: " + err.Error(), Err: err}
		}
		defer zr.Close()
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, &Error{Name: path, Msg: "not zstd data: " + err.Error(), Err: err}
		}
		defer zr.Close()
		r = zr
	}
	return parse(r, path, env, size)
}
