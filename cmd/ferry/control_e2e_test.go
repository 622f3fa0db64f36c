package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/control"
	"ferry/fs"
	"ferry/origin"
)

// The control commands run as the real binary against a real daemon mount;
// the test observes the effects at the origin (its per-path counters) and
// through the control socket.

// ctlFile is one generated file of a control test's manifest.
type ctlFile struct {
	path     string
	size     int64
	seed     uint64
	priority string // "" is normal
}

// ctlMount serves files on a new origin, writes an ordered manifest and
// mounts it with the daemon. It returns the origin, the mountpoint, the
// cache directory and the daemon's pid.
func ctlMount(t *testing.T, files []ctlFile, faults origin.Faults, extra ...string) (*origin.Server, string, string, int) {
	t.Helper()
	requireFUSE(t)
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	type entry struct {
		Path     string `json:"path"`
		URL      string `json:"url"`
		Size     int64  `json:"size"`
		Priority string `json:"priority,omitempty"`
	}
	var m struct {
		Files []entry `json:"files"`
	}
	for _, f := range files {
		srv.PutGenerated(f.path, f.size, f.seed)
		srv.SetFaults(f.path, faults)
		m.Files = append(m.Files, entry{Path: f.path, URL: base + "/" + f.path, Size: f.size, Priority: f.priority})
	}
	dir := t.TempDir()
	man, mnt, cacheDir := filepath.Join(dir, "m.json"), filepath.Join(dir, "mnt"), filepath.Join(dir, "cache")
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(man, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	pid := mountDaemon(t, "", man, mnt, append([]string{"--cache-dir", cacheDir}, extra...)...)
	return srv, mnt, cacheDir, pid
}

// statusOf asks the mount at mnt over its control socket (in process: the
// observation, not the command under test).
func statusOf(t *testing.T, mnt string) control.Status {
	t.Helper()
	sock, err := control.SocketOf(context.Background(), mnt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background(), control.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func transferIn(t *testing.T, st control.Status, path string) control.Transfer {
	t.Helper()
	for _, tr := range st.Transfers {
		if tr.Path == path {
			return tr
		}
	}
	t.Fatalf("%s not in the status", path)
	return control.Transfer{}
}

func stateOf(t *testing.T, mnt, path string) control.Transfer {
	t.Helper()
	return transferIn(t, statusOf(t, mnt), path)
}

// mustFerry runs ferry and fails the test unless it exits 0.
func mustFerry(t *testing.T, args ...string) result {
	t.Helper()
	r := ferry(t, args...)
	if r.code != 0 {
		t.Fatalf("ferry %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// unmountWait runs ferry unmount and checks that, once it returned, the
// daemon released its cache (the lock is free at once) and exits 0.
func unmountWait(t *testing.T, mnt, cacheDir string, pid int) {
	t.Helper()
	mustFerry(t, "unmount", mnt)
	f, err := os.Open(filepath.Join(cacheDir, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("cache lock still held after ferry unmount returned: %v", err)
	}
	if ws := waitExit(t, pid); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("daemon ended with %v", ws)
	}
	assertNotMounted(t, mnt)
}

// TestE2EPauseAndCancel: with one background worker (--max-conns 2), a
// paused file gets no new request: the worker moves on to the next file,
// and while that one completes the paused file's counters at the origin
// stay put. resume starts it again; cancel cuts its request in flight.
func TestE2EPauseAndCancel(t *testing.T) {
	files := []ctlFile{
		{path: "a.bin", size: 64 << 20, seed: 1, priority: "high"},
		{path: "b.bin", size: 4 << 20, seed: 2},
		{path: "c.bin", size: 64 << 20, seed: 3, priority: "low"},
	}
	srv, mnt, cacheDir, pid := ctlMount(t, files, origin.Faults{BytesPerSec: 8 << 20}, "--max-conns", "2")
	a := filepath.Join(mnt, "a.bin")
	start := time.Now()
	phase := func(what string) { t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), what) }
	waitUntil(t, "a.bin to be fetched", func() bool { return srv.Stats("a.bin").BytesSent > 0 })
	phase("a.bin fetched")
	mustFerry(t, "pause", a)
	phase("paused")
	if tr := stateOf(t, mnt, "a.bin"); !tr.Paused {
		t.Fatalf("a.bin not paused: %+v", tr)
	}
	// The worker finishes a.bin's request in flight, then takes b.bin.
	waitUntil(t, "b.bin's first request", func() bool { return srv.Stats("b.bin").Requests > 0 })
	before := srv.Stats("a.bin")
	phase("b.bin requested")
	waitUntil(t, "b.bin complete", func() bool { return stateOf(t, mnt, "b.bin").State == "complete" })
	after := srv.Stats("a.bin")
	phase("b.bin complete")
	if after.Requests != before.Requests || after.BytesSent != before.BytesSent {
		t.Errorf("paused a.bin grew at the origin while b.bin was fetched: %d requests / %d bytes, then %d / %d",
			before.Requests, before.BytesSent, after.Requests, after.BytesSent)
	}
	if tr := stateOf(t, mnt, "a.bin"); tr.State == "complete" || tr.Local >= tr.Size {
		t.Fatalf("a.bin complete although paused: %+v", tr)
	}

	// resume: a.bin (high) is fetched again as soon as the worker is free.
	mustFerry(t, "resume", a)
	waitUntil(t, "a.bin's request after resume", func() bool { return srv.Stats("a.bin").Requests > after.Requests })
	// cancel cuts that request at once; the worker goes back to c.bin.
	phase("a.bin requested after resume")
	cRequests := srv.Stats("c.bin").Requests
	mustFerry(t, "cancel", a)
	waitUntil(t, "c.bin's next request", func() bool { return srv.Stats("c.bin").Requests > cRequests })
	cut := srv.Stats("a.bin")
	phase("c.bin requested after cancel")
	waitUntil(t, "c.bin's request after that", func() bool { return srv.Stats("c.bin").Requests > cRequests+1 })
	phase("c.bin requested again")
	if now := srv.Stats("a.bin"); now.Requests != cut.Requests {
		t.Errorf("cancelled a.bin got %d new requests", now.Requests-cut.Requests)
	}
	if tr := stateOf(t, mnt, "a.bin"); !tr.Paused || tr.State != "partial" {
		t.Errorf("a.bin after cancel: %+v", tr)
	}
	// The bytes that are local are right.
	got := make([]byte, 1<<20)
	fh, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fh.ReadAt(got, 0)
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	origin.GeneratedBytes(1, 0, want)
	if string(got) != string(want) {
		t.Error("a.bin: wrong bytes after pause and cancel")
	}
	unmountWait(t, mnt, cacheDir, pid)
}

// TestE2EPriorityReordersFills: a.bin comes first in the manifest, so
// background fill (one worker) would finish it before b.bin; raising b.bin
// to high makes b.bin complete while a.bin is still partial.
func TestE2EPriorityReordersFills(t *testing.T) {
	files := []ctlFile{
		{path: "a.bin", size: 64 << 20, seed: 4},
		{path: "sub/b.bin", size: 8 << 20, seed: 5},
	}
	srv, mnt, cacheDir, pid := ctlMount(t, files, origin.Faults{BytesPerSec: 4 << 20}, "--max-conns", "2")
	// A relative path, from the mount's directory.
	r := ferryIn(t, filepath.Join(mnt, "sub"), "priority", "high", "b.bin")
	if r.code != 0 {
		t.Fatalf("ferry priority: exit %d: %s", r.code, r.stderr)
	}
	// Requests of a.bin so far, the one in flight included: the worker
	// finishes that one, then takes b.bin.
	aRequests := srv.Stats("a.bin").Requests
	if tr := stateOf(t, mnt, "a.bin"); tr.State == "complete" {
		t.Fatalf("a.bin completed before the priority change took effect (%+v): the origin is too fast for this test", tr)
	}
	if tr := stateOf(t, mnt, "sub/b.bin"); tr.Priority != "high" {
		t.Fatalf("sub/b.bin priority %q after ferry priority high", tr.Priority)
	}
	waitUntil(t, "sub/b.bin complete", func() bool { return stateOf(t, mnt, "sub/b.bin").State == "complete" })
	if tr := stateOf(t, mnt, "a.bin"); tr.State == "complete" {
		t.Errorf("a.bin completed before sub/b.bin although b.bin was raised to high: %+v", tr)
	}
	// At most one: the worker may take a.bin's next chunk right after
	// b.bin's last block, before this test sees b.bin complete.
	if n := srv.Stats("a.bin").Requests; n > aRequests+1 {
		t.Errorf("a.bin got %d new requests while sub/b.bin (high) was filled; ranges of a.bin %q, of b.bin %q",
			n-aRequests, srv.Stats("a.bin").Ranges, srv.Stats("sub/b.bin").Ranges)
	}
	unmountWait(t, mnt, cacheDir, pid)
}

// TestE2EEvictAndPin: evict makes the origin see a file's blocks requested
// again when it is read; pin (without background fill) completes a file;
// a pinned file cannot be evicted until unpinned.
func TestE2EEvictAndPin(t *testing.T) {
	files := []ctlFile{
		{path: "e.bin", size: 4 << 20, seed: 6},
		{path: "p.bin", size: 3<<20 + 5, seed: 7},
		{path: "q.bin", size: 2 << 20, seed: 8},
	}
	srv, mnt, cacheDir, pid := ctlMount(t, files, origin.Faults{}, "--no-background", "--log-format", "json")
	e, p, q := filepath.Join(mnt, "e.bin"), filepath.Join(mnt, "p.bin"), filepath.Join(mnt, "q.bin")
	wantE := make([]byte, 4<<20)
	origin.GeneratedBytes(6, 0, wantE)
	if got, err := os.ReadFile(e); err != nil || string(got) != string(wantE) {
		t.Fatalf("read e.bin: %v", err)
	}
	// The read may return before its last block is stored.
	waitUntil(t, "e.bin to be complete after a whole read", func() bool { return stateOf(t, mnt, "e.bin").State == "complete" })
	srv.ResetStats()
	mustFerry(t, "evict", e)
	if tr := stateOf(t, mnt, "e.bin"); tr.Local != 0 || tr.State != "remote" {
		t.Errorf("e.bin after evict: %+v", tr)
	}
	if got, err := os.ReadFile(e); err != nil || string(got) != string(wantE) {
		t.Fatalf("read e.bin after evict: %v", err)
	}
	if st := srv.Stats("e.bin"); st.BytesSent < 4<<20 || len(st.Ranges) == 0 {
		t.Errorf("after evict, a read made the origin send %d bytes in %d range requests; want the whole file again",
			st.BytesSent, len(st.Ranges))
	}

	// pin --wait returns once the file is complete, with nothing read.
	mustFerry(t, "pin", "--wait", p)
	if tr := stateOf(t, mnt, "p.bin"); tr.State != "complete" || !tr.Pinned {
		t.Errorf("p.bin after pin --wait: %+v", tr)
	}
	if sent := srv.Stats("p.bin").BytesSent; sent != 3<<20+5 {
		t.Errorf("origin sent %d bytes for p.bin, want its size", sent)
	}
	// pin without --wait: the mount fetches it on its own.
	mustFerry(t, "pin", q)
	waitUntil(t, "q.bin complete after pin", func() bool { return stateOf(t, mnt, "q.bin").State == "complete" })

	r := ferry(t, "evict", p)
	if r.code != exitFailure || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "pinned") {
		t.Errorf("evict of a pinned file: exit %d, %q; want exit 1 and one line saying it is pinned", r.code, r.stderr)
	}
	mustFerry(t, "pin", "--unpin", p)
	mustFerry(t, "evict", p)
	if tr := stateOf(t, mnt, "p.bin"); tr.Local != 0 || tr.Pinned {
		t.Errorf("p.bin after unpin and evict: %+v", tr)
	}
	unmountWait(t, mnt, cacheDir, pid)

	// --log-format json: every line of the daemon's log is a JSON object.
	log, err := os.ReadFile(filepath.Join(cacheDir, "ferry.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	mounted := false
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			if strings.HasPrefix(l, "ferry:") || strings.HasPrefix(l, "{") {
				t.Errorf("log line is not JSON: %q", l)
			}
			continue
		}
		if rec["msg"] == "fs: mounted" {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("no JSON \"fs: mounted\" record in the log:\n%s", log)
	}
}

// TestE2EStatusAndErrors: ferry status in text and JSON, with and without
// a mountpoint; every command fails with one line and exit 1 when the path
// is not in a mount, when the socket belongs to someone else, and when the
// mount's process is gone.
func TestE2EStatusAndErrors(t *testing.T) {
	files := []ctlFile{
		{path: "dir/x.bin", size: 1 << 20, seed: 9, priority: "high"},
		{path: "y.bin", size: 1000, seed: 10},
	}
	_, mnt, cacheDir, pid := ctlMount(t, files, origin.Faults{})
	waitUntil(t, "both files complete", func() bool { return statusOf(t, mnt).Totals.Complete == 2 })

	r := mustFerry(t, "status", mnt)
	for _, want := range []string{mnt + ": 2 files", "PATH", "STATE", "LOCAL/SIZE", "PRIORITY", "dir/x.bin", "complete", "high", "1.0 MiB/1.0 MiB"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ferry status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustFerry(t, "status", "--json", filepath.Join(mnt, "dir"))
	var st control.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if st.Mountpoint != mnt || st.PID != pid || st.CacheDir != cacheDir || len(st.Transfers) != 1 ||
		st.Transfers[0].Path != "dir/x.bin" || st.Transfers[0].Local != 1<<20 || st.Totals.Files != 1 {
		t.Errorf("status --json of dir: %+v", st)
	}
	// Stable field names, as README.md documents them.
	var raw map[string]any
	json.Unmarshal([]byte(r.stdout), &raw)
	for _, k := range []string{"version", "mountpoint", "cache_dir", "pid", "totals", "cache", "transfers", "uploads"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}
	tr := raw["transfers"].([]any)[0].(map[string]any)
	for _, k := range []string{"path", "url", "state", "local", "size", "rate", "eta_seconds", "priority", "pinned", "paused"} {
		if _, ok := tr[k]; !ok {
			t.Errorf("a transfer lacks %q", k)
		}
	}
	// No argument: every ferry mount of this user, this one among them.
	// Other packages' tests may have mounts of their own (without a
	// control socket) at the same time: the exit status may say so.
	r = ferry(t, "status", "--json")
	if !strings.Contains(r.stdout, `"mountpoint":"`+mnt+`"`) {
		t.Errorf("status without a mountpoint does not show %s:\n%s", mnt, r.stdout)
	}

	oneLine := func(what string, r result, want string) {
		t.Helper()
		msg := strings.TrimSpace(r.stderr)
		if r.code != exitFailure || strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
			t.Errorf("%s: exit %d, %q; want exit 1 and one line with %q", what, r.code, r.stderr, want)
		}
	}
	outside := t.TempDir()
	for _, args := range [][]string{{"status", outside}, {"pause", outside}, {"priority", "low", outside}, {"pin", outside}, {"evict", outside}} {
		oneLine(strings.Join(args[:len(args)-1], " ")+" outside a mount", ferry(t, args...), "is not inside a ferry mount")
	}
	oneLine("pause of a path not in the manifest", ferry(t, "pause", filepath.Join(mnt, "nope")), "no such file")

	// A control socket of another user is refused.
	sock := filepath.Join(cacheDir, control.SocketName)
	if os.Geteuid() == 0 {
		if err := os.Lchown(sock, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		oneLine("status with a foreign socket", ferry(t, "status", mnt), "belongs to another user")
		oneLine("resume with a foreign socket", ferry(t, "resume", filepath.Join(mnt, "y.bin")), "belongs to another user")
		if err := os.Lchown(sock, 0, 0); err != nil {
			t.Fatal(err)
		}
	}

	// A second mount stays alive while the first dies.
	_, mnt2, _, _ := ctlMount(t, []ctlFile{{path: "z.bin", size: 10, seed: 11}}, origin.Faults{})

	// The mount's process is gone: the mount answers ENOTCONN.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, pid)
	oneLine("status of a dead mount", ferry(t, "status", mnt), "is not running")
	oneLine("pin on a dead mount", ferry(t, "pin", filepath.Join(mnt, "y.bin")), "is not running")
	r = ferry(t, "status")
	if r.code != exitFailure || !strings.Contains(r.stderr, "is not running") {
		t.Errorf("status of all mounts with a dead one: exit %d, %q", r.code, r.stderr)
	}
	// The dead mount does not hide the live one.
	r = ferry(t, "status", "--json")
	if r.code != exitFailure || !strings.Contains(r.stdout, `"mountpoint":"`+mnt2+`"`) {
		t.Errorf("status --json of all mounts with a dead one: exit %d, want 1 and %s shown:\n%s", r.code, mnt2, r.stdout)
	}
	if r := ferry(t, "unmount", mnt2); r.code != 0 {
		t.Errorf("ferry unmount %s: exit %d: %s", mnt2, r.code, r.stderr)
	}
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fs.IsFerryMount(mnt); ok {
		t.Error("still mounted after the lazy unmount")
	}
}
