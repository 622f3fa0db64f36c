package fs

import (
	"os"
	"testing"

	"ferry/manifest"
	"ferry/uploader"
)

// streamFile creates rel in the outbox and writes the first size bytes of
// generated seed in order, then waits until the server receives the
// streamed upload (while the file is still open). The caller closes f.
func (fx *outboxFixture) streamFile(rel string, seed uint64, size int64) *os.File {
	t := fx.t
	t.Helper()
	if size < uploader.StreamMinSize {
		t.Fatalf("%d bytes do not start a stream", size)
	}
	// Whatever the link's rate against the writer's.
	fx.m.outbox.up.SetStreams(uploader.StreamAlways)
	f, err := os.OpenFile(fx.path(rel), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fx.appendGenerated(f, seed, 0, size)
	waitFor(t, "the stream of "+rel+" at the server", func() bool {
		return fx.srv.Stats("up/"+rel).BytesReceived > 0
	})
	return f
}

// appendGenerated writes bytes [off, off+n) of generated seed at off.
func (fx *outboxFixture) appendGenerated(f *os.File, seed uint64, off, n int64) {
	fx.t.Helper()
	for end := off + n; off < end; {
		chunk := generated(seed, off, min(1<<20, end-off))
		if _, err := f.WriteAt(chunk, off); err != nil {
			fx.t.Fatal(err)
		}
		off += int64(len(chunk))
	}
}

// checkArrived checks that rel arrived once with exactly want.
func (fx *outboxFixture) checkArrived(rel string, want []byte) {
	t := fx.t
	t.Helper()
	got, ok := fx.remote(rel)
	if !ok {
		t.Fatalf("%s is not on the origin", rel)
	}
	if sumOf(got) != sumOf(want) {
		t.Fatalf("%s: the origin has %d bytes that are not the final %d", rel, len(got), len(want))
	}
	if st := fx.srv.Stats("up/" + rel); st.Statuses[201] != 1 {
		t.Errorf("%s: statuses %v, want stored once", rel, st.Statuses)
	}
}

// TestOutboxStreamsWhileWriting: a file written in order is sent while it
// is written (the server receives bytes before the close) and stored only
// after the close, whole, with its digest (the origin checks the trailer).
func TestOutboxStreamsWhileWriting(t *testing.T) {
	writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
		const size = 12<<20 + 5
		f := fx.streamFile("s.bin", 1, 8<<20)
		if _, ok := fx.remote("s.bin"); ok {
			t.Fatal("the origin stored the file before its close")
		}
		if st := fx.state("s.bin"); st != "writing" {
			t.Errorf("state %q while open, want writing", st)
		}
		fx.appendGenerated(f, 1, 8<<20, size-8<<20)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fx.waitGone("s.bin")
		fx.checkArrived("s.bin", generated(1, 0, size))
	})
}

// TestOutboxStreamRewritten: changes to a file while its stream runs
// (before the close) abandon the stream; the server gets the final
// content only, or nothing for a file that was removed.
func TestOutboxStreamRewritten(t *testing.T) {
	t.Run("overwrite", func(t *testing.T) {
		writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
			f := fx.streamFile("o.bin", 1, 8<<20)
			// Out of order: bytes the stream may have sent change.
			fx.appendGenerated(f, 2, 0, 1<<20)
			fx.appendGenerated(f, 1, 8<<20, 2<<20)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fx.waitGone("o.bin")
			want := generated(1, 0, 10<<20)
			copy(want, generated(2, 0, 1<<20))
			fx.checkArrived("o.bin", want)
		})
	})
	t.Run("truncate", func(t *testing.T) {
		writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
			f := fx.streamFile("t.bin", 1, 8<<20)
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			fx.appendGenerated(f, 3, 0, 5<<20+1)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fx.waitGone("t.bin")
			fx.checkArrived("t.bin", generated(3, 0, 5<<20+1))
		})
	})
	t.Run("shrink", func(t *testing.T) {
		writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
			f := fx.streamFile("k.bin", 1, 8<<20)
			if err := f.Truncate(6 << 20); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fx.waitGone("k.bin")
			fx.checkArrived("k.bin", generated(1, 0, 6<<20))
		})
	})
	t.Run("unlink", func(t *testing.T) {
		writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
			f := fx.streamFile("u.bin", 1, 8<<20)
			if err := os.Remove(fx.path("u.bin")); err != nil {
				t.Fatal(err)
			}
			fx.appendGenerated(f, 1, 8<<20, 1<<20)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			// Another file through the same uploader: by the time it is
			// stored, the abandoned stream is long over.
			writeGenerated(t, fx.path("after.bin"), 1<<20, 4)
			fx.waitGone("after.bin")
			if _, ok := fx.remote("u.bin"); ok {
				t.Fatal("the origin stored a file that was removed while it was written")
			}
			if ents, _ := os.ReadDir(fx.cacheDir + "/outbox"); len(ents) != 0 {
				t.Errorf("staged files left: %d", len(ents))
			}
		})
	})
	t.Run("rename", func(t *testing.T) {
		// A rename commits the file as it is, under its new name.
		writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
			f := fx.streamFile("before.bin", 1, 8<<20)
			if err := os.Rename(fx.path("before.bin"), fx.path("after.bin")); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fx.waitGone("after.bin")
			fx.checkArrived("after.bin", generated(1, 0, 8<<20))
			if _, ok := fx.remote("before.bin"); ok {
				t.Fatal("the origin stored the file under its old name")
			}
		})
	})
}
