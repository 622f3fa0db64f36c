package manifest

import "strings"

const outboxKeys = `dir, url, protocol, overwrite, encoding or headers`

// outbox reads the "outbox" value.
func (p *parser) outbox() error {
	if err := p.entry(); err != nil {
		return err
	}
	tok := p.next()
	if tok.kind == 'n' { // null: no outbox
		return nil
	}
	if tok.kind != '{' {
		return p.typeErr(tok, topField("outbox"), `an object like {"dir": "outbox", "url": "https://host/incoming/"}`)
	}
	o := &Outbox{Protocol: "put", Line: p.lr.lineAt(tok.off)}
	seen := map[string]bool{}
	var dirOff int64
	for p.more() {
		key := p.key()
		switch key.s {
		case "dir", "url", "protocol", "overwrite", "encoding", "headers":
		default:
			return p.errAt(key.off, outboxField(""), "unknown key %.80q (want %s)", key.s, outboxKeys)
		}
		fd := outboxField(key.s)
		if seen[key.s] {
			return p.errAt(key.off, fd, "the key appears twice (want each key once)")
		}
		seen[key.s] = true
		tok := p.next()
		if tok.kind == 'n' && key.s != "dir" && key.s != "url" {
			continue // null: as if left out
		}
		var err error
		switch key.s {
		case "dir":
			dirOff = tok.off
			o.Dir, err = p.outboxDir(tok, fd)
		case "url":
			o.URL, err = p.outboxURL(tok, fd)
		case "protocol":
			o.Protocol, err = p.enum(tok, fd, protocols, wantProtocol)
		case "overwrite":
			o.Overwrite, err = p.boolean(tok, fd)
		case "encoding":
			o.Encoding, err = p.enum(tok, fd, encodings, wantEncoding)
		case "headers":
			o.Headers, err = p.headers(tok, fd)
		}
		if err != nil {
			return err
		}
	}
	p.endObject()
	for _, req := range []string{"dir", "url"} {
		if !seen[req] {
			return &Error{Name: p.name, Line: o.Line, Field: "outbox",
				Msg: `missing "` + req + `" (want an outbox to have "dir" and "url")`}
		}
	}
	if msg := p.cross.setOutbox(o.Dir, o.Line); msg != "" {
		return p.errAt(dirOff, outboxField("dir"), "%s", msg)
	}
	p.m.Outbox = o
	return nil
}

func (p *parser) outboxDir(tok token, fd field) (string, error) {
	s, err := p.str(tok, fd, wantPath[5:])
	if err != nil {
		return "", err
	}
	if msg := checkPath(s); msg != "" {
		return "", p.errAt(tok.off, fd, "%s", msg)
	}
	return s, nil
}

func (p *parser) outboxURL(tok token, fd field) (string, error) {
	s, err := p.str(tok, fd, `an http or https base URL like "https://host/incoming/"`)
	if err != nil {
		return "", err
	}
	if msg := checkOutboxURL(s); msg != "" {
		return "", p.errAt(tok.off, fd, "%s", msg)
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s, nil
}

// enum reads a string that is one of allowed.
func (p *parser) enum(tok token, fd field, allowed []string, want string) (string, error) {
	s, err := p.str(tok, fd, want)
	if err != nil {
		return "", err
	}
	if msg := checkOneOf(s, allowed, want); msg != "" {
		return "", p.errAt(tok.off, fd, "%s", msg)
	}
	return s, nil
}
