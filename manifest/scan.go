package manifest

import "encoding/json"

// token is one JSON token with the offset of its first byte in the manifest.
type token struct {
	kind byte   // '{', '}', '[', ']', '"' (string), '0' (number), 't', 'f', 'n' (null), 0 (end)
	s    string // the string, or the number as written
	off  int64
}

// fromJSON converts a token of encoding/json whose last byte is at off.
func fromJSON(tok json.Token, off int64) token {
	switch v := tok.(type) {
	case json.Delim:
		return token{kind: byte(v), off: off}
	case string:
		return token{kind: '"', s: v, off: off}
	case json.Number:
		return token{kind: '0', s: string(v), off: off}
	case bool:
		if v {
			return token{kind: 't', off: off}
		}
		return token{kind: 'f', off: off}
	}
	return token{kind: 'n', off: off}
}

// objScanner walks one JSON value that encoding/json has already checked
// (Decoder.Decode into a json.RawMessage). As the syntax is known to be
// right, it needs no error handling: commas and colons are skipped like
// white space, and the parser knows whether it expects a key or a value.
type objScanner struct {
	data []byte
	i    int
	base int64 // offset of data[0] in the manifest

	// names interns short strings that repeat from entry to entry (keys,
	// header names and values), so each costs one allocation per Parse.
	names map[string]string
}

// Limits of objScanner.names.
const (
	maxInterned    = 4096
	maxInternedLen = 128
)

func (s *objScanner) skip() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r', ',', ':':
			s.i++
		default:
			return
		}
	}
}

// more reports whether the current object or array has another element.
func (s *objScanner) more() bool {
	s.skip()
	return s.i < len(s.data) && s.data[s.i] != '}' && s.data[s.i] != ']'
}

// next returns the next token; kind 0 at the end of the value.
func (s *objScanner) next() token {
	s.skip()
	t := token{off: s.base + int64(s.i)}
	if s.i >= len(s.data) {
		return t
	}
	c := s.data[s.i]
	switch c {
	case '{', '}', '[', ']':
		t.kind = c
		s.i++
	case '"':
		t.kind = '"'
		t.s = s.str()
	case 't', 'n':
		t.kind = c
		s.i = min(s.i+4, len(s.data))
	case 'f':
		t.kind = c
		s.i = min(s.i+5, len(s.data))
	default:
		j := s.i
		for j < len(s.data) && isNumberByte(s.data[j]) {
			j++
		}
		t.kind, t.s = '0', string(s.data[s.i:j])
		s.i = max(j, s.i+1)
	}
	return t
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// nextInterned is next, but a string token comes from s.names if it is there.
func (s *objScanner) nextInterned() token {
	s.skip()
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return s.next()
	}
	t := token{kind: '"', off: s.base + int64(s.i)}
	start := s.i + 1
	j := start
	for j < len(s.data) && s.data[j] != '"' && s.data[j] != '\\' {
		j++
	}
	if j >= len(s.data) || s.data[j] != '"' || j-start > maxInternedLen {
		t.s = s.str()
		return t
	}
	s.i = j + 1
	if v, ok := s.names[string(s.data[start:j])]; ok {
		t.s = v
		return t
	}
	t.s = string(s.data[start:j])
	if len(s.names) < maxInterned {
		s.names[t.s] = t.s
	}
	return t
}

// str reads the string starting at s.data[s.i] == '"'.
func (s *objScanner) str() string {
	start := s.i
	escaped := false
	j := start + 1
	for ; j < len(s.data) && s.data[j] != '"'; j++ {
		if s.data[j] == '\\' {
			escaped = true
			j++
		}
	}
	j = min(j, len(s.data))
	s.i = min(j+1, len(s.data))
	if !escaped {
		return string(s.data[start+1 : j])
	}
	var out string
	if err := json.Unmarshal(s.data[start:s.i], &out); err != nil {
		return string(s.data[start+1 : j]) // cannot happen: the syntax was checked
	}
	return out
}
