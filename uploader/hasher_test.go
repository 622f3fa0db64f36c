package uploader

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestHasherSumsWhatWasWritten writes pieces of many sizes, across and
// within chunk boundaries, overwriting each piece right after write as a
// caller reusing its buffer does, and compares the sum with SHA-256 of the
// whole.
func TestHasherSumsWhatWasWritten(t *testing.T) {
	checkLeaks(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	rng := rand.New(rand.NewPCG(7, 11))
	for _, total := range []int{0, 1, hashChunk - 1, hashChunk, hashChunk + 1, 9*hashChunk + 12345} {
		h := newHasher(&wg)
		var all bytes.Buffer
		buf := make([]byte, 3*hashChunk)
		for left := total; left > 0; {
			n := min(left, rng.IntN(len(buf))+1)
			if rng.IntN(4) == 0 {
				n = min(left, rng.IntN(100)+1) // small pieces too
			}
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32())
			}
			all.Write(buf[:n])
			h.write(buf[:n])
			clear(buf[:n]) // the hasher must have copied it
			left -= n
		}
		want := sha256.Sum256(all.Bytes())
		if got := h.sum(); !bytes.Equal(got, want[:]) {
			t.Errorf("%d bytes: sum %x, want %x", total, got, want)
		}
		// Asked again, the same.
		if got := h.sum(); !bytes.Equal(got, want[:]) {
			t.Errorf("%d bytes, second sum: %x, want %x", total, got, want)
		}
		h.stop()
	}
}

// TestHasherStop: after stop, write and sum return at once (sum with nil),
// also with every chunk in flight, and the goroutine is gone.
func TestHasherStop(t *testing.T) {
	checkLeaks(t)
	var wg sync.WaitGroup
	h := newHasher(&wg)
	p := make([]byte, hashChunk)
	for range hashBufs + 2 {
		h.write(p)
	}
	h.stop()
	h.stop() // twice is fine
	for range 2 * hashBufs {
		h.write(p)
	}
	if s := h.sum(); s != nil {
		t.Errorf("sum after stop: %x, want nil", s)
	}
	wg.Wait()
}
