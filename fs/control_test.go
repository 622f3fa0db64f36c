package fs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"ferry/control"
	"ferry/manifest"
	"ferry/origin"
)

// controlFiles serves a.bin (4 MiB), dir/b.bin (1 MiB) and dir/sub/c.bin
// (300 KiB) and returns their manifest entries.
func controlFiles(t *testing.T) (*origin.Server, []manifest.File) {
	srv, base := testOrigin(t)
	return srv, serve(srv, base, []genFile{
		{path: "a.bin", size: 4 << 20, seed: 61, declare: true},
		{path: "dir/b.bin", size: 1 << 20, seed: 62, declare: true},
		{path: "dir/sub/c.bin", size: 300 << 10, seed: 63},
	})
}

func transferPaths(st control.Status) []string {
	var out []string
	for _, t := range st.Transfers {
		out = append(out, t.Path)
	}
	return out
}

func transferOf(t *testing.T, m *Mounted, path string) control.Transfer {
	t.Helper()
	st := m.Status(control.Query{Paths: []string{path}})
	if len(st.Transfers) != 1 {
		t.Fatalf("status of %s: %d transfers", path, len(st.Transfers))
	}
	return st.Transfers[0]
}

func TestControlSocketAndXattr(t *testing.T) {
	_, files := controlFiles(t)
	cacheDir := t.TempDir()
	m := testMount(t, files, Options{CacheDir: cacheDir})
	want := filepath.Join(cacheDir, control.SocketName)
	if m.ControlSocket() != want {
		t.Errorf("ControlSocket = %q, want %q", m.ControlSocket(), want)
	}
	got, err := getxattr(m.Dir(), control.XattrName)
	if err != nil || got != want {
		t.Errorf("%s of the root = %q, %v; want %q", control.XattrName, got, err, want)
	}
	buf := make([]byte, 256)
	n, err := syscall.Listxattr(m.Dir(), buf)
	if err != nil || !strings.Contains(string(buf[:n]), control.XattrName) {
		t.Errorf("listxattr of the root = %q, %v", buf[:n], err)
	}
	if _, err := getxattr(filepath.Join(m.Dir(), "dir"), control.XattrName); err == nil {
		t.Errorf("a directory that is not the root answers %s", control.XattrName)
	}
	st, err := os.Lstat(want)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", st.Mode())
	}
	c, err := control.Dial(want)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Status(context.Background(), control.Query{NoFiles: true})
	if err != nil || s.Mountpoint != m.Dir() || s.CacheDir != cacheDir || s.PID != os.Getpid() || s.Totals.Files != 3 {
		t.Errorf("status over the socket: %+v, %v", s, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left after Close: %v", err)
	}
	if _, err := c.Status(context.Background(), control.Query{}); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("status after Close: %v, want ErrNotRunning", err)
	}
}

func TestControlStatus(t *testing.T) {
	_, files := controlFiles(t)
	m := testMount(t, files, Options{})
	st := m.Status(control.Query{})
	if got := transferPaths(st); !slices.Equal(got, []string{"a.bin", "dir/b.bin", "dir/sub/c.bin"}) {
		t.Fatalf("transfers %q", got)
	}
	for _, tr := range st.Transfers {
		if tr.State != "remote" || tr.Local != 0 || tr.Priority != "normal" || tr.ETASeconds != -1 || !strings.HasSuffix(tr.URL, "/"+tr.Path) {
			t.Errorf("before any read: %+v", tr)
		}
	}
	if tr := st.Transfers[2]; tr.Size != 300<<10 {
		t.Errorf("c.bin size %d: the resolved size should show", tr.Size)
	}
	if tot := st.Totals; tot.Files != 3 || tot.Size != 4<<20+1<<20+300<<10 || tot.Remote != 3 || tot.ETASeconds != -1 {
		t.Errorf("totals %+v", tot)
	}

	if got := readAll(t, filepath.Join(m.Dir(), "dir/b.bin")); checkRange(62, 0, got) != nil {
		t.Fatal("dir/b.bin: wrong bytes")
	}
	// The read may return before its last block is stored and counted.
	waitFor(t, "dir/b.bin to be complete", func() bool {
		tr := transferOf(t, m, "dir/b.bin")
		return tr.State == "complete" && tr.Fetched == 1<<20
	})
	tr := transferOf(t, m, "dir/b.bin")
	if tr.State != "complete" || tr.Local != 1<<20 || tr.ETASeconds != 0 || tr.Fetched != 1<<20 {
		t.Errorf("after a whole read: %+v", tr)
	}
	if m.Status(control.Query{}).FUSEReads == 0 {
		t.Error("no FUSE reads counted after a read")
	}

	for _, tc := range []struct {
		q    control.Query
		want []string
	}{
		{control.Query{Paths: []string{"dir"}}, []string{"dir/b.bin", "dir/sub/c.bin"}},
		{control.Query{Paths: []string{"dir/sub", "a.bin"}}, []string{"a.bin", "dir/sub/c.bin"}},
		{control.Query{Paths: []string{""}}, []string{"a.bin", "dir/b.bin", "dir/sub/c.bin"}},
		{control.Query{Paths: []string{"di"}}, nil}, // not a prefix of a segment
		{control.Query{Active: true}, []string{"a.bin", "dir/sub/c.bin"}},
		{control.Query{NoFiles: true}, nil},
	} {
		st := m.Status(tc.q)
		if got := transferPaths(st); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: transfers %q, want %q", tc.q, got, tc.want)
		}
		if tc.q.Active || tc.q.NoFiles {
			if st.Totals.Files != 3 || st.Totals.Complete != 1 {
				t.Errorf("%+v: totals %+v, want all three files counted", tc.q, st.Totals)
			}
		}
	}
}

