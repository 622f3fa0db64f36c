package uploader

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// A FollowStream hashes the bytes it sends on a goroutine of its own, so
// that hashing one chunk overlaps reading and sending the next. Inline, the
// body's goroutine did all three in turn, and SHA-256 (about 1.7 GB/s here,
// in hardware) was the slowest part: a 1 GiB file that cp wrote into the
// outbox in 0.3 s took 0.94-1.04 s to drop into a server that discards it,
// and 0.85-0.95 s with the hashing here (BenchmarkOutboxVsCurl, two runs
// of 5 each way; against the test origin no change beyond its noise).
const (
	hashChunk = 1 << 20 // bytes handed to the hashing goroutine at a time
	hashBufs  = 4       // chunks in flight at most
)

// hasher is the SHA-256 of the bytes passed to write, computed on a
// goroutine that stop ends. write and sum are for one goroutine only.
type hasher struct {
	queue chan []byte   // chunks to hash in order; nil asks for the sum
	free  chan []byte   // hashed chunks, to fill again
	sums  chan []byte   // the sum, once asked for
	quit  chan struct{} // closed by stop
	once  sync.Once
	cur   []byte // the chunk being filled
	made  int    // chunks allocated
}

// newHasher starts the hashing goroutine; wg counts it.
func newHasher(wg *sync.WaitGroup) *hasher {
	h := &hasher{
		queue: make(chan []byte, hashBufs),
		free:  make(chan []byte, hashBufs),
		sums:  make(chan []byte, 1),
		quit:  make(chan struct{}),
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sha := sha256.New()
		for {
			select {
			case b := <-h.queue:
				select {
				case <-h.quit: // stopped meanwhile: sum must say nil
					return
				default:
				}
				h.hash(sha, b)
			case <-h.quit:
				return
			}
		}
	}()
	return h
}

// hash adds b to sha, or answers the request for the sum (b nil).
func (h *hasher) hash(sha hash.Hash, b []byte) {
	if b == nil {
		h.sums <- sha.Sum(nil)
		return
	}
	sha.Write(b)
	h.free <- b[:0] // never blocks: at most hashBufs chunks exist
}

// write adds p, in order, copying it: the caller may reuse p at once.
func (h *hasher) write(p []byte) {
	for len(p) > 0 {
		if h.cur == nil && !h.take() {
			return // stopped
		}
		n := copy(h.cur[len(h.cur):cap(h.cur)], p)
		h.cur, p = h.cur[:len(h.cur)+n], p[n:]
		if len(h.cur) == cap(h.cur) {
			h.flush()
		}
	}
}

// take makes h.cur an empty chunk: a hashed one, a new one while fewer
// than hashBufs exist, or else the next to be hashed. False once stopped.
func (h *hasher) take() bool {
	select {
	case b := <-h.free:
		h.cur = b
		return true
	default:
	}
	if h.made < hashBufs {
		h.made++
		h.cur = make([]byte, 0, hashChunk)
		return true
	}
	select {
	case b := <-h.free:
		h.cur = b
		return true
	case <-h.quit:
		return false
	}
}

// flush hands the chunk being filled to the hashing goroutine.
func (h *hasher) flush() {
	if len(h.cur) == 0 {
		return
	}
	select {
	case h.queue <- h.cur:
	case <-h.quit:
	}
	h.cur = nil
}

// sum is the SHA-256 of everything written; nil once stopped.
func (h *hasher) sum() []byte {
	select {
	case <-h.quit:
		return nil
	default:
	}
	h.flush()
	select {
	case h.queue <- nil:
	case <-h.quit:
		return nil
	}
	select {
	case s := <-h.sums:
		return s
	case <-h.quit:
		return nil
	}
}

// stop ends the hashing goroutine; write and sum do nothing after it.
func (h *hasher) stop() { h.once.Do(func() { close(h.quit) }) }
