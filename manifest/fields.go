package manifest

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Limits on paths, as Linux's NAME_MAX and PATH_MAX.
const (
	maxSegment = 255
	maxPath    = 4096
)

const wantPath = `want a relative "/"-separated path like "dir/file.bin"`

// checkPath returns "" if p is an acceptable path of a file or of the outbox,
// or else a message saying what is wrong with it.
func checkPath(p string) string {
	switch {
	case p == "":
		return fmt.Sprintf("%q is empty (%s)", p, wantPath)
	case len(p) > maxPath:
		return fmt.Sprintf("%.40q... is %d bytes long (want at most %d bytes)", p, len(p), maxPath)
	case !utf8.ValidString(p):
		return fmt.Sprintf("%q is not UTF-8 (%s)", p, wantPath)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Sprintf("%q contains a NUL byte (%s)", p, wantPath)
	case p[0] == '/':
		return fmt.Sprintf("%q is absolute (%s)", p, wantPath)
	case p[len(p)-1] == '/':
		return fmt.Sprintf("%q ends with \"/\" (%s; directories are implied by file paths)", p, wantPath)
	}
	for rest := p; rest != ""; {
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		switch {
		case seg == "":
			return fmt.Sprintf("%q has an empty segment (%s, without \"//\")", p, wantPath)
		case seg == "." || seg == "..":
			return fmt.Sprintf("%q leaves the mount (want a relative path without \".\" or \"..\" segments)", p)
		case len(seg) > maxSegment:
			return fmt.Sprintf("%.40q... has a segment of %d bytes (want at most %d bytes between slashes)", p, len(seg), maxSegment)
		}
	}
	return ""
}

// checkURL returns "" if u is an acceptable file or mirror URL, or else a
// message saying what is wrong with it.
func checkURL(u string) string {
	const want = `want an absolute http or https URL like "https://host/path"`
	if plainURL(u) {
		return "" // what url.Parse would accept, without its allocations
	}
	return parsedURLProblem(u)
}

// parsedURLProblem is checkURL by url.Parse.
func parsedURLProblem(u string) string {
	const want = `want an absolute http or https URL like "https://host/path"`
	if !utf8.ValidString(u) {
		return fmt.Sprintf("%q is not UTF-8 (%s)", u, want)
	}
	pu, err := url.Parse(u)
	switch {
	case err != nil:
		msg := err.Error()
		if ue, ok := err.(*url.Error); ok {
			msg = ue.Err.Error()
		}
		return fmt.Sprintf("%q is not a URL: %s (%s)", u, msg, want)
	case pu.Scheme != "http" && pu.Scheme != "https":
		return fmt.Sprintf("%q has scheme %q (%s)", u, pu.Scheme, want)
	case pu.Opaque != "" || pu.Hostname() == "":
		return fmt.Sprintf("%q has no host (%s)", u, want)
	case pu.Fragment != "" || strings.IndexByte(u, '#') >= 0:
		return fmt.Sprintf("%q has a #fragment, which is never sent to the server (%s, without \"#\")", u, want)
	}
	return ""
}

