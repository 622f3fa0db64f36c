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

// TestReadaheadLate serves a sequential stream of 1 MiB requests out of
// order, as go-fuse does with the kernel's concurrent readahead requests: a
// request that arrives after later ones belongs to the run, so the window
// grows as for an ordered stream and what is asked covers the file ahead
// of the reader once.
func TestReadaheadLate(t *testing.T) {
	const bs = 256 << 10
	const mib = 1 << 20
	const size = 256 * mib
	for _, group := range []int{2, 3, 4} {
		var r readahead
		var asked int64 // end of the contiguous range asked so far
		first := int64(-1)
		maxWindow := int64(0)
		for g := int64(0); g < size/mib; g += int64(group) {
			// The requests of a group arrive last first.
			for i := int64(group) - 1; i >= 0; i-- {
				off := (g + i) * mib
				if off >= size {
					continue
				}
				from, n := r.advance(off, off+mib, bs, size)
				if n == 0 {
					continue
				}
				if first < 0 {
					first, asked = from, from
				}
				// While the window is small, the reads may overtake
				// what was asked (a gap the reads fetch themselves);
				// at full size the asks are contiguous. Never twice.
				if from < asked || from > asked && r.window == maxReadaheadWindow && maxWindow == maxReadaheadWindow {
					t.Fatalf("group %d: asked [%d, %d) after [%d, %d)", group, from, from+n, first, asked)
				}
				asked = from + n
				maxWindow = max(maxWindow, r.window)
			}
			if r.runStart != 0 {
				t.Fatalf("group %d: after %d MiB the run starts at %d: a late request started a new one", group, g+int64(group), r.runStart)
			}
		}
		if asked != size {
			t.Errorf("group %d: asked up to %d, want the whole file (%d)", group, asked, int64(size))
		}
		if maxWindow != maxReadaheadWindow {
			t.Errorf("group %d: window grew to %d, want %d", group, maxWindow, maxReadaheadWindow)
		}
	}
}

// TestReadaheadBehind checks that a read well behind the run (a seek back)
// starts a new run, which asks the fetcher again from there once it is
// long enough, while a read just behind the furthest one does not.
func TestReadaheadBehind(t *testing.T) {
	const bs = 256 << 10
	const mib = 1 << 20
	const size = 1 << 30
	var r readahead
	for off := int64(0); off < 200*mib; off += mib {
		r.advance(off, off+mib, bs, size)
	}
	if r.window != maxReadaheadWindow {
		t.Fatalf("window %d after 200 MiB, want %d", r.window, maxReadaheadWindow)
	}
	// Just behind: still the run.
	if _, n := r.advance(195*mib, 196*mib, bs, size); n != 0 || r.runStart != 0 || r.window != maxReadaheadWindow {
		t.Fatalf("a read 5 MiB behind: asked %d, run start %d, window %d", n, r.runStart, r.window)
	}
	// Far behind: a new run from there.
	if _, n := r.advance(100*mib, 100*mib+64<<10, bs, size); n != 0 {
		t.Fatalf("the first read of a new run asked for %d", n)
	}
	if r.runStart != 100*mib || r.window != 0 {
		t.Fatalf("a read 100 MiB behind: run start %d, window %d; want a new run", r.runStart, r.window)
	}
	from, n := r.advance(100*mib+64<<10, 101*mib, bs, size)
	if n == 0 || from != 101*mib {
		t.Fatalf("the new run asked [%d, %d), want from %d", from, from+n, 101*mib)
	}
}

// TestReadaheadBehindDrop checks the ranges a run hands out to drop: only
// at least lag behind its furthest read, in pieces of at least chunk, each
// once, and from the start of a new run after a seek.
func TestReadaheadBehindDrop(t *testing.T) {
	const bs = 256 << 10
	const mib = 1 << 20
	const lag, chunk = 16 * mib, 8 * mib
	var r readahead
	var dropped int64
	for off := int64(0); off < 100*mib; off += mib {
		r.advance(off, off+mib, bs, 1<<30)
		from, to := r.behind(lag, chunk)
		if to <= from {
			continue
		}
		if from != dropped || to-from < chunk || to > off+mib-lag {
			t.Fatalf("at %d MiB: dropped [%d, %d) after %d", off/mib, from, to, dropped)
		}
		dropped = to
	}
	if dropped < 100*mib-lag-chunk {
		t.Fatalf("dropped up to %d after reading 100 MiB", dropped)
	}
	// Small reads far from each other never drop anything.
	r = readahead{}
	for i := int64(0); i < 100; i++ {
		off := (i * 37 % 100) * 10 * mib
		r.advance(off, off+4096, bs, 1<<30)
		if from, to := r.behind(lag, chunk); to > from {
			t.Fatalf("random reads: dropped [%d, %d)", from, to)
		}
	}
	// A new run drops from its own start.
	r = readahead{}
	for off := int64(500 * mib); off < 540*mib; off += mib {
		r.advance(off, off+mib, bs, 1<<30)
		if from, to := r.behind(lag, chunk); to > from && from < 500*mib {
			t.Fatalf("dropped from %d, before the run's start", from)
		}
	}
}
