package manifest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Manifest is a parsed manifest: the files to mount and the optional outbox.
// A Manifest returned by Parse or Open belongs to the caller and is not
// modified by this package afterwards; it is safe for concurrent reads.
type Manifest struct {
	// Files in the order of the manifest. Paths are unique and no path is a
	// directory of another.
	Files []File
	// Outbox is nil when the manifest has none.
	Outbox *Outbox
}

// File is one entry of the manifest's "files" array.
type File struct {
	Path string // relative, "/"-separated, see the package doc for the rules
	URL  string // http or https, as written in the manifest
	// Size in bytes, or -1 when the manifest leaves it out (unknown).
	Size int64
	// SHA256 of the whole file as 64 lowercase hex digits, or "" if unknown.
	SHA256 string
	// MTime in UTC; the zero time when the manifest leaves it out.
	MTime    time.Time
	Priority Priority
	// Pin keeps the file local: the cache never evicts it.
	Pin bool
	// Mirrors are alternative URLs for the same bytes; nil when there are none.
	Mirrors []string
	// Headers to send with every request for this file, with ${NAME}
	// references already expanded; nil when there are none. Files with equal
	// headers may share one map: treat it as read-only.
	Headers map[string]string
	// Blocks holds per-block digests, or nil.
	Blocks *BlockHashes
	// Line is the line of the file object's opening brace in the manifest
	// (1-based), or 0 for a File built in memory.
	Line int
}

// BlockHashes are the SHA-256 digests of consecutive BlockSize-byte blocks of
// a file (the last block may be shorter).
type BlockHashes struct {
	BlockSize int64 // a power of two between 1 and MaxBlockSize
	Hashes    [][32]byte
}

// MaxBlockSize is the largest block_size a manifest may give.
const MaxBlockSize = 1 << 30

// MaxSize is the largest file size a manifest may give.
const MaxSize = 1 << 62

// Outbox describes where files written into the mount's outbox go.
type Outbox struct {
	Dir string // relative path of the outbox directory inside the mount
	// URL is the upload base URL; it always ends with "/". A file's upload
	// URL is URL + its path relative to Dir.
	URL string
	// Protocol is "put" (one HTTP PUT per file) or "tus" (resumable uploads).
	Protocol string
	// Overwrite allows replacing an object that already exists on the server.
	Overwrite bool
	// Encoding is the Content-Encoding used for uploads: "", "gzip" or "zstd".
	Encoding string
	// Headers as for File.Headers.
	Headers map[string]string
	// Line is the line of the outbox object's opening brace, or 0.
	Line int
}

// Priority is a file's background transfer priority (BITS' four levels).
// Higher values are fetched first.
type Priority int

// The four priorities, lowest first. The values are part of the API:
// Low is 0 and Foreground is 3.
const (
	Low        Priority = iota // fetched when nothing else waits
	Normal                     // the default
	High                       // before Normal and Low
	Foreground                 // first, as if someone were reading the file
)

var priorityNames = [...]string{Low: "low", Normal: "normal", High: "high", Foreground: "foreground"}

// String returns the manifest spelling of p: "low", "normal", "high" or
// "foreground".
func (p Priority) String() string {
	if p >= Low && p <= Foreground {
		return priorityNames[p]
	}
	return "Priority(" + strconv.Itoa(int(p)) + ")"
}

// ParsePriority parses "foreground", "high", "normal" or "low" (exactly, in
// lowercase) as in the manifest and in `ferry priority LEVEL`.
func ParsePriority(s string) (Priority, error) {
	for p, name := range priorityNames {
		if s == name {
			return Priority(p), nil
		}
	}
	return Normal, fmt.Errorf("manifest: unknown priority %q (want foreground, high, normal or low)", s)
}

// Error is a problem with a manifest's content. Parse, Open and Validate
// return it (possibly wrapped); find it with errors.As.
type Error struct {
	Name  string // the manifest's name as given to Parse, e.g. "manifest.json"
	Line  int    // 1-based line of the offending value; 0 when unknown
	Field string // e.g. "files[3].path"; "" when the error is not about one field
	Msg   string // what is wrong and what is accepted
	Err   error  // underlying error (e.g. a read error), or nil
}

// Error formats e as "NAME:LINE: FIELD: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Name != "" {
		b.WriteString(e.Name)
	} else {
		b.WriteString("manifest")
	}
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }
