package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// loadDir reads every regular file under dir into memory.
func loadDir(dir string) ([]entry, error) {
	var files []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, entry{path: filepath.ToSlash(rel), data: b, size: int64(len(b))})
		return nil
	})
	return files, err
}

// loadManifest streams the paths and sizes of a ferry manifest.
func loadManifest(path string) ([]entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	// {"files": [ ... ]}
	for _, want := range []any{json.Delim('{'), "files", json.Delim('[')} {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if tok != want {
			return nil, fmt.Errorf("%s: want %v, got %v (only {\"files\": [...]} first)", path, want, tok)
		}
	}
	var files []entry
	for dec.More() {
		var e struct {
			Path string `json:"path"`
			Size int64  `json:"size"`
		}
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", path, len(files)+1, err)
		}
		files = append(files, entry{path: e.Path, size: e.Size})
	}
	return files, nil
}
