package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/manifest"
	"ferry/origin"
)

// TestOutboxCopyAndMoveIn is the acceptance test: 30 files from 0 B to
// 64 MiB go into the outbox with cp and mv (a subdirectory too), some
// paths fail twice first, some connections break mid-body: every file
// arrives once, identical, and leaves the outbox. With writes through FUSE
// passthrough and through ferry.
func TestOutboxCopyAndMoveIn(t *testing.T) {
	writeModes(t, manifest.Outbox{}, Options{}, testOutboxCopyAndMoveIn)
}

func testOutboxCopyAndMoveIn(t *testing.T, fx *outboxFixture) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := []int64{0, 1, 100, 4095, 4096, 4097, 65535, 65536, 131073, 1 << 20, 1<<20 + 1,
		3 << 20, 5<<20 + 7, 8 << 20, 12345, 777777, 2 << 20, 64 << 20, 10 << 20, 16<<20 - 1,
		300000, 42, 9999, 1 << 19, 6 << 20, 256 << 10, 33 << 20, 1000001, 7, 123456}
	type file struct {
		rel  string
		size int64
		seed uint64
		via  string // cp, mv, cp -r (sub/), mv (sub of the moved dir)
	}
	var files []file
	for i, size := range sizes {
		f := file{size: size, seed: uint64(100 + i)}
		switch {
		case i < 12:
			f.rel, f.via = fmt.Sprintf("cp-%02d.bin", i), "cp"
		case i < 20:
			f.rel, f.via = fmt.Sprintf("mv-%02d.bin", i), "mv"
		case i < 25:
			f.rel, f.via = fmt.Sprintf("sub/f-%02d.bin", i), "dir"
		default:
			f.rel, f.via = fmt.Sprintf("sub/deeper/g %02d.bin", i), "dir"
		}
		writeGenerated(t, filepath.Join(src, f.rel), f.size, f.seed)
		files = append(files, f)
	}
	// Faults: two failed attempts first, or a reset mid-body (twice).
	failing, cut := map[string]bool{}, map[string]bool{}
	for i, f := range files {
		switch {
		case i%5 == 1:
			fx.srv.SetFaults("up/"+f.rel, origin.Faults{Status: 503, StatusCount: 2, RetryAfter: "0"})
			failing[f.rel] = true
		case i%5 == 3 && f.size > 200000:
			fx.srv.SetFaults("up/"+f.rel, origin.Faults{ResetAfter: f.size / 3, ResetCount: 2})
			cut[f.rel] = true
		}
	}
	for _, f := range files {
		switch f.via {
		case "cp":
			run(t, "cp", filepath.Join(src, f.rel), fx.path(f.rel))
		case "mv":
			run(t, "mv", filepath.Join(src, f.rel), fx.path(f.rel))
		}
	}
	run(t, "mv", filepath.Join(src, "sub"), fx.dir+"/")
	if _, err := os.Stat(filepath.Join(src, "sub")); !os.IsNotExist(err) {
		t.Errorf("mv left its source: %v", err)
	}

	for _, f := range files {
		fx.waitGone(f.rel)
	}
	for _, f := range files {
		got, ok := fx.remote(f.rel)
		if !ok {
			t.Errorf("%s: not on the origin", f.rel)
			continue
		}
		if int64(len(got)) != f.size || sumOf(got) != generatedSum(f.seed, f.size) {
			t.Errorf("%s: the origin has %d bytes that differ from the %d sent", f.rel, len(got), f.size)
		}
		st := fx.srv.Stats("up/" + f.rel)
		want := int64(1)
		switch {
		case failing[f.rel]:
			want = 3 // two refused, one stored
			if st.Statuses[503] != 2 {
				t.Errorf("%s: statuses %v", f.rel, st.Statuses)
			}
		case cut[f.rel]:
			want = 3
			if st.Resets != 2 {
				t.Errorf("%s: %d resets", f.rel, st.Resets)
			}
		}
		if st.Puts != want {
			t.Errorf("%s: %d PUTs, want %d", f.rel, st.Puts, want)
		}
		if st.Statuses[201] != 1 {
			t.Errorf("%s: stored %d times (statuses %v)", f.rel, st.Statuses[201], st.Statuses)
		}
	}
	// The directories stay (they are the user's), empty.
	for _, d := range []string{".", "sub", "sub/deeper"} {
		ents, err := os.ReadDir(fx.path(d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !e.IsDir() {
				t.Errorf("%s still holds %s", d, e.Name())
			}
		}
	}
	// Staged data is gone too.
	if ents, _ := os.ReadDir(filepath.Join(fx.cacheDir, "outbox")); len(ents) != 0 {
		t.Errorf("staged files left: %d", len(ents))
	}
}

