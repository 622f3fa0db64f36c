package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"ferry/manifest"
	"ferry/origin"
)

// TestHelpEveryCommand: --help of every command shows its usage line, every
// flag and an example.
func TestHelpEveryCommand(t *testing.T) {
	for _, c := range commands() {
		var out bytes.Buffer
		err := run(context.Background(), []string{c.name, "--help"}, &out, &out)
		if classify(err) != exitOK {
			t.Errorf("%s --help: %v", c.name, err)
		}
		text := out.String()
		for _, want := range []string{"Usage: ferry " + c.name, "Example:\n  ferry " + c.name} {
			if !strings.Contains(text, want) {
				t.Errorf("%s --help lacks %q:\n%s", c.name, want, text)
			}
		}
		f := newFlagSet(c)
		c.flags(f)
		f.VisitAll(func(fl *pflag.Flag) {
			if !strings.Contains(text, "--"+fl.Name) {
				t.Errorf("%s --help lacks --%s", c.name, fl.Name)
			}
		})
	}
	var out bytes.Buffer
	run(context.Background(), []string{"help"}, &out, &out)
	for _, c := range commands() {
		if !strings.Contains(out.String(), "\n  "+c.name+" ") {
			t.Errorf("ferry help does not list %s:\n%s", c.name, out.String())
		}
	}
}

func TestHelperArgs(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		args  []string
		want  []string // nil: not a helper call
		fake  bool
		err   string
	}{
		{"/usr/bin/ferry", []string{"mount", "m.json", "/mnt"}, nil, false, ""},
		{"/usr/bin/ferry", []string{"status", "/mnt", "-o", "x"}, nil, false, ""},
		{"/usr/bin/ferry", []string{"stauts", "/mnt"}, nil, false, ""}, // a typo stays an unknown command
		// mount.fuse3 runs "ferry SOURCE MOUNTPOINT -o OPTIONS".
		{"ferry", []string{"/m.json", "/mnt", "-o", "rw,dev,suid,cache_dir=/c,allow_other,max_conns=4"},
			[]string{"mount", "--daemon", "--cache-dir=/c", "--allow-other", "--max-conns=4", "--", "/m.json", "/mnt"}, false, ""},
		// mount(8) runs "/sbin/mount.fuse.ferry SOURCE MOUNTPOINT [-sfnv] -o OPTIONS [-t TYPE]".
		{"/sbin/mount.fuse.ferry", []string{"/m.json", "/mnt", "-n", "-o", "noauto,nofail,_netdev,x-systemd.after=network.target,comment=x,log_format=json,no_background", "-t", "fuse.ferry"},
			[]string{"mount", "--daemon", "--log-format=json", "--no-background", "--", "/m.json", "/mnt"}, false, ""},
		{"/sbin/mount.fuse.ferry", []string{"-m.json", "/mnt", "-ocache_dir=/c"},
			[]string{"mount", "--daemon", "--cache-dir=/c", "--", "-m.json", "/mnt"}, false, ""},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-f", "-o", "cache_dir=/c"},
			[]string{"mount", "--daemon", "--cache-dir=/c", "--", "/m.json", "/mnt"}, true, ""},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-s", "-o", "frobnicate,cache_dir=/c"},
			[]string{"mount", "--daemon", "--cache-dir=/c", "--", "/m.json", "/mnt"}, false, ""},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-o", "frobnicate"}, nil, false, `mount option "frobnicate": unknown`},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-o", "cache_dir"}, nil, false, "wants a value"},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-o", "daemon"}, nil, false, "unknown"},
		{"mount.fuse.ferry", []string{"/m.json"}, nil, false, "want MANIFEST and MOUNTPOINT"},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-t", "fuse.sshfs"}, nil, false, "want fuse.ferry"},
		{"mount.fuse.ferry", []string{"/m.json", "/mnt", "-o"}, nil, false, "wants a value"},
	} {
		got, ok, fake, err := helperArgs(tc.argv0, tc.args)
		switch {
		case tc.err != "":
			if !ok || err == nil || !strings.Contains(err.Error(), tc.err) || classify(err) != exitUsage {
				t.Errorf("%s %q: %v, %v; want a usage error with %q", tc.argv0, tc.args, ok, err, tc.err)
			}
		case tc.want == nil:
			if ok {
				t.Errorf("%s %q taken for a helper call: %q", tc.argv0, tc.args, got)
			}
		default:
			if !ok || err != nil || fake != tc.fake || !slices.Equal(got, tc.want) {
				t.Errorf("%s %q = %q, ok %v, fake %v, %v; want %q", tc.argv0, tc.args, got, ok, fake, err, tc.want)
			}
		}
	}
}

