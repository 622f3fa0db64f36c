package lint

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// forbidden lists, per package, the project packages it must not depend on
// (directly or not). See STYLE.md, "Layout".
var forbidden = map[string][]string{
	"ferry/manifest": {"ferry/cache", "ferry/fetcher", "ferry/fs", "ferry/origin", "ferry/cmd/ferry"},
	"ferry/fetcher":  {"ferry/cache", "ferry/fs", "ferry/cmd/ferry"},
	"ferry/cache":    {"ferry/fetcher", "ferry/fs", "ferry/cmd/ferry"},
	"ferry/origin":   {"ferry/cache", "ferry/fetcher", "ferry/fs", "ferry/cmd/ferry"},
	"ferry/fs":       {"ferry/cmd/ferry"},
	"ferry/uploader": {"ferry/fs", "ferry/fetcher", "ferry/cmd/ferry"},
	"ferry/control":  {"ferry/fs", "ferry/cmd/ferry"},
}

func TestImportBoundaries(t *testing.T) {
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, b := range bad {
			if deps[b] {
				t.Errorf("%s depends on %s, which it must not", pkg, b)
			}
		}
	}
}

// rules are patterns production code (not tests, not cmd/) must not contain.
var rules = []struct {
	re      *regexp.Regexp
	why     string
	cmdOnly bool // allowed under cmd/
}{
	{regexp.MustCompile(`\bpanic\(`), "return an error instead of panicking", false},
	{regexp.MustCompile(`context\.TODO\(\)`), "pass the caller's context", false},
	{regexp.MustCompile(`\bos\.Exit\(`), "only main decides exit codes", true},
	{regexp.MustCompile(`^\s*log\.(Print|Fatal|Panic)`), "inject a *slog.Logger", false},
}

func TestConventions(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		inCmd := strings.HasPrefix(rel, "cmd"+string(filepath.Separator))
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			for _, r := range rules {
				// net/http's documented way to abort a response.
				if strings.Contains(line, "panic(http.ErrAbortHandler)") {
					continue
				}
				if r.re.MatchString(line) && !(r.cmdOnly && inCmd) {
					t.Errorf("%s:%d: %s", rel, n, r.why)
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}
