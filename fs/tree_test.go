package fs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"ferry/control"
	"ferry/fetcher"
	"ferry/manifest"
)

// trickyPaths sort so that a directory's paths are not next to a sibling
// file of the same stem: "a.txt" < "a/..." < "a0" in byte order.
var trickyPaths = []string{
	"z.bin", "a/b/c.bin", "a.txt", "a-b", "a/b0", "a/b/d/e.bin", "a0", "a/c.bin",
	"m/n/o/p/q.bin", "a/b/c.bin.old", "b/x", "b/y/z", "aa/b",
}

func treeFiles(paths []string) []manifest.File {
	out := make([]manifest.File, len(paths))
	for i, p := range paths {
		out[i] = manifest.File{Path: p, URL: "http://127.0.0.1:1/" + p, Size: int64(i), Line: i + 1}
	}
	return out
}

// wantTree is every path (files and implied directories) of paths, and
// which of them are directories.
func wantTree(paths []string) (all []string, dirs map[string]bool) {
	dirs = map[string]bool{}
	set := map[string]bool{}
	for _, p := range paths {
		set[p] = true
		for i := range p {
			if p[i] == '/' {
				set[p[:i]] = true
				dirs[p[:i]] = true
			}
		}
	}
	for p := range set {
		all = append(all, p)
	}
	sort.Strings(all)
	return all, dirs
}

// TestTreeIndex checks the tree's lookups against the paths, without a
// mount: children, ranges, the directories it implies, each once.
func TestTreeIndex(t *testing.T) {
	files := treeFiles(trickyPaths)
	tr := newTree(files, nil)
	all, dirs := wantTree(trickyPaths)

	var gotDirs []string
	tr.eachDir(func(d string) bool { gotDirs = append(gotDirs, d); return true })
	var wantDirs []string
	for d := range dirs {
		wantDirs = append(wantDirs, d)
	}
	sort.Strings(gotDirs)
	sort.Strings(wantDirs)
	if !slices.Equal(gotDirs, wantDirs) {
		t.Errorf("eachDir = %q, want %q", gotDirs, wantDirs)
	}

	// Walk the tree through child and the directory streams.
	var got []string
	var walk func(dir string, lo, hi int)
	walk = func(dir string, lo, hi int) {
		s := &dirStream{t: tr, dir: dir, k: lo, hi: hi}
		if dir != "" {
			s.prefix = len(dir) + 1
		}
		seen := map[string]bool{}
		for s.HasNext() {
			e, errno := s.Next()
			if errno != 0 {
				t.Fatal(errno)
			}
			if seen[e.Name] {
				t.Errorf("%s lists %s twice", dir, e.Name)
			}
			seen[e.Name] = true
			full := joinPath(dir, e.Name)
			got = append(got, full)
			idx, dlo, dhi, ok := tr.child(lo, hi, dir, e.Name)
			switch {
			case !ok:
				t.Errorf("%s listed but not found", full)
			case e.Mode == syscall.S_IFDIR:
				if idx >= 0 || !dirs[full] {
					t.Errorf("%s: listed as a directory, found file %d", full, idx)
				}
				if e.Ino != tr.inos.ino('d', full) {
					t.Errorf("%s: inode %d in readdir, %d by lookup", full, e.Ino, tr.inos.ino('d', full))
				}
				walk(full, dlo, dhi)
			default:
				if idx < 0 || files[idx].Path != full {
					t.Errorf("%s: listed as a file, found %d", full, idx)
				}
				if e.Ino != tr.inos.ino('f', full) {
					t.Errorf("%s: inode %d in readdir, %d by lookup", full, e.Ino, tr.inos.ino('f', full))
				}
			}
		}
	}
	walk("", 0, tr.len())
	sort.Strings(got)
	if !slices.Equal(got, all) {
		t.Errorf("walk found %q\nwant %q", got, all)
	}

	for _, name := range []string{"a/b/c", "a/b/c.bin.", "nothing", "a/", "a/b/"} {
		dir, base := filepath.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		lo, hi := tr.below(0, tr.len(), dir)
		if base != "" && tr.has(lo, hi, dir, base) {
			t.Errorf("%s found", name)
		}
	}
	if i, ok := tr.fileIndex("a/b/d/e.bin"); !ok || files[i].Path != "a/b/d/e.bin" {
		t.Errorf("fileIndex(a/b/d/e.bin) = %d, %v", i, ok)
	}
	if idx := tr.under("a/b"); len(idx) != 3 {
		t.Errorf("under(a/b) = %v, want the 3 files below a/b", idx)
	}
	if idx := tr.under(""); len(idx) != len(files) {
		t.Errorf("under(\"\") = %d files, want %d", len(idx), len(files))
	}
}

