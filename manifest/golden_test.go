package manifest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected output of the golden tests in testdata/")

// golden compares got with the file want, or rewrites it under -update.
func golden(t *testing.T, want string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(want, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	exp, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, exp) {
		t.Errorf("%s differs (run go test -update to accept)\ngot:\n%s\nwant:\n%s", want, got, exp)
	}
}

// TestGoldenErrors parses each testdata/bad/*.json and compares its error
// with the matching .err file.
func TestGoldenErrors(t *testing.T) {
	inputs, err := filepath.Glob("testdata/bad/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			m, err := Open(in, lookupTest)
			if err == nil {
				t.Fatalf("parsed without error: %+v", m)
			}
			checkErrLine(t, err)
			golden(t, strings.TrimSuffix(in, ".json")+".err", []byte(err.Error()+"\n"))
		})
	}
}

// TestGoldenFormat parses each testdata/good/*.json and compares Format's
// output with the matching .out file.
func TestGoldenFormat(t *testing.T) {
	inputs, err := filepath.Glob("testdata/good/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			m, err := Open(in, lookupTest)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Format(m)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(in, ".json")+".out", out)
			checkRoundTrip(t, m)
		})
	}
}
