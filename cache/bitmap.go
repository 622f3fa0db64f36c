package cache

import (
	"math/bits"
	"sync/atomic"
)

// bitmap is a fixed-capacity set of block indexes. Readers use atomic loads
// and need no lock; set and clear are atomic too. Growing replaces the whole
// bitmap (see File.bits), which File does only while no setter runs.
type bitmap struct {
	words []uint64
}

func newBitmap(nbits int64) *bitmap {
	return &bitmap{words: make([]uint64, (nbits+63)/64)}
}

// capacity is the number of indexes the bitmap can hold.
func (b *bitmap) capacity() int64 {
	if b == nil {
		return 0
	}
	return int64(len(b.words)) * 64
}

// has reports whether idx is set. Out-of-range indexes are not set.
func (b *bitmap) has(idx int64) bool {
	if b == nil || idx < 0 {
		return false
	}
	w := uint64(idx) >> 6
	if w >= uint64(len(b.words)) {
		return false
	}
	return atomic.LoadUint64(&b.words[w])&(1<<(uint64(idx)&63)) != 0
}

// set sets idx (which must be in range) and reports whether it was clear.
func (b *bitmap) set(idx int64) bool {
	m := uint64(1) << (uint64(idx) & 63)
	return atomic.OrUint64(&b.words[uint64(idx)>>6], m)&m == 0
}

// clear clears idx (which must be in range) and reports whether it was set.
func (b *bitmap) clear(idx int64) bool {
	m := uint64(1) << (uint64(idx) & 63)
	return atomic.AndUint64(&b.words[uint64(idx)>>6], ^m)&m != 0
}

// firstClear returns the first index in [first, last] that is not set, or -1.
// Indexes beyond the capacity are clear.
func (b *bitmap) firstClear(first, last int64) int64 {
	if first < 0 {
		first = 0
	}
	if last < first {
		return -1
	}
	capacity := b.capacity()
	if first >= capacity {
		return first
	}
	for w := first >> 6; w <= last>>6; w++ {
		if w >= int64(len(b.words)) {
			return w << 6 // first index past the capacity, >= first
		}
		inv := ^atomic.LoadUint64(&b.words[w])
		if w == first>>6 {
			inv &= ^uint64(0) << (uint64(first) & 63)
		}
		if inv == 0 {
			continue
		}
		idx := w<<6 + int64(bits.TrailingZeros64(inv))
		if idx > last {
			return -1
		}
		return idx
	}
	return -1
}

// grown returns a copy of b with room for at least nbits indexes.
// The caller must make sure nobody sets or clears bits in b meanwhile.
func (b *bitmap) grown(nbits int64) *bitmap {
	n := newBitmap(nbits)
	if b != nil {
		for i := range b.words {
			n.words[i] = atomic.LoadUint64(&b.words[i])
		}
	}
	return n
}

// firstSet returns the first set index >= from, or -1.
func (b *bitmap) firstSet(from int64) int64 {
	if b == nil {
		return -1
	}
	from = max(from, 0)
	for w := from >> 6; w < int64(len(b.words)); w++ {
		x := atomic.LoadUint64(&b.words[w])
		if w == from>>6 {
			x &= ^uint64(0) << (uint64(from) & 63)
		}
		if x != 0 {
			return w<<6 + int64(bits.TrailingZeros64(x))
		}
	}
	return -1
}