// TestInoAllocator checks that a key given twice is numbered once and
// that numbers of distinct keys differ and stay in [2, 2^63).
func TestInoAllocator(t *testing.T) {
	var keys []inoKey
	for i := range 5000 {
		keys = append(keys, inoKey{'f', fmt.Sprintf("d%d/f%d", i%50, i)}, inoKey{'d', fmt.Sprintf("d%d", i%50)})
	}
	a := newInoAllocator(len(keys), slices.Values(keys))
	seen := map[uint64]inoKey{}
	for _, k := range keys {
		ino := a.ino(k.kind, k.path)
		if ino < 2 || ino >= 1<<63 {
			t.Fatalf("%v: inode %d out of range", k, ino)
		}
		if other, dup := seen[ino]; dup && other != k {
			t.Fatalf("%v and %v share inode %d", k, other, ino)
		}
		seen[ino] = k
	}
	if a.alloc("d/d3") != a.ino('d', "d3") {
		t.Error("alloc and ino differ")
	}
}

// registered counts the manifest files registered with the cache and the
// fetcher.
func registered(m *Mounted) int {
	n := 0
	t := m.root.sh.tree
	for i := range t.nodes {
		if t.nodes[i].Load() != nil || t.registered(i) != nil {
			n++
		}
	}
	return n
}

