package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Parse reads a manifest from r, checks every field and the rules across
// entries (see Validate) and returns it. name is used in error messages,
// e.g. "manifest.json". env looks up the variables named by ${NAME} in
// headers (os.LookupEnv in production); nil means no variable is set.
//
// Parse streams: it never holds the JSON text, only the decoded entries.
// A problem with the content is returned as an *Error carrying the line of
// the offending value; the first problem found (in line order) wins.
func Parse(r io.Reader, name string, env func(string) (string, bool)) (*Manifest, error) {
	var size int64
	if l, ok := r.(interface{ Len() int }); ok {
		size = int64(l.Len()) // bytes.Reader, strings.Reader, bytes.Buffer
	}
	return parse(r, name, env, size)
}

// parse is Parse; size, when positive, is the length of the input in
// bytes, from which the number of files is estimated to size Files once.
func parse(r io.Reader, name string, env func(string) (string, bool), size int64) (*Manifest, error) {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3) // a UTF-8 byte order mark, as some editors write
	} else if err != nil && err != io.EOF {
		return nil, &Error{Name: name, Line: 1, Msg: "read: " + err.Error(), Err: err}
	}
	lr := &lineReader{r: br}
	dec := json.NewDecoder(lr)
	dec.UseNumber()
	p := &parser{
		dec:      dec,
		lr:       lr,
		name:     name,
		env:      env,
		cross:    newCrossCheck(),
		scratch:  make(map[string]string),
		expanded: make(map[string]string),
		size:     size,
	}
	p.obj.names = make(map[string]string)
	return p.manifest()
}

// parser holds the state of one Parse call.
//
// The top-level object and the "files" array are read with the decoder's
// token API; each file object and the outbox object are read whole with
// Decode into raw, which checks their syntax, and then walked by obj. So the
// parser never holds more than one entry's JSON text.
type parser struct {
	dec   *json.Decoder
	lr    *lineReader
	name  string
	env   func(string) (string, bool)
	cross *crossCheck
	m     Manifest

	raw json.RawMessage // the current entry, reused
	obj objScanner      // walks raw

	scratch     map[string]string // headers being read
	prevHeaders map[string]string // the last headers returned, shared by equal ones
	expanded    map[string]string // header value as written → expanded, for repeated values
	size        int64             // length of the input if known, else 0
}

// sampleFiles is how many files are read before Files is sized from the
// bytes they took (when the input's length is known).
const sampleFiles = 1024

// top returns the next token of the top-level structure. The end of the input
// is an error here; see topOrEOF.
func (p *parser) top() (token, error) {
	tok, err := p.topOrEOF()
	if err == io.EOF {
		return tok, p.eof()
	}
	return tok, err
}

// topOrEOF is top but returns io.EOF itself at the end of the input.
func (p *parser) topOrEOF() (token, error) {
	tok, err := p.dec.Token()
	if err == io.EOF {
		return token{}, err
	}
	if err != nil {
		// Token stands at the bad character, or at the start of a bad
		// scalar; neither spans lines.
		return token{}, p.syntax(err, p.dec.InputOffset())
	}
	return fromJSON(tok, p.dec.InputOffset()-1), nil
}

// entry reads the next value of the input whole and points p.obj at it.
func (p *parser) entry() error {
	if err := p.dec.Decode(&p.raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return p.syntax(err, p.badOffset())
		}
		return p.syntax(err, 0)
	}
	p.obj.data, p.obj.i = p.raw, 0
	p.obj.base = p.dec.InputOffset() - int64(len(p.raw))
	return nil
}

// badOffset finds the offset of the byte that made Decode fail. The decoder
// still holds the failed value, from its start, in its buffer: decoding that
// again alone gives an error whose offset counts from there. If it decodes,
// the decoder failed before the value (a missing comma, say).
func (p *parser) badOffset() int64 {
	start := p.dec.InputOffset()
	var se *json.SyntaxError
	err := json.NewDecoder(p.dec.Buffered()).Decode(new(json.RawMessage))
	if errors.As(err, &se) && se.Offset >= 1 {
		return start + se.Offset - 1
	}
	return start
}

func (p *parser) eof() error {
	return &Error{Name: p.name, Line: p.lr.lastLine(), Msg: "unexpected end of the manifest (want complete JSON; is the file truncated?)"}
}