// TestOutboxRewriteDuringUpload: the server never gets a mix; the final
// content arrives.
func TestOutboxRewriteDuringUpload(t *testing.T) {
	for _, proto := range []string{"put", "tus"} {
		t.Run(proto, func(t *testing.T) {
			fx := newOutboxFixture(t, manifest.Outbox{Protocol: proto}, Options{})
			fx.srv.SetFaults("up/r.bin", origin.Faults{BytesPerSec: 2 << 20})
			writeGenerated(t, fx.path("r.bin"), 6<<20, 1)
			waitFor(t, "the first upload to be under way", func() bool {
				return fx.state("r.bin") == "uploading" && fx.sentBytes("r.bin") > 256<<10
			})
			writeGenerated(t, fx.path("r.bin"), 3<<20+5, 2)
			fx.srv.ClearFaults()
			fx.waitGone("r.bin")
			got, _ := fx.remote("r.bin")
			if sumOf(got) != generatedSum(2, 3<<20+5) {
				t.Fatalf("the origin has %d bytes, not the final content", len(got))
			}
			// The first upload was cut short and never completed.
			st := fx.srv.Stats("up/r.bin")
			if proto == "put" && (st.Puts != 2 || st.Statuses[201] != 1) {
				t.Errorf("PUTs %d, statuses %v: want one abandoned, one stored", st.Puts, st.Statuses)
			}
			if off, ok := fx.srv.TusOffset("up/r.bin"); proto == "tus" && (!ok || off >= 6<<20) {
				t.Errorf("the first tus upload: offset %d, unfinished %v", off, ok)
			}
		})
	}
}

// TestOutboxDoesNotOverwrite: a remote file that exists is left alone and
// the outbox file fails with the reason.
func TestOutboxDoesNotOverwrite(t *testing.T) {
	fx := newOutboxFixture(t, manifest.Outbox{}, Options{})
	fx.srv.Put("up/exists.txt", []byte("remote"))
	if err := os.WriteFile(fx.path("exists.txt"), []byte("local"), 0o644); err != nil {
		t.Fatal(err)
	}
	fx.waitState("exists.txt", "failed")
	reason, err := getxattr(fx.path("exists.txt"), xattrError)
	if err != nil || !strings.Contains(reason, "already has") || !strings.Contains(reason, "overwrite") {
		t.Errorf("%s = %q, %v", xattrError, reason, err)
	}
	if got, _ := fx.remote("exists.txt"); string(got) != "remote" {
		t.Errorf("remote content %q", got)
	}
	if got := readAll(t, fx.path("exists.txt")); string(got) != "local" {
		t.Errorf("the outbox copy reads %q", got)
	}
	// Once the remote file is gone, touch queues the failed file again.
	fx.srv.Remove("up/exists.txt")
	now := time.Now()
	if err := os.Chtimes(fx.path("exists.txt"), now, now); err != nil {
		t.Fatal(err)
	}
	fx.waitGone("exists.txt")
	if got, _ := fx.remote("exists.txt"); string(got) != "local" {
		t.Errorf("after touch: remote %q", got)
	}
}