// TestRateLimitedLog: a repeating warning passes logBurst times a window,
// the next one that passes says how many were dropped; info records and
// other messages are not limited.
func TestRateLimitedLog(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	h := newRateLimited(slog.NewJSONHandler(&buf, nil), 3, time.Minute, func() time.Time { return now })
	log := slog.New(h).With("component", "test")
	for i := range 10 {
		log.Warn("origin down", "try", i)
		log.Info("tick", "i", i)
	}
	log.Error("other failure")
	count := func(s string) int { return strings.Count(buf.String(), s) }
	if n := count(`"msg":"origin down"`); n != 3 {
		t.Errorf("%d warnings passed in the window, want 3:\n%s", n, buf.String())
	}
	if count(`"msg":"tick"`) != 10 || count(`"msg":"other failure"`) != 1 {
		t.Errorf("info or other messages were limited:\n%s", buf.String())
	}
	now = now.Add(time.Minute)
	buf.Reset()
	log.Warn("origin down", "try", 10)
	if !strings.Contains(buf.String(), `"suppressed":7`) || !strings.Contains(buf.String(), `"component":"test"`) {
		t.Errorf("the first warning of the next window: %s", buf.String())
	}
	if _, err := newLogger(&buf, slog.LevelInfo, "xml"); err == nil {
		t.Error("log format xml accepted")
	}
}

func TestMountLogFormatFlag(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"mount", "--log-format", "yaml", "m.json", t.TempDir()}, &out, &out)
	if classify(err) != exitUsage || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("--log-format yaml: %v", err)
	}
}