// syntax turns an error of the JSON decoder into an *Error; for a syntax
// error, off is where it is.
func (p *parser) syntax(err error, off int64) error {
	var (
		ue *utf8Error
		re *readError
		se *json.SyntaxError
	)
	switch {
	case errors.As(err, &ue):
		return &Error{Name: p.name, Line: p.lr.lineAt(ue.off),
			Msg: fmt.Sprintf("byte 0x%02x at offset %d is not UTF-8 (want the manifest in UTF-8)", ue.b, ue.off)}
	case errors.As(err, &re):
		return &Error{Name: p.name, Line: p.lr.lastLine(), Msg: "read: " + re.err.Error(), Err: re.err}
	case errors.As(err, &se):
		return &Error{Name: p.name, Line: p.lr.lineAt(off), Msg: "invalid JSON: " + se.Error(), Err: err}
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return p.eof()
	}
	return &Error{Name: p.name, Line: p.lr.lastLine(), Msg: err.Error(), Err: err}
}

// errAt returns an *Error at the line of offset off.
func (p *parser) errAt(off int64, f field, format string, args ...any) error {
	return &Error{Name: p.name, Line: p.lr.lineAt(off), Field: f.String(), Msg: fmt.Sprintf(format, args...)}
}

// typeErr reports a value of the wrong JSON type.
func (p *parser) typeErr(tok token, f field, want string) error {
	return p.errAt(tok.off, f, "got %s (want %s)", describe(tok), want)
}

// describe names a token for an error message.
func describe(tok token) string {
	switch tok.kind {
	case '"':
		return fmt.Sprintf("the string %.80q", tok.s)
	case '0':
		return "the number " + tok.s
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 0:
		return "the end of the value"
	}
	return strconv.Quote(string(tok.kind))
}

