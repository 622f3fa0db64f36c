package origin

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestGeneratedBytesReference(t *testing.T) {
	// The first outputs of splitmix64 seeded with 0, as published with the
	// generator; the documented format must reproduce them.
	want := []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f}
	p := gen(0, 0, 24)
	for i, w := range want {
		if got := binary.LittleEndian.Uint64(p[8*i:]); got != w {
			t.Fatalf("word %d: %#x, want %#x", i, got, w)
		}
	}
}

func TestGeneratedBytesAnySplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		seed := rng.Uint64()
		off := rng.Int64N(1 << 40)
		whole := gen(seed, off, 1+rng.IntN(5000))
		// Produce the same bytes in pieces of random, mostly unaligned, sizes.
		pieces := make([]byte, 0, len(whole))
		for len(pieces) < len(whole) {
			n := min(1+rng.IntN(19), len(whole)-len(pieces))
			pieces = append(pieces, gen(seed, off+int64(len(pieces)), n)...)
		}
		if !bytes.Equal(whole, pieces) {
			t.Fatalf("seed %d off %d: pieces differ from the whole", seed, off)
		}
	}
	if bytes.Equal(gen(1, 0, 64), gen(2, 0, 64)) {
		t.Fatal("seeds 1 and 2 give the same bytes")
	}
	if bytes.Equal(gen(1, 0, 64), gen(1, 64, 64)) {
		t.Fatal("the content repeats after 64 bytes")
	}
}

func TestGeneratedServedAtLargeOffsets(t *testing.T) {
	h := newHarness(t)
	const size = 8 << 30
	const seed = 99
	h.s.PutGenerated("big", size, seed)
	rng := rand.New(rand.NewPCG(3, 4))
	type span struct{ off, n int64 }
	spans := []span{{0, 4096}, {4<<30 - 3, 70000}, {size - 12345, 12345}, {1<<32 + 1, 1}}
	for range 6 {
		n := 1 + rng.Int64N(300<<10)
		spans = append(spans, span{rng.Int64N(size - n), n})
	}
	for _, sp := range spans {
		rng := fmt.Sprintf("bytes=%d-%d", sp.off, sp.off+sp.n-1)
		resp, body := h.get("big", "Range", rng)
		wantStatus(t, resp, 206)
		if want := fmt.Sprintf("bytes %d-%d/%d", sp.off, sp.off+sp.n-1, int64(size)); resp.Header.Get("Content-Range") != want {
			t.Fatalf("%s: Content-Range %q, want %q", rng, resp.Header.Get("Content-Range"), want)
		}
		if !bytes.Equal(body, gen(seed, sp.off, int(sp.n))) {
			t.Fatalf("%s: body differs from GeneratedBytes", rng)
		}
	}
	resp, body := h.get("big", "Range", "bytes=-100")
	wantStatus(t, resp, 206)
	if !bytes.Equal(body, gen(seed, size-100, 100)) {
		t.Fatal("suffix range differs from GeneratedBytes")
	}
	info, _ := h.s.Object("big")
	if !info.Generated || info.Seed != seed || info.Size != size {
		t.Fatalf("Object %+v", info)
	}
}