// TestOutboxKeepAndAttributes: with OutboxKeep a sent file stays, with
// its state, progress and URL, across a remount.
func TestOutboxKeepAndAttributes(t *testing.T) {
	fx := newOutboxFixture(t, manifest.Outbox{}, Options{OutboxKeep: true})
	if err := os.Mkdir(fx.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := []byte("keep me")
	if err := os.WriteFile(fx.path("d/k.txt"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	fx.waitState("d/k.txt", "sent")
	if p, _ := getxattr(fx.path("d/k.txt"), xattrProgress); p != "7/7" {
		t.Errorf("progress %q", p)
	}
	if u, _ := getxattr(fx.path("d/k.txt"), xattrURL); u != fx.base+"/up/d/k.txt" {
		t.Errorf("url %q", u)
	}
	if got, _ := fx.remote("d/k.txt"); !bytes.Equal(got, data) {
		t.Errorf("remote %q", got)
	}
	fi, err := os.Stat(fx.path("d/k.txt"))
	if err != nil || fi.Size() != 7 || fi.Mode().Perm() != 0o640 {
		t.Errorf("stat %v %v", fi, err)
	}
	fx.unmount()
	fx.mount()
	if st := fx.state("d/k.txt"); st != "sent" {
		t.Errorf("after remount: state %q", st)
	}
	if got := readAll(t, fx.path("d/k.txt")); !bytes.Equal(got, data) {
		t.Errorf("after remount reads %q", got)
	}
	fi, err = os.Stat(fx.path("d/k.txt"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("after remount: stat %v %v", fi, err)
	}
}

// TestOutboxOperations covers the directory operations and the path
// confinement.
func TestOutboxOperations(t *testing.T) {
	fx := newOutboxFixture(t, manifest.Outbox{}, Options{OutboxKeep: true})
	// The origin refuses everything for now: files stay put.
	fx.srv.SetFaults("", origin.Faults{Status: 503})
	mustErrno := func(what string, err error, want syscall.Errno) {
		t.Helper()
		if got := errnoOf(err); got != want {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	if err := os.MkdirAll(fx.path("a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fx.path("a/b/f"), []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Staged in the cache directory, private.
	staged, _ := filepath.Glob(filepath.Join(fx.cacheDir, "outbox", "*"))
	if len(staged) != 1 {
		t.Fatalf("staged files %v", staged)
	}
	if fi, err := os.Stat(staged[0]); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 10 {
		t.Errorf("staged file %v %v", fi, err)
	}
	if err := os.Truncate(fx.path("a/b/f"), 4); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, fx.path("a/b/f")); string(got) != "0123" {
		t.Errorf("after truncate: %q", got)
	}
	if err := os.Rename(fx.path("a/b/f"), fx.path("a/g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fx.path("a"), fx.path("z")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, fx.path("z/g")); string(got) != "0123" {
		t.Errorf("after renames: %q", got)
	}
	if u, _ := getxattr(fx.path("z/g"), xattrURL); u != fx.base+"/up/z/g" {
		t.Errorf("url after renames %q", u)
	}
	mustErrno("rmdir non-empty", os.Remove(fx.path("z")), syscall.ENOTEMPTY)
	mustErrno("rename into itself", os.Rename(fx.path("z"), fx.path("z/b/z")), syscall.EINVAL)
	mustErrno("symlink", os.Symlink("/etc/passwd", fx.path("link")), syscall.EPERM)
	mustErrno("hard link", os.Link(fx.path("z/g"), fx.path("hard")), syscall.EPERM)
	mustErrno("mkfifo", syscall.Mkfifo(fx.path("fifo"), 0o600), syscall.EPERM)
	mustErrno("setxattr", syscall.Setxattr(fx.path("z/g"), xattrState, []byte("sent"), 0), syscall.EPERM)
	mustErrno("rename out of the outbox", os.Rename(fx.path("z/g"), filepath.Join(fx.m.Dir(), "out", "g")), syscall.EXDEV)
	mustErrno("create outside the outbox", os.WriteFile(filepath.Join(fx.m.Dir(), "out", "x"), nil, 0o600), syscall.EROFS)
	mustErrno("exclusive create of an existing file", func() error {
		f, err := os.OpenFile(fx.path("z/g"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
		return err
	}(), syscall.EEXIST)
	if err := os.Remove(fx.path("z/g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(fx.path("z/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(fx.path("z")); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(fx.dir)
	staged, _ = filepath.Glob(filepath.Join(fx.cacheDir, "outbox", "*"))
	if len(ents) != 0 || len(staged) != 0 {
		t.Errorf("left after removing everything: %v, staged %v", ents, staged)
	}
	if n := fx.srv.Stats("up/z/g").Statuses[201] + fx.srv.Stats("up/a/b/f").Statuses[201]; n != 0 {
		t.Errorf("stored %d times under a refusing origin", n)
	}
}

func TestOutboxRenameFromTheReadOnlyPartIsEXDEV(t *testing.T) {
	requireFUSE(t)
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "ro/a.bin", size: 1000, seed: 1, declare: true}})
	m := testMountManifest(t, &manifest.Manifest{Files: files,
		Outbox: &manifest.Outbox{Dir: "ro/box", URL: base + "/up/", Protocol: "put"}}, Options{})
	err := os.Rename(filepath.Join(m.Dir(), "ro/a.bin"), filepath.Join(m.Dir(), "ro/box/a.bin"))
	if errnoOf(err) != syscall.EXDEV {
		t.Errorf("rename into the outbox: %v, want EXDEV", err)
	}
	// mv copies then (and cannot remove the read-only source).
	out, err := runOutput("mv", filepath.Join(m.Dir(), "ro/a.bin"), filepath.Join(m.Dir(), "ro/box/"))
	if err == nil || !strings.Contains(out, "Read-only") {
		t.Logf("mv: %v: %s", err, out)
	}
	waitFor(t, "the copy to arrive", func() bool { _, ok := srv.Content("up/a.bin"); return ok })
	if got, _ := srv.Content("up/a.bin"); !bytes.Equal(got, generated(1, 0, 1000)) {
		t.Error("the copy differs")
	}
}

// TestOutboxRestartResumes: an upload cut short by an unmount resumes at
// the next mount (tus: from the server's offset).
func TestOutboxRestartResumes(t *testing.T) {
	for _, proto := range []string{"put", "tus"} {
		t.Run(proto, func(t *testing.T) {
			fx := newOutboxFixture(t, manifest.Outbox{Protocol: proto}, Options{})
			const size = 24 << 20
			fx.srv.SetFaults("up/big.bin", origin.Faults{BytesPerSec: 8 << 20})
			writeGenerated(t, fx.path("big.bin"), size, 7)
			waitFor(t, "the upload to be under way", func() bool { return fx.sentBytes("big.bin") > 4<<20 })
			fx.unmount()
			if _, ok := fx.remote("big.bin"); ok {
				t.Fatal("stored before the restart")
			}
			// A file that was being written at the stop is not queued.
			garbage := filepath.Join(fx.cacheDir, "outbox", "00000000000000ff")
			if err := os.WriteFile(garbage, []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
			fx.srv.ClearFaults()
			fx.mount()
			if _, err := os.Stat(garbage); !os.IsNotExist(err) {
				t.Errorf("staged data without a record survived: %v", err)
			}
			fx.waitGone("big.bin")
			got, _ := fx.remote("big.bin")
			if sumOf(got) != generatedSum(7, size) {
				t.Fatal("content differs")
			}
			if recv := fx.srv.Stats("up/big.bin").BytesReceived; proto == "tus" && recv >= size*11/10 {
				t.Errorf("tus received %d bytes for %d: not resumed", recv, size)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "nul\x00"} {
		if checkName(name) == 0 {
			t.Errorf("checkName(%q) accepted", name)
		}
	}
	if checkName(strings.Repeat("x", 256)) != syscall.ENAMETOOLONG {
		t.Error("256-byte name accepted")
	}
	for _, name := range []string{"a", "...", ".hidden", "ü ?#%"} {
		if checkName(name) != 0 {
			t.Errorf("checkName(%q) refused", name)
		}
	}
}