// manifest reads the top-level object.
func (p *parser) manifest() (*Manifest, error) {
	tok, err := p.topOrEOF()
	if err == io.EOF {
		return nil, &Error{Name: p.name, Line: p.lr.lastLine(), Msg: `the manifest is empty (want a JSON object like {"files": []})`}
	}
	if err != nil {
		return nil, err
	}
	if tok.kind != '{' {
		return nil, p.typeErr(tok, topField(""), `a JSON object like {"files": []}`)
	}
	line := p.lr.lineAt(tok.off)
	var seenFiles, seenOutbox bool
	for p.dec.More() {
		key, err := p.top()
		if err != nil {
			return nil, err
		}
		switch key.s {
		case "files":
			if seenFiles {
				return nil, p.errAt(key.off, topField("files"), `the key appears twice (want one "files" array)`)
			}
			seenFiles = true
			err = p.files()
		case "outbox":
			if seenOutbox {
				return nil, p.errAt(key.off, topField("outbox"), `the key appears twice (want one "outbox" object)`)
			}
			seenOutbox = true
			err = p.outbox()
		default:
			err = p.errAt(key.off, topField(""), `unknown key %.80q (want "files" and optionally "outbox")`, key.s)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := p.top(); err != nil { // '}'
		return nil, err
	}
	if !seenFiles {
		return nil, &Error{Name: p.name, Line: line, Field: "files",
			Msg: `missing (want "files": [...] listing the files, empty if there are none)`}
	}
	switch tok, err := p.topOrEOF(); {
	case err == io.EOF:
	case err != nil:
		return nil, err
	default:
		return nil, p.errAt(tok.off, topField(""), "got %s after the manifest's closing brace (want nothing but white space)", describe(tok))
	}
	m := p.m
	return &m, nil
}

// files reads the "files" array.
func (p *parser) files() error {
	tok, err := p.top()
	if err != nil {
		return err
	}
	if tok.kind != '[' {
		return p.typeErr(tok, topField("files"), "an array of file objects")
	}
	for i := 0; p.dec.More(); i++ {
		if err := p.entry(); err != nil {
			return err
		}
		tok := p.next()
		if tok.kind != '{' {
			return p.typeErr(tok, fileField(i, ""), `an object with "path" and "url"`)
		}
		f, err := p.file(i, p.lr.lineAt(tok.off))
		if err != nil {
			return err
		}
		p.m.Files = append(p.m.Files, f)
		if i+1 == sampleFiles && p.size > 0 {
			p.presize()
		}
	}
	_, err = p.top() // ']'
	return err
}

// presize grows Files once to the number of files the input's length
// suggests (with a margin), instead of by repeated doubling: a manifest of
// a million files otherwise allocates several times its Files array.
func (p *parser) presize() {
	read := p.dec.InputOffset()
	n := int64(len(p.m.Files))
	if read <= 0 || n == 0 {
		return
	}
	per := read / n
	if per <= 0 {
		return
	}
	est := p.size / per // entries the whole input holds at this rate
	est += est / 16
	if est <= int64(cap(p.m.Files)) || est > 1<<31 {
		return
	}
	files := make([]File, len(p.m.Files), est)
	copy(files, p.m.Files)
	p.m.Files = files
}

// next returns the next token of the current entry.
func (p *parser) next() token { return p.obj.next() }

// more reports whether the current object or array of the entry has more.
func (p *parser) more() bool { return p.obj.more() }

// key returns the next key of an object in the current entry.
func (p *parser) key() token { return p.obj.nextInterned() }

// endObject consumes the closing brace of an object whose keys are all read.
func (p *parser) endObject() { p.obj.next() }

// field names a value for error messages. It is formatted only when an
// error is reported, so naming fields costs nothing while parsing.
type field struct {
	sect   int8   // sectTop, sectFile or sectOutbox
	i      int    // index into files for sectFile
	key    string // e.g. "path" or "block_sha256.hashes"; "" for the object itself
	elem   int    // array element + 1; 0 for none
	header string // header name, for keys "headers", if hasHdr
	hasHdr bool
}

const (
	sectTop int8 = iota
	sectFile
	sectOutbox
)

// fileField names field key of files[i] (files[i] itself if key is "").
func fileField(i int, key string) field { return field{sect: sectFile, i: i, key: key} }

// outboxField names field key of the outbox.
func outboxField(key string) field { return field{sect: sectOutbox, key: key} }

// topField names a key of the top-level object.
func topField(key string) field { return field{key: key} }

// at names element j of an array field.
func (f field) at(j int) field { f.elem = j + 1; return f }

// named names header h of a headers field.
func (f field) named(h string) field { f.header, f.hasHdr = h, true; return f }

func (f field) String() string {
	var b strings.Builder
	switch f.sect {
	case sectFile:
		b.WriteString("files[")
		b.WriteString(strconv.Itoa(f.i))
		b.WriteString("]")
	case sectOutbox:
		b.WriteString("outbox")
	}
	if f.key != "" {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(f.key)
	}
	if f.elem > 0 {
		b.WriteString("[" + strconv.Itoa(f.elem-1) + "]")
	}
	if f.hasHdr {
		b.WriteString("[" + strconv.Quote(f.header) + "]")
	}
	return b.String()
}

// str returns tok as a string or reports a type error for f.
func (p *parser) str(tok token, f field, want string) (string, error) {
	if tok.kind != '"' {
		return "", p.typeErr(tok, f, want)
	}
	return tok.s, nil
}

// boolean returns tok as a bool or reports a type error for f.
func (p *parser) boolean(tok token, f field) (bool, error) {
	if tok.kind != 't' && tok.kind != 'f' {
		return false, p.typeErr(tok, f, "true or false")
	}
	return tok.kind == 't', nil
}

// integer returns tok as an integer in [0, max] or reports an error; want
// describes the accepted values.
func (p *parser) integer(tok token, f field, max int64, want string) (int64, error) {
	if tok.kind != '0' {
		return 0, p.typeErr(tok, f, want)
	}
	s := tok.s
	v, err := strconv.ParseInt(s, 10, 64)
	switch {
	case strings.ContainsAny(s, ".eE"):
		return 0, p.errAt(tok.off, f, "%s is not an integer in digits only, without a fraction or exponent (want %s)", s, want)
	case len(s) > 0 && s[0] == '-' && (err != nil || v < 0):
		return 0, p.errAt(tok.off, f, "%s is negative (want %s)", s, want)
	case err != nil || v > max:
		return 0, p.errAt(tok.off, f, "%s is too large (want %s)", s, want)
	}
	return v, nil
}