// TestLazyTreeListing checks that, without background fill, a mount
// registers no file, that a walk of the mount lists every path once (twice
// the same), and that listing registers nothing while a stat does.
func TestLazyTreeListing(t *testing.T) {
	m := testMount(t, treeFiles(trickyPaths), Options{})
	if n := registered(m); n != 0 {
		t.Fatalf("%d files registered at mount, want 0", n)
	}
	all, dirs := wantTree(trickyPaths)
	walk := func() []string {
		var got []string
		err := filepath.WalkDir(m.Dir(), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == m.Dir() {
				return nil
			}
			rel, _ := filepath.Rel(m.Dir(), p)
			if d.IsDir() != dirs[rel] {
				t.Errorf("%s: directory %v", rel, d.IsDir())
			}
			got = append(got, rel)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		return got
	}
	first := walk()
	if !slices.Equal(first, all) {
		t.Fatalf("walk found %q\nwant %q", first, all)
	}
	if second := walk(); !slices.Equal(second, first) {
		t.Fatalf("second walk found %q, first %q", second, first)
	}
	if n := registered(m); n != 0 {
		t.Errorf("%d files registered by listing, want 0", n)
	}
	// readdir and stat agree on inode numbers.
	entries, err := os.ReadDir(filepath.Join(m.Dir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(m.Dir(), "a", e.Name()), &st); err != nil {
			t.Fatal(err)
		}
		info, _ := e.Info()
		if want := info.Sys().(*syscall.Stat_t).Ino; st.Ino != want {
			t.Errorf("a/%s: stat inode %d, readdir inode %d", e.Name(), st.Ino, want)
		}
	}
	st, err := os.Stat(filepath.Join(m.Dir(), "a", "b", "c.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(slices.Index(trickyPaths, "a/b/c.bin")); st.Size() != want {
		t.Errorf("a/b/c.bin: size %d, want %d", st.Size(), want)
	}
	if n := registered(m); n != 3 { // a/b0 and a/c.bin (the stats of a's entries), a/b/c.bin
		t.Errorf("%d files registered after stats, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(m.Dir(), "a", "nothing")); !os.IsNotExist(err) {
		t.Errorf("stat of a missing name: %v", err)
	}
}

// TestLazyRegistration checks, without background fill, that a file is
// registered on first use and reads right, that status lists the files
// nothing touched, and that a control operation on a directory reaches
// its files.
func TestLazyRegistration(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 3*testBlockSize + 7
	files := serve(srv, base, []genFile{
		{path: "d/one.bin", size: size, seed: 41, declare: true},
		{path: "d/two.bin", size: size, seed: 42, declare: true},
		{path: "e/three.bin", size: 100, seed: 43, declare: true},
	})
	m := testMount(t, files, Options{BlockSize: testBlockSize})
	if n := registered(m); n != 0 {
		t.Fatalf("%d files registered at mount, want 0", n)
	}
	st := m.Status(control.Query{})
	if st.Totals.Files != 3 || st.Totals.Remote != 3 || st.Totals.Size != 2*size+100 || len(st.Transfers) != 3 {
		t.Fatalf("status before any use: totals %+v, %d rows", st.Totals, len(st.Transfers))
	}
	for _, tr := range st.Transfers {
		if tr.State != string(fetcher.StateRemote) || tr.Local != 0 || tr.Priority != "normal" || tr.URL == "" {
			t.Errorf("untouched %s: %+v", tr.Path, tr)
		}
	}

	p := filepath.Join(m.Dir(), "d", "one.bin")
	if v, err := getxattr(p, xattrState); err != nil || v != "remote" {
		t.Errorf("state = %q, %v; want remote", v, err)
	}
	if got, want := fileSum(t, p), generatedSum(41, size); got != want {
		t.Fatal("d/one.bin: content differs")
	}
	// A read may be answered before its block is stored.
	waitFor(t, "d/one.bin complete", func() bool {
		v, err := getxattr(p, xattrState)
		return err == nil && v == "complete"
	})
	if n := registered(m); n != 1 {
		t.Errorf("%d files registered after one was read, want 1", n)
	}
	st = m.Status(control.Query{Paths: []string{"d"}})
	if st.Totals.Files != 2 || st.Totals.Complete != 1 || st.Totals.Remote != 1 || st.Totals.Local != size {
		t.Errorf("status of d: %+v", st.Totals)
	}

	// A control operation on a directory registers and reaches its files.
	res := m.Apply(context.Background(), control.OpPriority, control.Request{Paths: []string{"d"}, Priority: "high"})
	if len(res) != 1 || res[0].Files != 2 || res[0].Error != "" {
		t.Fatalf("priority high d: %+v", res)
	}
	st = m.Status(control.Query{})
	for _, tr := range st.Transfers {
		want := "normal"
		if strings.HasPrefix(tr.Path, "d/") {
			want = "high"
		}
		if tr.Priority != want {
			t.Errorf("%s: priority %s, want %s", tr.Path, tr.Priority, want)
		}
	}
	if n := registered(m); n != 2 {
		t.Errorf("%d files registered, want 2", n)
	}
	res = m.Apply(context.Background(), control.OpPause, control.Request{Paths: []string{"nothing"}})
	if len(res) != 1 || res[0].Files != 0 || res[0].Error == "" {
		t.Errorf("pause of a missing path: %+v", res)
	}

	// ferry pin --wait of a file nothing used: registered, filled, pinned.
	res = m.Apply(context.Background(), control.OpPin, control.Request{Paths: []string{"e/three.bin"}, Wait: true})
	if len(res) != 1 || res[0].Files != 1 || res[0].Error != "" {
		t.Fatalf("pin e/three.bin: %+v", res)
	}
	st = m.Status(control.Query{Paths: []string{"e/three.bin"}})
	if len(st.Transfers) != 1 || !st.Transfers[0].Pinned || st.Transfers[0].Local != 100 {
		t.Errorf("e/three.bin after pin --wait: %+v", st.Transfers)
	}
	if got, want := fileSum(t, filepath.Join(m.Dir(), "e", "three.bin")), generatedSum(43, 100); got != want {
		t.Error("e/three.bin: content differs")
	}
}

// TestLazyRestart checks that a file read in one run is known at once in
// the next (registered at mount, complete) and that reading it again
// fetches nothing.
func TestLazyRestart(t *testing.T) {
	srv, base := testOrigin(t)
	const size = 2*testBlockSize + 5
	files := serve(srv, base, []genFile{
		{path: "x/read.bin", size: size, seed: 51, declare: true},
		{path: "x/other.bin", size: size, seed: 52, declare: true},
	})
	cacheDir := t.TempDir()
	opts := Options{BlockSize: testBlockSize, CacheDir: cacheDir}
	m := testMount(t, files, opts)
	if got, want := fileSum(t, filepath.Join(m.Dir(), "x", "read.bin")), generatedSum(51, size); got != want {
		t.Fatal("content differs")
	}
	waitStored(t, filepath.Join(m.Dir(), "x", "read.bin"), size)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	before := srv.Stats("x/read.bin").Requests

	m2 := testMount(t, files, opts)
	if n := registered(m2); n != 1 {
		t.Errorf("%d files registered at the second mount, want 1 (the one with a record)", n)
	}
	st := m2.Status(control.Query{})
	if st.Totals.Complete != 1 || st.Totals.Remote != 1 || st.Totals.Local != size {
		t.Errorf("status after restart: %+v", st.Totals)
	}
	if got, want := fileSum(t, filepath.Join(m2.Dir(), "x", "read.bin")), generatedSum(51, size); got != want {
		t.Fatal("content differs after restart")
	}
	if after := srv.Stats("x/read.bin").Requests; after != before {
		t.Errorf("the origin got %d requests for a complete file after restart", after-before)
	}
}

// TestLazyConcurrentFirstUse stats, reads and lists the same files from
// several goroutines at once: each file is registered once (one fetcher
// entry per path) and reads right.
func TestLazyConcurrentFirstUse(t *testing.T) {
	srv, base := testOrigin(t)
	var gen []genFile
	for i := range 12 {
		gen = append(gen, genFile{path: fmt.Sprintf("d%d/f%d.bin", i%3, i), size: 3000 + int64(i), seed: uint64(60 + i), declare: true})
	}
	files := serve(srv, base, gen)
	m := testMount(t, files, Options{BlockSize: testBlockSize})
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			var err error
			for k := range gen {
				f := gen[(k+w)%len(gen)]
				p := filepath.Join(m.Dir(), f.path)
				if w%2 == 0 {
					if _, err = os.ReadDir(filepath.Dir(p)); err != nil {
						break
					}
				}
				var data []byte
				if data, err = os.ReadFile(p); err != nil {
					break
				}
				if !bytes.Equal(data, generated(f.seed, 0, f.size)) {
					err = fmt.Errorf("%s: content differs", f.path)
					break
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := registered(m); n != len(gen) {
		t.Errorf("%d files registered, want %d", n, len(gen))
	}
	if n := len(m.fetcher.Files()); n != len(gen) {
		t.Errorf("the fetcher has %d files, want %d (one per path)", n, len(gen))
	}
}
