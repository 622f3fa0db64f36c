package origin

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// byteRange is a satisfiable range of a representation: length > 0.
type byteRange struct {
	start, length int64
}

// contentRange formats r for the Content-Range header.
func (r byteRange) contentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", r.start, r.start+r.length-1, size)
}

// parseRange reads a Range header value for a representation of size
// bytes. use is false when the header is to be ignored: absent, another
// unit, malformed, or more than one range (RFC 9110 lets a server answer
// those with the whole body). unsat is true when the one range cannot be
// satisfied, which calls for 416.
func parseRange(h string, size int64) (r byteRange, use, unsat bool) {
	unit, spec, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return byteRange{}, false, false
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return byteRange{}, false, false
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		// bytes=-n: the last n bytes.
		n, ok := parseDigits(last)
		if !ok {
			return byteRange{}, false, false
		}
		if n == 0 || size == 0 {
			return byteRange{}, true, true
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, true, false
	}
	a, ok := parseDigits(first)
	if !ok {
		return byteRange{}, false, false
	}
	b := int64(-1)
	if last != "" {
		if b, ok = parseDigits(last); !ok || b < a {
			return byteRange{}, false, false
		}
	}
	if a >= size {
		return byteRange{}, true, true
	}
	if b < 0 || b >= size {
		b = size - 1
	}
	return byteRange{start: a, length: b - a + 1}, true, false
}

// parseDigits parses a non-empty run of ASCII digits that fits an int64.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// ifRangeHolds evaluates an If-Range value against o: a strong ETag must be
// equal, an HTTP date must equal Last-Modified; weak tags never hold.
func ifRangeHolds(v string, o *object) bool {
	v = strings.TrimSpace(v)
	switch {
	case strings.HasPrefix(v, `"`):
		return v == o.info.ETag
	case strings.HasPrefix(v, "W/"):
		return false
	}
	t, err := http.ParseTime(v)
	return err == nil && t.Equal(o.info.LastModified)
}

// preconditions evaluates If-Match and If-None-Match of a GET or HEAD and
// returns 412 or 304 when they fail, else 0.
func preconditions(r *http.Request, o *object) int {
	if im := r.Header.Get("If-Match"); im != "" && !etagListHas(im, o.info.ETag, false) {
		return http.StatusPreconditionFailed
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListHas(inm, o.info.ETag, true) {
		return http.StatusNotModified
	}
	return 0
}

// etagListHas reports whether a header list of entity tags ("*" or
// comma-separated tags) matches etag, comparing weakly when weak is set
// (a W/ prefix is ignored) and strongly otherwise (weak tags never match).
func etagListHas(list, etag string, weak bool) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	for tag := range strings.SplitSeq(list, ",") {
		tag = strings.TrimSpace(tag)
		if after, ok := strings.CutPrefix(tag, "W/"); ok {
			if !weak {
				continue
			}
			tag = after
		}
		if tag == etag {
			return true
		}
	}
	return false
}

// shiftRange returns the range that a WrongContentRange response declares
// instead of r, and the total size it declares.
func shiftRange(r byteRange, size int64) (byteRange, int64) {
	switch {
	case r.start+2*r.length <= size:
		r.start += r.length
	case r.start-r.length >= 0:
		r.start -= r.length
	case r.start+r.length < size:
		r.start++
	case r.start > 0:
		r.start--
	default:
		return r, size + 1
	}
	return r, size
}