func TestCtlUsage(t *testing.T) {
	for _, args := range [][]string{
		{"pause"}, {"priority", "high"}, {"priority", "urgent", "/x"}, {"pin", "--wait", "--unpin", "/x"},
		{"status", "--interval", "1ms"}, {"manifest"}, {"manifest", "ftp://x/y"}, {"manifest", "--parallel", "0", "http://x/y"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out); classify(err) != exitUsage {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// TestManifestCommand runs ferry manifest against a real origin: sizes and
// mtimes from HEAD (from a one-byte range when HEAD is refused), digests
// with --sha256, unique paths, URLs from standard input.
func TestManifestCommand(t *testing.T) {
	srv := origin.New(origin.Options{})
	srv.PutGenerated("pub/a.bin", 5000, 1)
	srv.PutGenerated("mirror/a.bin", 7000, 2)
	srv.PutGenerated("pub/data.tar.gz", 100, 3)
	srv.PutGenerated("nohead/z.iso", 1234, 4)
	// HEAD is refused under /nohead/, as some servers do.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, "/nohead/") {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { srv.Close() })
	base := ts.URL

	stdin := filepath.Join(t.TempDir(), "urls")
	os.WriteFile(stdin, []byte("# more\n\n  "+base+"/pub/data.tar.gz  \n"+base+"/nohead/z.iso\n"), 0o644)
	f, err := os.Open(stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	oldStdin := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = oldStdin }()

	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"manifest", base + "/pub/a.bin", base + "/mirror/a.bin", "-"}, &out, &errOut)
	if err != nil {
		t.Fatalf("ferry manifest: %v\n%s", err, errOut.String())
	}
	m, err := manifest.Parse(bytes.NewReader(out.Bytes()), "out.json", nil)
	if err != nil {
		t.Fatalf("the output is not a valid manifest: %v\n%s", err, out.String())
	}
	want := []struct {
		path string
		size int64
	}{{"a.bin", 5000}, {"a-2.bin", 7000}, {"data.tar.gz", 100}, {"z.iso", 1234}}
	if len(m.Files) != len(want) {
		t.Fatalf("%d files:\n%s", len(m.Files), out.String())
	}
	obj, _ := srv.Object("pub/a.bin")
	for i, w := range want {
		f := m.Files[i]
		if f.Path != w.path || f.Size != w.size || f.MTime.IsZero() || f.SHA256 != "" {
			t.Errorf("file %d: %+v, want path %q size %d and an mtime", i, f, w.path, w.size)
		}
	}
	if !m.Files[0].MTime.Equal(obj.LastModified) {
		t.Errorf("mtime %v, want Last-Modified %v", m.Files[0].MTime, obj.LastModified)
	}

	out.Reset()
	if err := run(context.Background(), []string{"manifest", "--sha256", base + "/pub/a.bin"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 5000)
	origin.GeneratedBytes(1, 0, data)
	sum := sha256.Sum256(data)
	if !strings.Contains(out.String(), `"sha256":"`+hex.EncodeToString(sum[:])+`"`) {
		t.Errorf("--sha256 output lacks the digest:\n%s", out.String())
	}

	// One URL fails: nothing on stdout, one line per failure, exit 1.
	out.Reset()
	errOut.Reset()
	err = run(context.Background(), []string{"manifest", base + "/pub/a.bin", base + "/missing.bin"}, &out, &errOut)
	if classify(err) != exitFailure || out.Len() != 0 || !strings.Contains(errOut.String(), "/missing.bin: HEAD: 404") {
		t.Errorf("a missing URL: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	var ce *codedError
	if !errors.As(err, &ce) {
		t.Errorf("error %v", err)
	}
}

func TestBaseNameAndUnique(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a/b.bin":      "b.bin",
		"http://h/a/b%20c.bin":  "b c.bin",
		"http://h/":             "h",
		"http://h:8080":         "h",
		"http://h/x/..":         "h",
		"http://h/a%2Fb":        "a_b",
		"https://h/dir/?q=1":    "dir",
		"http://h/weird%0Aname": "weird_name",
	} {
		if got := baseName(in); got != want {
			t.Errorf("baseName(%q) = %q, want %q", in, got, want)
		}
	}
	files := []manifest.File{{Path: "a.bin"}, {Path: "a.bin"}, {Path: "a-2.bin"}, {Path: ".profile"}, {Path: ".profile"}, {Path: "x.tar.gz"}, {Path: "x.tar.gz"}}
	uniquePaths(files)
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	if want := []string{"a.bin", "a-2.bin", "a-2-2.bin", ".profile", ".profile-2", "x.tar.gz", "x-2.tar.gz"}; !slices.Equal(got, want) {
		t.Errorf("uniquePaths = %q, want %q", got, want)
	}
}

func TestRenderHelpers(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for _, tc := range []struct {
		local, size int64
		w           int
		want        string
	}{{0, 100, 12, "[..........]"}, {50, 100, 12, "[#####.....]"}, {100, 100, 12, "[##########]"}, {0, 0, 6, "[####]"}, {5, -1, 6, "[....]"}} {
		if got := bar(tc.local, tc.size, tc.w); got != tc.want {
			t.Errorf("bar(%d, %d, %d) = %q, want %q", tc.local, tc.size, tc.w, got, tc.want)
		}
	}
	if etaString(-1) != "-" || etaString(0) != "done" || etaString(75) != "1m15s" {
		t.Error("etaString")
	}
}
