package manifest

import (
	"maps"
	"strings"
	"time"
)

// Keys of a file object, as bits of a seen-set.
const (
	keyPath = 1 << iota
	keyURL
	keySize
	keySHA256
	keyMTime
	keyPriority
	keyPin
	keyMirrors
	keyHeaders
	keyBlocks
)

const (
	wantSize      = "an integer number of bytes from 0 to 4611686018427387904, or no \"size\" if it is unknown"
	wantBlockSize = "a power of two from 1 to 1073741824, like 1048576"
)

const fileKeys = `path, url, size, sha256, mtime, priority, pin, mirrors, headers or block_sha256`

func fileKeyBit(key string) int {
	switch key {
	case "path":
		return keyPath
	case "url":
		return keyURL
	case "size":
		return keySize
	case "sha256":
		return keySHA256
	case "mtime":
		return keyMTime
	case "priority":
		return keyPriority
	case "pin":
		return keyPin
	case "mirrors":
		return keyMirrors
	case "headers":
		return keyHeaders
	case "block_sha256":
		return keyBlocks
	}
	return 0
}

// file reads files[i] after its opening brace, which is on line line.
func (p *parser) file(i, line int) (File, error) {
	f := File{Size: -1, Priority: Normal, Line: line}
	var seen int
	var blocksOff int64
	for p.more() {
		key := p.key()
		bit := fileKeyBit(key.s)
		if bit == 0 {
			return f, p.errAt(key.off, fileField(i, ""), "unknown key %.80q (want %s)", key.s, fileKeys)
		}
		if seen&bit != 0 {
			return f, p.errAt(key.off, fileField(i, key.s), "the key appears twice (want each key once)")
		}
		seen |= bit
		tok := p.next()
		if tok.kind == 'n' && bit != keyPath && bit != keyURL {
			continue // null: as if left out
		}
		var err error
		fd := fileField(i, key.s)
		switch bit {
		case keyPath:
			err = p.filePath(&f, i, tok)
		case keyURL:
			f.URL, err = p.url(tok, fd)
		case keySize:
			f.Size, err = p.integer(tok, fd, MaxSize, wantSize)
		case keySHA256:
			f.SHA256, err = p.sha256(tok, fd)
		case keyMTime:
			f.MTime, err = p.mtime(tok, fd)
		case keyPriority:
			f.Priority, err = p.priority(tok, fd)
		case keyPin:
			f.Pin, err = p.boolean(tok, fd)
		case keyMirrors:
			f.Mirrors, err = p.mirrors(tok, fd)
		case keyHeaders:
			f.Headers, err = p.headers(tok, fd)
		case keyBlocks:
			blocksOff = tok.off
			f.Blocks, err = p.blocks(tok, i)
		}
		if err != nil {
			return f, err
		}
	}
	p.endObject()
	for _, req := range []string{"path", "url"} {
		if seen&fileKeyBit(req) == 0 {
			return f, &Error{Name: p.name, Line: line, Field: fileField(i, "").String(),
				Msg: `missing "` + req + `" (want every file to have "path" and "url")`}
		}
	}
	if f.Blocks != nil {
		if msg := checkBlockCount(f.Size, f.Blocks); msg != "" {
			return f, p.errAt(blocksOff, fileField(i, "block_sha256.hashes"), "%s", msg)
		}
	}
	return f, nil
}

func (p *parser) filePath(f *File, i int, tok token) error {
	fd := fileField(i, "path")
	s, err := p.str(tok, fd, wantPath[5:])
	if err != nil {
		return err
	}
	if msg := checkPath(s); msg != "" {
		return p.errAt(tok.off, fd, "%s", msg)
	}
	if msg := p.cross.addFile(s, i, f.Line); msg != "" {
		return p.errAt(tok.off, fd, "%s", msg)
	}
	f.Path = s
	return nil
}

func (p *parser) url(tok token, fd field) (string, error) {
	s, err := p.str(tok, fd, `an http or https URL`)
	if err != nil {
		return "", err
	}
	if msg := checkURL(s); msg != "" {
		return "", p.errAt(tok.off, fd, "%s", msg)
	}
	return s, nil
}

func (p *parser) sha256(tok token, fd field) (string, error) {
	s, err := p.str(tok, fd, "64 hex digits of a SHA-256 digest")
	if err != nil {
		return "", err
	}
	if msg := checkHex64(s); msg != "" {
		return "", p.errAt(tok.off, fd, "%s", msg)
	}
	return strings.ToLower(s), nil
}

func (p *parser) mtime(tok token, fd field) (time.Time, error) {
	s, err := p.str(tok, fd, wantTime[5:])
	if err != nil {
		return time.Time{}, err
	}
	t, perr := time.Parse(time.RFC3339Nano, s)
	if perr != nil {
		return time.Time{}, p.errAt(tok.off, fd, "%.80q is not an RFC 3339 time (%s)", s, wantTime)
	}
	t = t.UTC()
	if msg := checkMTime(t); msg != "" {
		return time.Time{}, p.errAt(tok.off, fd, "%q %s", s, msg)
	}
	return t, nil
}