func TestControlApplyErrors(t *testing.T) {
	_, files := controlFiles(t)
	m := testMount(t, files, Options{})
	ctx := context.Background()
	res := m.Apply(ctx, control.OpPause, control.Request{Paths: []string{"a.bin", "nope.bin", "dir", ""}})
	want := []control.Result{{Path: "a.bin", Files: 1}, {Path: "nope.bin", Error: "no such file or directory in the manifest"},
		{Path: "dir", Files: 2}, {Path: "", Files: 3}}
	if !slices.Equal(res, want) {
		t.Errorf("pause results %+v, want %+v", res, want)
	}
	for _, p := range []string{"a.bin", "dir/b.bin", "dir/sub/c.bin"} {
		if !transferOf(t, m, p).Paused {
			t.Errorf("%s not paused", p)
		}
	}
	m.Apply(ctx, control.OpResume, control.Request{Paths: []string{"dir/sub"}})
	if transferOf(t, m, "dir/sub/c.bin").Paused || !transferOf(t, m, "dir/b.bin").Paused {
		t.Error("resume of dir/sub resumed the wrong files")
	}

	res = m.Apply(ctx, control.OpPriority, control.Request{Paths: []string{"a.bin"}, Priority: "urgent"})
	if res[0].Error == "" || !strings.Contains(res[0].Error, "foreground, high, normal or low") {
		t.Errorf("bad priority: %+v", res)
	}
	res = m.Apply(ctx, control.OpPriority, control.Request{Paths: []string{"dir"}, Priority: "high"})
	if res[0].Error != "" || transferOf(t, m, "dir/b.bin").Priority != "high" || transferOf(t, m, "a.bin").Priority != "normal" {
		t.Errorf("priority high of dir: %+v", res)
	}

	// A pinned file is not evicted.
	if res := m.Apply(ctx, control.OpPin, control.Request{Paths: []string{"a.bin"}, Wait: true}); res[0].Error != "" {
		t.Fatalf("pin: %+v", res)
	}
	res = m.Apply(ctx, control.OpEvict, control.Request{Paths: []string{"a.bin"}})
	if !strings.Contains(res[0].Error, "pinned") || transferOf(t, m, "a.bin").Local != 4<<20 {
		t.Errorf("evict of a pinned file: %+v", res)
	}
	m.Apply(ctx, control.OpPin, control.Request{Paths: []string{"a.bin"}, Unpin: true})
	if tr := transferOf(t, m, "a.bin"); tr.Pinned {
		t.Errorf("still pinned after unpin: %+v", tr)
	}

	// A file the kernel reads from the cache directly is not evicted.
	if m.root.sh.passthrough.Load() {
		f, err := os.Open(filepath.Join(m.Dir(), "a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		res = m.Apply(ctx, control.OpEvict, control.Request{Paths: []string{"a.bin"}})
		f.Close()
		if !strings.Contains(res[0].Error, "open") || transferOf(t, m, "a.bin").Local != 4<<20 {
			t.Errorf("evict of a file open in passthrough: %+v", res)
		}
	}
}

// TestControlEvictRefetches: evict drops the local copy (the kernel's
// pages too), holds background fill, and a read fetches the bytes again.
func TestControlEvictRefetches(t *testing.T) {
	srv, files := controlFiles(t)
	m := testMount(t, files, Options{Background: true})
	ctx := context.Background()
	p := filepath.Join(m.Dir(), "a.bin")
	if err := checkRange(61, 0, readAll(t, p)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a.bin complete", func() bool { return transferOf(t, m, "a.bin").State == "complete" })
	srv.ResetStats()
	if res := m.Apply(ctx, control.OpEvict, control.Request{Paths: []string{"a.bin"}}); res[0].Error != "" || res[0].Files != 1 {
		t.Fatalf("evict: %+v", res)
	}
	tr := transferOf(t, m, "a.bin")
	if tr.Local != 0 || tr.State != "remote" || !tr.Paused {
		t.Errorf("after evict: %+v", tr)
	}
	if st, _ := getxattr(p, xattrState); st != "remote" {
		t.Errorf("user.ferry.state after evict = %q", st)
	}
	if err := checkRange(61, 0, readAll(t, p)); err != nil {
		t.Fatalf("read after evict: %v", err)
	}
	if sent := srv.Stats("a.bin").BytesSent; sent < 4<<20 {
		t.Errorf("origin sent %d bytes for the read after evict, want the whole 4 MiB again", sent)
	}
}

// TestControlPinFills: pin fetches a file whole with no background fill
// and no read, in the request (Wait) or in the mount.
func TestControlPinFills(t *testing.T) {
	srv, files := controlFiles(t)
	m := testMount(t, files, Options{Background: false})
	ctx := context.Background()
	res := m.Apply(ctx, control.OpPin, control.Request{Paths: []string{"dir/b.bin"}, Wait: true})
	if res[0].Error != "" {
		t.Fatalf("pin --wait: %+v", res)
	}
	if tr := transferOf(t, m, "dir/b.bin"); tr.State != "complete" || !tr.Pinned {
		t.Errorf("after pin --wait: %+v", tr)
	}
	if sent := srv.Stats("dir/b.bin").BytesSent; sent != 1<<20 {
		t.Errorf("origin sent %d bytes for a 1 MiB pin", sent)
	}
	m.Apply(ctx, control.OpPin, control.Request{Paths: []string{"a.bin"}})
	waitFor(t, "a.bin complete after pin", func() bool { return transferOf(t, m, "a.bin").State == "complete" })
	if tr := transferOf(t, m, "dir/sub/c.bin"); tr.Local != 0 {
		t.Errorf("a file nobody pinned or read was fetched: %+v", tr)
	}
	if got := fileSum(t, filepath.Join(m.Dir(), "a.bin")); got != generatedSum(61, 4<<20) {
		t.Error("a.bin: wrong bytes after pin")
	}
}

// TestControlResumeRetriesUpload: resume on an outbox file retries an
// upload that failed for good.
func TestControlResumeRetriesUpload(t *testing.T) {
	fx := newOutboxFixture(t, manifest.Outbox{}, Options{})
	fx.srv.SetFaults("up/r.bin", origin.Faults{Status: 403})
	writeGenerated(t, fx.path("r.bin"), 100<<10, 64)
	fx.waitState("r.bin", "failed")
	st := fx.m.Status(control.Query{Paths: []string{"out/box"}})
	if len(st.Uploads) != 1 || st.Uploads[0].Path != "out/box/r.bin" || st.Uploads[0].State != "failed" ||
		st.Uploads[0].Error == "" || st.Totals.UploadsFail != 1 || !strings.HasSuffix(st.Uploads[0].URL, "/up/r.bin") {
		t.Fatalf("uploads %+v, totals %+v", st.Uploads, st.Totals)
	}
	ctx := context.Background()
	res := fx.m.Apply(ctx, control.OpPause, control.Request{Paths: []string{"out/box/r.bin"}})
	if !strings.Contains(res[0].Error, "outbox") {
		t.Errorf("pause of an upload: %+v", res)
	}
	fx.srv.ClearFaults()
	res = fx.m.Apply(ctx, control.OpResume, control.Request{Paths: []string{"out/box"}})
	if res[0].Error != "" || res[0].Files != 1 {
		t.Fatalf("resume of the outbox: %+v", res)
	}
	fx.waitGone("r.bin")
	if got, ok := fx.remote("r.bin"); !ok || sumOf(got) != sumOf(generated(64, 0, 100<<10)) {
		t.Error("the retried upload did not arrive whole")
	}
}

func TestMountOf(t *testing.T) {
	_, files := controlFiles(t)
	m := testMount(t, files, Options{})
	for _, tc := range []struct{ in, rel string }{
		{m.Dir(), ""},
		{filepath.Join(m.Dir(), "dir", "sub", "c.bin"), "dir/sub/c.bin"},
		{filepath.Join(m.Dir(), "dir") + "/", "dir"},
		{filepath.Join(m.Dir(), "no", "such"), "no/such"},
	} {
		mnt, rel, err := MountOf(tc.in)
		if err != nil || mnt != m.Dir() || rel != tc.rel {
			t.Errorf("MountOf(%q) = %q, %q, %v; want %q, %q", tc.in, mnt, rel, err, m.Dir(), tc.rel)
		}
	}
	// Relative to the working directory, through a symbolic link.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(filepath.Join(m.Dir(), "dir"), link); err != nil {
		t.Fatal(err)
	}
	if mnt, rel, err := MountOf(filepath.Join(link, "b.bin")); err != nil || mnt != m.Dir() || rel != "dir/b.bin" {
		t.Errorf("MountOf through a symlink = %q, %q, %v", mnt, rel, err)
	}
	if _, _, err := MountOf(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not inside a ferry mount") {
		t.Errorf("MountOf of a plain directory: %v", err)
	}
	mounts, err := Mounts()
	if err != nil || !slices.Contains(mounts, MountInfo{Dir: m.Dir(), UID: os.Getuid()}) {
		t.Errorf("Mounts() = %v, %v; want it to hold %s of uid %d", mounts, err, m.Dir(), os.Getuid())
	}
}
