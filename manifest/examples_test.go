package manifest

import (
	"path/filepath"
	"testing"
)

// TestExamples parses every example manifest in the repository's testdata,
// the ones the README shows users.
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../testdata/manifests/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no example manifests: %v", err)
	}
	env := func(name string) (string, bool) { return "test-" + name, true }
	for _, p := range paths {
		m, err := Open(p, env)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if len(m.Files) == 0 {
			t.Errorf("%s: no files", p)
		}
	}
}