func (p *parser) priority(tok token, fd field) (Priority, error) {
	const want = `"foreground", "high", "normal" or "low"`
	s, err := p.str(tok, fd, want)
	if err != nil {
		return Normal, err
	}
	pr, perr := ParsePriority(s)
	if perr != nil {
		return Normal, p.errAt(tok.off, fd, "%.80q is not a priority (want %s)", s, want)
	}
	return pr, nil
}

// mirrors reads a "mirrors" array.
func (p *parser) mirrors(tok token, fd field) ([]string, error) {
	if tok.kind != '[' {
		return nil, p.typeErr(tok, fd, "an array of http or https URLs")
	}
	var out []string
	for j := 0; p.more(); j++ {
		u, err := p.url(p.next(), fd.at(j))
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	p.next() // ']'
	return out, nil
}

// headers reads a "headers" object and expands the variables in its values.
// Equal header sets share one map.
func (p *parser) headers(tok token, fd field) (map[string]string, error) {
	if tok.kind != '{' {
		return nil, p.typeErr(tok, fd, `an object of header names and values, like {"Authorization": "Bearer ${TOKEN}"}`)
	}
	h := p.scratch
	clear(h)
	for p.more() {
		name := p.key()
		sub := fd.named(name.s)
		if _, dup := h[name.s]; dup {
			return nil, p.errAt(name.off, sub, "the header appears twice (want each header once)")
		}
		if msg := checkHeaderName(name.s); msg != "" {
			return nil, p.errAt(name.off, sub, "%s", msg)
		}
		val := p.obj.nextInterned()
		raw, err := p.str(val, sub, "a string")
		if err != nil {
			return nil, err
		}
		v, err := p.expand(raw, val.off, sub)
		if err != nil {
			return nil, err
		}
		h[name.s] = v
	}
	p.endObject()
	if len(h) == 0 {
		return nil, nil
	}
	if maps.Equal(h, p.prevHeaders) {
		return p.prevHeaders, nil
	}
	if a, b, dup := duplicateHeader(h); dup {
		return nil, p.errAt(tok.off, fd, "%q and %q are the same header (want each header once, in any case)", a, b)
	}
	p.prevHeaders = maps.Clone(h)
	return p.prevHeaders, nil
}

// blocks reads the "block_sha256" object of files[i].
func (p *parser) blocks(tok token, i int) (*BlockHashes, error) {
	fd := fileField(i, "block_sha256")
	const want = `an object like {"block_size": 1048576, "hashes": ["<64 hex digits>", ...]}`
	if tok.kind != '{' {
		return nil, p.typeErr(tok, fd, want)
	}
	b := &BlockHashes{}
	var seenSize, seenHashes bool
	for p.more() {
		key := p.key()
		sub := fileField(i, "block_sha256."+key.s)
		var err error
		switch {
		case key.s == "block_size" && !seenSize:
			seenSize = true
			err = p.blockSize(b, p.next(), sub)
		case key.s == "hashes" && !seenHashes:
			seenHashes = true
			err = p.blockHashes(b, p.next(), sub)
		case key.s == "block_size" || key.s == "hashes":
			err = p.errAt(key.off, sub, "the key appears twice (want each key once)")
		default:
			err = p.errAt(key.off, fd, `unknown key %.80q (want "block_size" and "hashes")`, key.s)
		}
		if err != nil {
			return nil, err
		}
	}
	p.endObject()
	if !seenSize || !seenHashes {
		return nil, p.errAt(tok.off, fd, `missing "block_size" or "hashes" (want %s)`, want)
	}
	return b, nil
}

func (p *parser) blockSize(b *BlockHashes, tok token, fd field) error {
	var err error
	b.BlockSize, err = p.integer(tok, fd, MaxBlockSize, wantBlockSize)
	if err != nil {
		return err
	}
	if msg := checkBlockSize(b.BlockSize); msg != "" {
		return p.errAt(tok.off, fd, "%s", msg)
	}
	return nil
}

func (p *parser) blockHashes(b *BlockHashes, tok token, fd field) error {
	if tok.kind != '[' {
		return p.typeErr(tok, fd, "an array of SHA-256 digests in hex, one per block")
	}
	for j := 0; p.more(); j++ {
		h := p.next()
		s, err := p.str(h, fd.at(j), "64 hex digits of a SHA-256 digest")
		if err != nil {
			return err
		}
		if msg := checkHex64(s); msg != "" {
			return p.errAt(h.off, fd.at(j), "%s", msg)
		}
		b.Hashes = append(b.Hashes, decodeHex32(s))
	}
	p.next() // ']'
	return nil
}

// expand expands and checks the header value raw, remembering the results
// of short values: within one Parse the environment is taken as fixed.
func (p *parser) expand(raw string, off int64, fd field) (string, error) {
	if v, ok := p.expanded[raw]; ok {
		return v, nil
	}
	v, xerr := expand(raw, p.env)
	if xerr != nil {
		return "", p.errAt(off, fd, "%s", xerr.msg)
	}
	if msg := checkHeaderValue(raw, v); msg != "" {
		return "", p.errAt(off, fd, "%s", msg)
	}
	if len(raw) <= maxInternedLen && len(p.expanded) < maxInterned {
		p.expanded[raw] = v
	}
	return v, nil
}