// plainURL reports whether u is an http or https URL of the plainest
// form: a host name or IPv4 address, an optional numeric port, and a path
// of unreserved characters only. url.Parse accepts every such URL with its
// scheme, a host and no fragment, so checkURL need not parse it; anything
// else is checked by url.Parse.
func plainURL(u string) bool {
	rest, ok := strings.CutPrefix(u, "https://")
	if !ok {
		if rest, ok = strings.CutPrefix(u, "http://"); !ok {
			return false
		}
	}
	i := 0
	for i < len(rest) && (isAlnum(rest[i]) || rest[i] == '.' || rest[i] == '-') {
		i++
	}
	if i == 0 {
		return false
	}
	if i < len(rest) && rest[i] == ':' {
		j := i + 1
		for j < len(rest) && '0' <= rest[j] && rest[j] <= '9' {
			j++
		}
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(rest) && rest[i] != '/' {
		return false
	}
	for ; i < len(rest); i++ {
		if c := rest[i]; !isAlnum(c) && c != '/' && c != '.' && c != '-' && c != '_' && c != '~' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// checkOutboxURL is checkURL plus the rules for a base URL that paths are
// appended to. u must already end with "/".
func checkOutboxURL(u string) string {
	if msg := checkURL(u); msg != "" {
		return msg
	}
	if strings.IndexByte(u, '?') >= 0 {
		return fmt.Sprintf("%q has a ?query, but file paths are appended to it (want a base URL like \"https://host/incoming/\")", u)
	}
	return ""
}

// checkHex64 returns "" if s is 64 hex digits (either case), or else a message.
func checkHex64(s string) string {
	const want = "want 64 hex digits of a SHA-256 digest"
	if len(s) != 64 {
		return fmt.Sprintf("%.80q is %d characters long (%s)", s, len(s), want)
	}
	for i := 0; i < len(s); i++ {
		if unhex(s[i]) < 0 {
			return fmt.Sprintf("%q has the non-hex character %q (%s)", s, s[i:i+1], want)
		}
	}
	return ""
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// decodeHex32 decodes 64 hex digits already checked by checkHex64.
func decodeHex32(s string) (h [32]byte) {
	for i := range h {
		h[i] = byte(unhex(s[2*i])<<4 | unhex(s[2*i+1]))
	}
	return h
}

// isLowerHex64 reports whether s is 64 lowercase hex digits.
func isLowerHex64(s string) bool {
	return checkHex64(s) == "" && strings.ToLower(s) == s
}

// reservedHeaders are set by ferry itself; a manifest that set them would
// break range requests or the HTTP framing.
var reservedHeaders = []string{"Range", "If-Range", "Host", "Content-Length", "Transfer-Encoding", "Connection"}

// checkHeaderName returns "" if name is an HTTP field name ferry lets a
// manifest set, or else a message.
func checkHeaderName(name string) string {
	if name == "" {
		return `"" is not a header name (want a name like "Authorization")`
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Sprintf("%q is not a header name: %q is not allowed (want letters, digits and !#$%%&'*+-.^_`|~)", name, name[i:i+1])
		}
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return fmt.Sprintf("%q is set by ferry itself (want any header but %s)", name, strings.Join(reservedHeaders, ", "))
		}
	}
	return ""
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// checkHeaderValue returns "" if v, the expansion of raw, can be sent as an
// HTTP field value, or else a message. Messages quote raw, never v, so that
// expanded secrets stay out of logs.
func checkHeaderValue(raw, v string) string {
	what := func() string {
		if raw != v {
			return fmt.Sprintf("%q after expanding variables", raw)
		}
		return fmt.Sprintf("%q", raw)
	}
	if !utf8.ValidString(v) {
		return what() + " is not UTF-8 (want UTF-8 text)"
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Sprintf("%s contains the control character %q (want printable text)", what(), v[i:i+1])
		}
	}
	return ""
}

// duplicateHeader returns a name in h that differs from another only in case.
func duplicateHeader(h map[string]string) (string, string, bool) {
	if len(h) < 2 {
		return "", "", false
	}
	seen := make(map[string]string, len(h))
	for name := range h {
		low := strings.ToLower(name)
		if other, ok := seen[low]; ok {
			a, b := other, name
			if b < a {
				a, b = b, a
			}
			return a, b, true
		}
		seen[low] = name
	}
	return "", "", false
}

// expandError is a ${NAME} reference that cannot be expanded.
type expandError struct{ msg string }

// expand replaces each ${NAME} in s with the variable's value from env. "$$"
// and a "$" not followed by "{" stay as written. NAME is a letter or "_"
// followed by letters, digits and "_".
func expand(s string, env func(string) (string, bool)) (string, *expandError) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c != '$' || i+1 == len(s):
			b.WriteByte(c)
			i++
		case s[i+1] == '$':
			b.WriteString("$$")
			i += 2
		case s[i+1] != '{':
			b.WriteByte(c)
			i++
		default:
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", &expandError{fmt.Sprintf("%q has \"${\" without a closing \"}\" (want ${NAME})", s)}
			}
			name := s[i+2 : i+2+end]
			if !isVarName(name) {
				return "", &expandError{fmt.Sprintf("%q names the variable %q (want ${NAME} with a letter or \"_\" followed by letters, digits and \"_\")", s, name)}
			}
			v, ok := lookup(env, name)
			if !ok {
				return "", &expandError{fmt.Sprintf("environment variable %q is not set (want it set in ferry's environment, for %q)", name, s)}
			}
			b.WriteString(v)
			i += 2 + end + 1
		}
	}
	return b.String(), nil
}

func lookup(env func(string) (string, bool), name string) (string, bool) {
	if env == nil {
		return "", false
	}
	return env(name)
}

func isVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// expandsItself reports whether expand would leave s unchanged with any
// environment: s has no "${" that is not part of "$$".
func expandsItself(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		if s[i+1] == '{' {
			return false
		}
		if s[i+1] == '$' {
			i++
		}
	}
	return true
}
