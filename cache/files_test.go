package cache

import (
	"fmt"
	"slices"
	"testing"
)

// TestFilesBulk checks Files against File: the same files and records,
// in the order asked, records that survive a reopen, more than one batch,
// existing records found (with their blocks) among new ones, and a
// changed URL that resets a file as File does.
func TestFilesBulk(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	n := recordBatch*2 + 17
	specs := make([]FileSpec, n)
	for i := range specs {
		// Not in path order: Files sorts.
		specs[i] = FileSpec{Path: fmt.Sprintf("d%d/f%06d", i%7, n-i), URL: fmt.Sprintf("http://o/%d", i), DeclaredSize: int64(i), BlockSize: 4096}
	}
	files, err := c.Files(specs)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint64]bool{}
	for i, f := range files {
		if r := f.Record(); r.Path != specs[i].Path || r.URL != specs[i].URL || r.DeclaredSize != specs[i].DeclaredSize {
			t.Fatalf("files[%d] is %+v, want %+v", i, r, specs[i])
		}
		if ids[f.ID()] {
			t.Fatalf("ID %d twice", f.ID())
		}
		ids[f.ID()] = true
		if i%1000 == 0 {
			if g, err := c.File(specs[i].Path, specs[i].URL, specs[i].DeclaredSize, 4096); err != nil || g != f {
				t.Fatalf("File(%s) = %p, %v; Files gave %p", specs[i].Path, g, err, f)
			}
		}
	}
	if got := c.Stats().Files; got != int64(n) {
		t.Errorf("Stats().Files = %d, want %d", got, n)
	}
	// A block of one file, to find again after the reopen.
	const size = 5000
	f0, err := c.File("x/with-block", "http://o/x", size, 4096)
	if err != nil {
		t.Fatal(err)
	}
	_, gen, _ := f0.Remote()
	if err := f0.Pin(gen, Remote{Size: size, ETag: `"e"`}); err != nil {
		t.Fatal(err)
	}
	if err := f0.WriteBlock(gen, 0, blockData(1, 0, 4096, size)); err != nil {
		t.Fatal(err)
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{})
	specs2 := append(slices.Clone(specs), FileSpec{Path: "x/with-block", URL: "http://o/x", DeclaredSize: size, BlockSize: 4096},
		FileSpec{Path: "new/one", URL: "http://o/new", DeclaredSize: -1, BlockSize: 4096})
	specs2[3].URL = "http://o/changed"
	files2, err := c.Files(specs2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range specs {
		if files2[i].ID() != files[i].ID() {
			t.Fatalf("%s: ID %d after reopen, was %d", specs[i].Path, files2[i].ID(), files[i].ID())
		}
	}
	if r := files2[3].Record(); r.URL != "http://o/changed" || r.Generation < 2 {
		t.Errorf("changed URL: record %+v, want the new URL and a new generation", r)
	}
	if wb := files2[n]; !wb.Present(0) || wb.LocalBytes() != 4096 {
		t.Errorf("x/with-block after reopen: block 0 present %v, %d bytes local", wb.Present(0), wb.LocalBytes())
	}
	if files2[n+1].ID() == 0 || ids[files2[n+1].ID()] {
		t.Errorf("new/one got ID %d", files2[n+1].ID())
	}
	if got := c.Stats().Files; got != int64(n+2) {
		t.Errorf("Stats().Files = %d after reopen, want %d", got, n+2)
	}
	if _, err := c.Files([]FileSpec{{Path: "", URL: "http://o/", DeclaredSize: -1, BlockSize: 4096}}); err == nil {
		t.Error("Files took an empty path")
	}
	if _, err := c.Files([]FileSpec{{Path: "bad", URL: "http://o/", DeclaredSize: -1, BlockSize: 0}}); err == nil {
		t.Error("Files took block size 0")
	}
}
