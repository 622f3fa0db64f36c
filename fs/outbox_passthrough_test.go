package fs

import (
	"os"
	"syscall"
	"testing"

	"ferry/manifest"
	"ferry/uploader"
)

// requireOutboxPassthrough skips a test of passthrough writes where the
// kernel does not offer FUSE passthrough (under CI=true it fails: the CI
// machine has it).
func requireOutboxPassthrough(t *testing.T, fx *outboxFixture) {
	t.Helper()
	if fx.m.root.sh.passthrough.Load() {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("FUSE passthrough is required under CI=true")
	}
	t.Skip("the kernel does not offer FUSE passthrough here")
}

// TestOutboxPassthroughWrites: with FUSE passthrough the kernel writes the
// staged files itself (ferry serves no write), stat shows the size while
// the file is written, and the files arrive intact, once, streamed while
// written when large.
func TestOutboxPassthroughWrites(t *testing.T) {
	fx := newOutboxFixture(t, manifest.Outbox{}, Options{})
	requireOutboxPassthrough(t, fx)
	const size = 24<<20 + 3
	f, err := os.OpenFile(fx.path("big.bin"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fx.appendGenerated(f, 5, 0, 8<<20)
	if fi, err := os.Stat(fx.path("big.bin")); err != nil || fi.Size() != 8<<20 {
		t.Errorf("stat while written: %v, %v; want %d bytes", fi, err, 8<<20)
	}
	if st := fx.state("big.bin"); st != "writing" {
		t.Errorf("state %q while open, want writing", st)
	}
	// The default (StreamAuto) streams a followed file: the server gets
	// bytes before the close.
	waitFor(t, "the stream of big.bin at the server", func() bool {
		return fx.srv.Stats("up/big.bin").BytesReceived > 0
	})
	fx.appendGenerated(f, 5, 8<<20, size-8<<20)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	writeGenerated(t, fx.path("small.bin"), 1000, 6)
	writeGenerated(t, fx.path("empty.bin"), 0, 7)
	for _, rel := range []string{"big.bin", "small.bin", "empty.bin"} {
		fx.waitGone(rel)
	}
	fx.checkArrived("big.bin", generated(5, 0, size))
	fx.checkArrived("small.bin", generated(6, 0, 1000))
	fx.checkArrived("empty.bin", nil)
	if n := fx.m.outbox.writes.Load(); n != 0 {
		t.Errorf("ferry served %d writes; the kernel should have written them all", n)
	}
}

// TestOutboxStreamChangedAfterSent: bytes the stream already sent are
// changed before the close (same size). The server must not get the bytes
// as sent: with passthrough the stream finds the change when it reads them
// again at the end, without it ferry sees the write; either way the stream
// is cut and a plain PUT sends the final content.
func TestOutboxStreamChangedAfterSent(t *testing.T) {
	writeModes(t, manifest.Outbox{}, Options{}, func(t *testing.T, fx *outboxFixture) {
		f := fx.streamFile("c.bin", 1, 8<<20)
		waitFor(t, "8 MiB at the server", func() bool {
			return fx.srv.Stats("up/c.bin").BytesReceived >= 8<<20
		})
		if _, err := f.WriteAt(generated(2, 0, 4096), 1<<20); err != nil {
			t.Fatal(err)
		}
		fx.appendGenerated(f, 1, 8<<20, 1<<20)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fx.waitGone("c.bin")
		want := generated(1, 0, 9<<20)
		copy(want[1<<20:], generated(2, 0, 4096))
		fx.checkArrived("c.bin", want)
		if st := fx.srv.Stats("up/c.bin"); st.Puts != 2 {
			t.Errorf("%d PUTs, want the stream cut and one plain PUT", st.Puts)
		}
	})
}

// TestOutboxPassthroughWritesAfterClose: a descriptor dup'ed before the
// close that committed the file writes on (as a forked child or a mapping
// may). The kernel does not tell ferry, so the upload waits for the last
// release, and the server gets the final content only: the same size
// (the stream's end check, or the plain PUT reading it late) or another
// size (committed again).
func TestOutboxPassthroughWritesAfterClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, off int64 // the first content, and where the late write goes
		stream    bool
	}{
		{"streamed same size", 8 << 20, 4 << 20, true},
		{"streamed grown", 8 << 20, 8 << 20, true},
		{"plain same size", 1 << 20, 0, false},
		{"plain grown", 1 << 20, 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newOutboxFixture(t, manifest.Outbox{}, Options{})
			requireOutboxPassthrough(t, fx)
			var f *os.File
			if tc.stream {
				f = fx.streamFile("d.bin", 1, tc.size)
			} else {
				fx.m.outbox.up.SetStreams(uploader.StreamNever)
				var err error
				if f, err = os.Create(fx.path("d.bin")); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				fx.appendGenerated(f, 1, 0, tc.size)
			}
			fd, err := syscall.Dup(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			dup := os.NewFile(uintptr(fd), "dup")
			t.Cleanup(func() { dup.Close() })
			if err := f.Close(); err != nil { // commits; the handle stays open
				t.Fatal(err)
			}
			late := generated(3, 0, 64<<10)
			if _, err := dup.WriteAt(late, tc.off); err != nil {
				t.Fatal(err)
			}
			if err := dup.Close(); err != nil {
				t.Fatal(err)
			}
			fx.waitGone("d.bin")
			want := generated(1, 0, max(tc.size, tc.off+int64(len(late))))
			copy(want[tc.off:], late)
			fx.checkArrived("d.bin", want)
		})
	}
}
