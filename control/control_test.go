package control_test

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/control"
	ferryfs "ferry/fs"
	"ferry/internal/testutil"
	"ferry/manifest"
	"ferry/origin"
)

// The server and the client are tested against real mounts (package fs
// serves the API), on a real origin.

// mount mounts two generated files with the cache in cacheDir.
func mount(t *testing.T, cacheDir string) *ferryfs.Mounted {
	t.Helper()
	requireFUSE(t)
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	srv.PutGenerated("a.bin", 1<<20, 1)
	srv.PutGenerated("d/b.bin", 100, 2)
	m := &manifest.Manifest{Files: []manifest.File{
		{Path: "a.bin", URL: base + "/a.bin", Size: 1 << 20, Priority: manifest.High},
		{Path: "d/b.bin", URL: base + "/d/b.bin", Size: 100, Priority: manifest.Normal},
	}}
	mnt, err := ferryfs.Mount(t.TempDir(), m, ferryfs.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := mnt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return mnt
}

func dial(t *testing.T, mnt *ferryfs.Mounted) *control.Client {
	t.Helper()
	sock, err := control.SocketOf(context.Background(), mnt.Dir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestClientServer(t *testing.T) {
	mnt := mount(t, t.TempDir())
	c := dial(t, mnt)
	ctx := context.Background()
	st, err := c.Status(ctx, control.Query{Paths: []string{"d"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != control.StatusVersion || st.Mountpoint != mnt.Dir() || len(st.Transfers) != 1 ||
		st.Transfers[0].Path != "d/b.bin" || st.Transfers[0].Size != 100 || st.Totals.Files != 1 {
		t.Errorf("status of d: %+v", st)
	}
	res, err := c.Apply(ctx, control.OpPriority, control.Request{Paths: []string{"/d/./b.bin", "x"}, Priority: "low"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Path != "d/b.bin" || res[0].Error != "" || res[1].Error == "" {
		t.Errorf("priority results %+v", res)
	}
	if st, _ := c.Status(ctx, control.Query{Paths: []string{"d/b.bin"}}); st.Transfers[0].Priority != "low" {
		t.Errorf("priority after the change: %q", st.Transfers[0].Priority)
	}
	for _, bad := range []control.Request{{Paths: nil}, {Paths: []string{"../etc"}}} {
		if _, err := c.Apply(ctx, control.OpPause, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := c.Apply(ctx, control.Op("explode"), control.Request{Paths: []string{"a.bin"}}); err == nil ||
		!strings.Contains(err.Error(), "unknown operation") {
		t.Errorf("unknown op: %v", err)
	}
}

// TestMetricsFormat checks the Prometheus text: every sample belongs to a
// family declared with HELP and TYPE, and the values follow the mount.
func TestMetricsFormat(t *testing.T) {
	mnt := mount(t, t.TempDir())
	data, err := os.ReadFile(filepath.Join(mnt.Dir(), "d/b.bin"))
	if err != nil || len(data) != 100 {
		t.Fatalf("read: %d bytes, %v", len(data), err)
	}
	// A read may return before its block is stored (the reader copies it
	// from memory while it is written), and the bytes are counted after
	// that: wait until the file counts as complete and its bytes as
	// fetched.
	var text string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		text, err = dial(t, mnt).Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		done := strings.Contains(text, `ferry_files{state="complete"} 1`) &&
			strings.Contains(text, `ferry_fetched_bytes_total{priority="normal"} 100`)
		if done || time.Now().After(deadline) {
			break
		}
	}
	typed := map[string]string{}
	helped := map[string]bool{}
	samples := map[string]string{}
	sampleRE := regexp.MustCompile(`^([a-z_]+)(\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+]+)$`)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			helped[strings.Fields(line)[2]] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 || (f[3] != "gauge" && f[3] != "counter") {
				t.Errorf("bad TYPE line %q", line)
				continue
			}
			typed[f[2]] = f[3]
		default:
			m := sampleRE.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("bad sample line %q", line)
				continue
			}
			if typed[m[1]] == "" || !helped[m[1]] {
				t.Errorf("sample %q before its HELP and TYPE", line)
			}
			samples[m[1]+m[2]] = m[3]
		}
	}
	for key, want := range map[string]string{
		`ferry_files{state="complete"}`:                "1",
		`ferry_files{state="remote"}`:                  "1",
		`ferry_fetched_bytes_total{priority="normal"}`: "100",
		`ferry_fetched_bytes_total{priority="high"}`:   "0",
		`ferry_size_bytes`:                             "1048676",
		`ferry_queued_files`:                           "1",
		`ferry_queued_bytes`:                           "1048576",
	} {
		if samples[key] != want {
			t.Errorf("%s = %q, want %s", key, samples[key], want)
		}
	}
	if typed["ferry_fetched_bytes_total"] != "counter" || typed["ferry_local_bytes"] != "gauge" {
		t.Errorf("types: %v", typed)
	}
	if !strings.Contains(text, `mountpoint="`+mnt.Dir()+`"`) {
		t.Error("ferry_info does not name the mountpoint")
	}
}

// TestSocketOwnership: a socket of another user is refused before any
// connection; no socket, or one nobody listens on, is ErrNotRunning.
func TestSocketOwnership(t *testing.T) {
	cacheDir := t.TempDir()
	mnt := mount(t, cacheDir)
	sock := filepath.Join(cacheDir, control.SocketName)
	if os.Geteuid() != 0 {
		t.Skip("changing the socket's owner needs root")
	}
	if err := os.Lchown(sock, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := control.Dial(sock)
	if !errors.Is(err, control.ErrForeign) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("Dial of a socket owned by uid 65534: %v", err)
	}
	if err := os.Lchown(sock, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := mnt.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Dial(sock); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("Dial after the mount closed: %v", err)
	}
	// A socket file nobody listens on.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	c, err := control.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(context.Background(), control.Query{}); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("status on a dead socket: %v", err)
	}
}

// TestStaleSocketReplaced: a socket left by a process that died is
// replaced at the next mount; a live one is not taken over.
func TestStaleSocketReplaced(t *testing.T) {
	cacheDir := t.TempDir()
	sock := filepath.Join(cacheDir, control.SocketName)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	mnt := mount(t, cacheDir)
	if _, err := dial(t, mnt).Status(context.Background(), control.Query{}); err != nil {
		t.Errorf("status after replacing a stale socket: %v", err)
	}

	// A live socket in another cache directory stops a mount there.
	other := t.TempDir()
	live, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(other, control.SocketName), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	srv.PutGenerated("x", 10, 1)
	m := &manifest.Manifest{Files: []manifest.File{{Path: "x", URL: base + "/x", Size: 10}}}
	dir := t.TempDir()
	if mnt2, err := ferryfs.Mount(dir, m, ferryfs.Options{CacheDir: other}); err == nil {
		mnt2.Close()
		t.Error("mounted although another process listens on the control socket")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("mount with a live socket: %v", err)
	}
	if ok, _ := ferryfs.IsFerryMount(dir); ok {
		t.Error("left mounted after a failed mount")
	}
}

// TestLongSocketPath: a cache directory whose socket path does not fit in
// sun_path still works.
func TestLongSocketPath(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 120 {
		dir = filepath.Join(dir, "a-long-directory-name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mnt := mount(t, dir)
	st, err := dial(t, mnt).Status(context.Background(), control.Query{})
	if err != nil || st.CacheDir != dir {
		t.Errorf("status over a long socket path: %+v, %v", st, err)
	}
	fi, err := os.Lstat(filepath.Join(dir, control.SocketName))
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".control-") {
			t.Errorf("temporary %s left in the cache directory", e.Name())
		}
	}
}

func TestSocketOfErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := control.SocketOf(ctx, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no control socket") {
		t.Errorf("SocketOf a plain directory: %v", err)
	}
	if _, err := control.SocketOf(ctx, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("SocketOf a missing directory: %v", err)
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a/b", "a/b", true},
		{"/a//b/", "a/b", true},
		{"./a/./b", "a/b", true},
		{"", "", true},
		{".", "", true},
		{"/", "", true},
		{"../a", "", false},
		{"a/../b", "", false},
	} {
		got, err := control.CleanPath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func requireFUSE(t *testing.T) { testutil.RequireFUSE(t) }
