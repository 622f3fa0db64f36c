package manifest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// fileJSON and outboxJSON fix the order of keys in Format's output.
type fileJSON struct {
	Path     string            `json:"path"`
	URL      string            `json:"url"`
	Size     *int64            `json:"size,omitempty"`
	SHA256   string            `json:"sha256,omitempty"`
	MTime    string            `json:"mtime,omitempty"`
	Priority string            `json:"priority,omitempty"`
	Pin      bool              `json:"pin,omitempty"`
	Mirrors  []string          `json:"mirrors,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Blocks   *blocksJSON       `json:"block_sha256,omitempty"`
}

type blocksJSON struct {
	BlockSize int64    `json:"block_size"`
	Hashes    []string `json:"hashes"`
}

type outboxJSON struct {
	Dir       string            `json:"dir"`
	URL       string            `json:"url"`
	Protocol  string            `json:"protocol"`
	Overwrite bool              `json:"overwrite,omitempty"`
	Encoding  string            `json:"encoding,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// Format writes m as canonical JSON: the first line opens the "files" array,
// files[i] is on line i+2, one object per line, and the outbox comes last.
// Fields with their default value are left out and headers are written as
// expanded, so Parse(Format(m)) equals m (apart from Line).
//
// Format first checks m with Validate. It also refuses a header value that
// Parse would expand again (one with "${" that is not part of "$$"), without
// quoting the value, which may hold a secret.
func Format(m *Manifest) ([]byte, error) {
	if err := Validate(m, ""); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteString("{\"files\": [\n")
	for i := range m.Files {
		f := &m.Files[i]
		if err := checkStable(f.Headers, fileField(i, "headers")); err != nil {
			return nil, err
		}
		if err := enc.Encode(toJSON(f)); err != nil {
			return nil, fmt.Errorf("manifest: format %s: %w", fileField(i, ""), err)
		}
		if i < len(m.Files)-1 {
			buf.Truncate(buf.Len() - 1)
			buf.WriteString(",\n")
		}
	}
	buf.WriteString("]")
	if o := m.Outbox; o != nil {
		if err := checkStable(o.Headers, outboxField("headers")); err != nil {
			return nil, err
		}
		buf.WriteString(",\n\"outbox\": ")
		oj := outboxJSON{Dir: o.Dir, URL: o.URL, Protocol: o.Protocol, Overwrite: o.Overwrite, Encoding: o.Encoding, Headers: o.Headers}
		if err := enc.Encode(oj); err != nil {
			return nil, fmt.Errorf("manifest: format outbox: %w", err)
		}
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteString("}\n")
	return buf.Bytes(), nil
}

func toJSON(f *File) fileJSON {
	j := fileJSON{Path: f.Path, URL: f.URL, SHA256: f.SHA256, Pin: f.Pin, Mirrors: f.Mirrors, Headers: f.Headers}
	if f.Size >= 0 {
		j.Size = &f.Size
	}
	if !f.MTime.IsZero() {
		j.MTime = f.MTime.UTC().Format(time.RFC3339Nano)
	}
	if f.Priority != Normal {
		j.Priority = f.Priority.String()
	}
	if b := f.Blocks; b != nil {
		j.Blocks = &blocksJSON{BlockSize: b.BlockSize, Hashes: make([]string, len(b.Hashes))}
		for k, h := range b.Hashes {
			j.Blocks.Hashes[k] = hex.EncodeToString(h[:])
		}
	}
	return j
}

// checkStable refuses header values that Parse would change by expansion.
func checkStable(h map[string]string, f field) error {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if !expandsItself(h[name]) {
			return &Error{Field: f.named(name).String(),
				Msg: `the value contains "${", which Parse would expand (want no "${" outside "$$")`}
		}
	}
	return nil
}
