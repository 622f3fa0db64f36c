package manifest

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks a manifest built in memory against every rule Parse
// applies: each field (in the normalized form Parse produces: lowercase
// SHA256, Size -1 when unknown, an outbox URL ending in "/", Protocol "put"
// or "tus") and the rules across entries: unique paths, no file that is also
// a directory, and an outbox directory that no file uses. Parse applies the
// cross-entry rules as it streams. name is used in error messages.
//
// Validate returns the first problem as an *Error, using File.Line and
// Outbox.Line as the lines.
func Validate(m *Manifest, name string) error {
	if m == nil {
		return &Error{Name: name, Msg: "no manifest (want a *Manifest)"}
	}
	c := newCrossCheck()
	o := m.Outbox
	outboxFirst := o != nil && o.Line > 0 && len(m.Files) > 0 && o.Line < m.Files[0].Line
	if outboxFirst {
		if err := validateOutbox(o, c, name); err != nil {
			return err
		}
	}
	for i := range m.Files {
		f := &m.Files[i]
		at := func(key, msg string) error {
			return &Error{Name: name, Line: f.Line, Field: fileField(i, key).String(), Msg: msg}
		}
		if key, msg := checkFile(f); msg != "" {
			return at(key, msg)
		}
		if msg := c.addFile(f.Path, i, f.Line); msg != "" {
			return at("path", msg)
		}
	}
	if o != nil && !outboxFirst {
		return validateOutbox(o, c, name)
	}
	return nil
}

// checkFile returns the key and message of the first field of f that breaks a
// rule, or "", "".
func checkFile(f *File) (string, string) {
	if msg := checkPath(f.Path); msg != "" {
		return "path", msg
	}
	if msg := checkURL(f.URL); msg != "" {
		return "url", msg
	}
	if f.Size < -1 || f.Size > MaxSize {
		return "size", fmt.Sprintf("%d is out of range (want -1 for unknown, or 0 to %d)", f.Size, int64(MaxSize))
	}
	if f.SHA256 != "" && !isLowerHex64(f.SHA256) {
		return "sha256", fmt.Sprintf("%q is not 64 lowercase hex digits (want \"\" or a SHA-256 digest in lowercase hex)", f.SHA256)
	}
	if !f.MTime.IsZero() {
		if msg := checkMTime(f.MTime.UTC()); msg != "" {
			return "mtime", f.MTime.String() + " " + msg
		}
	}
	if f.Priority < Low || f.Priority > Foreground {
		return "priority", fmt.Sprintf("%v is out of range (want Low, Normal, High or Foreground)", f.Priority)
	}
	for j, u := range f.Mirrors {
		if msg := checkURL(u); msg != "" {
			return "mirrors[" + strconv.Itoa(j) + "]", msg
		}
	}
	if key, msg := checkHeaders(f.Headers); msg != "" {
		return "headers" + key, msg
	}
	if f.Blocks != nil {
		if msg := checkBlockSize(f.Blocks.BlockSize); msg != "" {
			return "block_sha256.block_size", msg
		}
		if msg := checkBlockCount(f.Size, f.Blocks); msg != "" {
			return "block_sha256.hashes", msg
		}
	}
	return "", ""
}

// checkHeaders checks names and values of headers built in memory. It returns
// the header's subscript (like `["X-Key"]`) and a message.
func checkHeaders(h map[string]string) (string, string) {
	names := slices.Sorted(maps.Keys(h))
	for _, name := range names {
		sub := "[" + strconv.Quote(name) + "]"
		if msg := checkHeaderName(name); msg != "" {
			return sub, msg
		}
		if msg := checkHeaderValue(h[name], h[name]); msg != "" {
			return sub, msg
		}
	}
	if a, b, dup := duplicateHeader(h); dup {
		return "", fmt.Sprintf("%q and %q are the same header (want each header once, in any case)", a, b)
	}
	return "", ""
}

func validateOutbox(o *Outbox, c *crossCheck, name string) error {
	at := func(key, msg string) error {
		return &Error{Name: name, Line: o.Line, Field: outboxField(key).String(), Msg: msg}
	}
	if msg := checkPath(o.Dir); msg != "" {
		return at("dir", msg)
	}
	if msg := checkOutboxURL(o.URL); msg != "" {
		return at("url", msg)
	}
	if !strings.HasSuffix(o.URL, "/") {
		return at("url", fmt.Sprintf("%q does not end with \"/\" (want a base URL like \"https://host/incoming/\")", o.URL))
	}
	if msg := checkOneOf(o.Protocol, protocols, wantProtocol); msg != "" {
		return at("protocol", msg)
	}
	if msg := checkOneOf(o.Encoding, encodings, wantEncoding); msg != "" {
		return at("encoding", msg)
	}
	if key, msg := checkHeaders(o.Headers); msg != "" {
		return at("headers"+key, msg)
	}
	if msg := c.setOutbox(o.Dir, o.Line); msg != "" {
		return at("dir", msg)
	}
	return nil
}

const wantTime = `want an RFC 3339 time like "2026-01-02T03:04:05Z"`

// checkMTime checks that t (in UTC) can be written back as RFC 3339.
func checkMTime(t time.Time) string {
	if y := t.Year(); y < 0 || y > 9999 {
		return "is outside the years 0000 to 9999 in UTC (" + wantTime + ")"
	}
	return ""
}

func checkBlockSize(n int64) string {
	if n < 1 || n > MaxBlockSize || bits.OnesCount64(uint64(n)) != 1 {
		return fmt.Sprintf("%d is not a power of two from 1 to %d (want a block size like 1048576)", n, MaxBlockSize)
	}
	return ""
}

// checkBlockCount checks that b has one hash per block of a file of the given
// size (-1: unknown, any count goes).
func checkBlockCount(size int64, b *BlockHashes) string {
	if size < 0 {
		return ""
	}
	want := (size + b.BlockSize - 1) / b.BlockSize
	if int64(len(b.Hashes)) != want {
		return fmt.Sprintf("has %d hashes, but size %d in blocks of %d needs %d (want one hash per block)", len(b.Hashes), size, b.BlockSize, want)
	}
	return ""
}

var (
	protocols = []string{"put", "tus"}
	encodings = []string{"", "gzip", "zstd"}
)

const (
	wantProtocol = `"put" or "tus"`
	wantEncoding = `"gzip", "zstd" or "" for none`
)

func checkOneOf(s string, allowed []string, want string) string {
	if slices.Contains(allowed, s) {
		return ""
	}
	return fmt.Sprintf("%.80q is not allowed (want %s)", s, want)
}
