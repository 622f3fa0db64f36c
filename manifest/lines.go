package manifest

import (
	"bytes"
	"io"
	"unicode/utf8"
)

// lineReader sits between the manifest's reader and the JSON decoder. It
// records where the newlines are so that a decoder offset can be turned into
// a line number, and it rejects bytes that are not UTF-8 (encoding/json
// would silently replace them, renaming files).
//
// Only newlines at or after the last offset asked about are kept: queries
// must come with non-decreasing offsets, which is the order in which the
// parser meets tokens. Memory is then bounded by the decoder's read-ahead.
type lineReader struct {
	r      io.Reader
	read   int64   // bytes handed out so far
	nl     []int64 // offsets of newlines not yet counted in before, ascending
	before int     // newlines before nl[0]
	last   int64   // the offset of the last query

	carry  [utf8.UTFMax]byte // start of a rune split across reads
	ncarry int
	err    error // error to return from the next Read
}

// readError is a failure of the underlying reader (not the end of input).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// utf8Error reports a byte at offset off that is not UTF-8.
type utf8Error struct {
	off int64
	b   byte
}

func (e *utf8Error) Error() string { return "invalid UTF-8" }

func (l *lineReader) Read(p []byte) (int, error) {
	for {
		if l.err != nil {
			return 0, l.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		n := copy(p, l.carry[:l.ncarry])
		copy(l.carry[:], l.carry[n:l.ncarry])
		l.ncarry -= n
		if l.ncarry == 0 {
			m, err := l.r.Read(p[n:])
			n += m
			if err == io.EOF {
				l.err = io.EOF
			} else if err != nil {
				l.err = &readError{err}
			}
		}
		n = l.holdBack(p[:n])
		if n == 0 {
			continue
		}
		if !utf8.Valid(p[:n]) {
			k := firstInvalid(p[:n])
			l.err = &utf8Error{off: l.read + int64(k), b: p[k]}
			n = k
		}
		l.record(p[:n])
		if n == 0 {
			continue
		}
		// Errors are reported on the next call, after the decoder has seen
		// every good byte.
		return n, nil
	}
}

// holdBack moves an incomplete rune at the end of p into l.carry (unless the
// input has ended) and returns how many bytes of p remain.
func (l *lineReader) holdBack(p []byte) int {
	if l.err != nil {
		return len(p)
	}
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if !utf8.RuneStart(p[i]) {
			continue
		}
		if utf8.FullRune(p[i:]) {
			return len(p)
		}
		l.ncarry = copy(l.carry[:], p[i:])
		return i
	}
	return len(p)
}

func firstInvalid(p []byte) int {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(p)
}

func (l *lineReader) record(p []byte) {
	for off := 0; ; {
		j := bytes.IndexByte(p[off:], '\n')
		if j < 0 {
			break
		}
		l.nl = append(l.nl, l.read+int64(off+j))
		off += j + 1
	}
	l.read += int64(len(p))
}

// lineAt returns the 1-based line of the byte at offset off. Offsets before
// the last query are answered with the last query's line.
func (l *lineReader) lineAt(off int64) int {
	if off < l.last {
		off = l.last
	}
	l.last = off
	k := 0
	for k < len(l.nl) && l.nl[k] < off {
		k++
	}
	l.before += k
	l.nl = l.nl[:copy(l.nl, l.nl[k:])]
	return l.before + 1
}

// lastLine returns the line of the last byte read, for errors at the end of
// the input.
func (l *lineReader) lastLine() int {
	if l.read == 0 {
		return 1
	}
	return l.lineAt(l.read - 1)
}
