package fs

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"ferry/manifest"
)

func TestDigesterFollowsWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staged")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := newDigester(path)
	if err != nil {
		t.Fatal(err)
	}
	data := generated(3, 0, 5<<20+17)
	for off := 0; off < len(data); {
		n := min(777777, len(data)-off)
		if _, err := f.WriteAt(data[off:off+n], int64(off)); err != nil {
			t.Fatal(err)
		}
		if d.next() != int64(off) {
			t.Fatalf("next %d at %d", d.next(), off)
		}
		d.wrote(int64(n))
		off += n
	}
	want := sha256.Sum256(data)
	if got := d.sum(int64(len(data))); string(got) != string(want[:]) {
		t.Fatalf("digest %x, want %x", got, want)
	}
	if got := d.sum(int64(len(data)) - 1); got != nil {
		t.Error("a digest for a size that was not hashed")
	}
	d.stop()
	if got := d.sum(int64(len(data))); got != nil {
		t.Error("a digest after stop")
	}
}

// TestOutboxOutOfOrderWrites: a file written backwards has no digest from
// the writes; the uploader computes it, and the bytes arrive intact.
func TestOutboxOutOfOrderWrites(t *testing.T) {
	fx := newOutboxFixture(t, manifest.Outbox{}, Options{})
	data := generated(4, 0, 3<<20+5)
	f, err := os.Create(fx.path("back.bin"))
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 1 << 20
	for off := (len(data) - 1) / chunk * chunk; off >= 0; off -= chunk {
		end := min(off+chunk, len(data))
		if _, err := f.WriteAt(data[off:end], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fx.waitGone("back.bin")
	if got, _ := fx.remote("back.bin"); sumOf(got) != sha256.Sum256(data) {
		t.Fatalf("the origin has %d bytes that differ", len(got))
	}
}
