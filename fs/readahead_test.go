package fs

import "testing"

func TestReadaheadWindow(t *testing.T) {
	const bs = 1 << 20
	const size = 1 << 40
	var r readahead
	// Small reads close together do not start a stream.
	if _, n := r.advance(5000, 5030, bs, size); n != 0 {
		t.Fatalf("a 30-byte read asked for %d", n)
	}
	if _, n := r.advance(5100, 5100+16<<10, bs, size); n != 0 {
		t.Fatalf("a 16 KiB read after it asked for %d", n)
	}
	// A sequential stream from 0: two blocks first, then doubling as the
	// reader consumes half of the window, up to 16 MiB.
	r = readahead{}
	var windows []int64
	for off := int64(0); off < 200<<20; off += 128 << 10 {
		if from, n := r.advance(off, off+128<<10, bs, size); n > 0 {
			if from < off+128<<10 {
				t.Fatalf("asked from %d, behind the read at %d", from, off)
			}
			windows = append(windows, r.window)
		}
	}
	want := []int64{2 << 20, 4 << 20, 8 << 20, 16 << 20}
	for i, w := range want {
		if i >= len(windows) || windows[i] != w {
			t.Fatalf("windows %v, want to start with %v", windows, want)
		}
	}
	for _, w := range windows {
		if w > maxReadaheadWindow {
			t.Fatalf("window %d above the maximum", w)
		}
	}
	// Everything asked stays within the file.
	r = readahead{}
	for off := int64(0); off < 3<<20; off += 512 << 10 {
		if from, n := r.advance(off, off+512<<10, bs, 3<<20); n > 0 && from+n > 3<<20 {
			t.Fatalf("asked [%d, %d) beyond the size", from, from+n)
		}
	}
	// A jump starts over.
	r.advance(100<<20, 100<<20+4096, bs, size)
	if r.window != 0 || r.runStart != 100<<20 {
		t.Fatalf("after a jump: window %d, run start %d", r.window, r.runStart)
	}
}
