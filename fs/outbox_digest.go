package fs

import (
	"crypto/sha256"
	"hash"
	"os"
	"sync"
)

// digester computes the SHA-256 of a file's staged data on a goroutine
// that follows the writes as long as they come in order (cp, mv, most
// writers), so that the digest is ready when the file is committed and
// hashing never holds up a write. A write out of order ends it (the
// uploader then hashes the committed data itself).
//
// The goroutine runs only while it has bytes to catch up on; stop ends it
// and waits for it. The owner (an outboxFile, under its lock) calls wrote,
// sum and stop; they are not safe for concurrent use with each other.
//
// A streamed upload (uploader.Stream) shares it as its StreamSource: it
// sends the bytes hashed so far, and the digest at the end. Each of the
// two holders releases it once (stop, Release); the last one stops it.
type digester struct {
	f *os.File // its own read-only descriptor of the staged data
	// wake, when set, is called after more bytes were hashed, and when
	// hashing ends (uploader.Stream.Wake).
	wake func()

	mu      sync.Mutex
	idle    *sync.Cond // broadcast when the goroutine stops running
	want    int64      // bytes written in order so far
	done    int64      // bytes hashed
	running bool
	stopped bool
	refs    int  // holders: the owner, and a stream
	failed  bool // a read failed: no digest
	// h is written by the goroutine while running, read by sum once it
	// is not.
	h hash.Hash
}

// digestBufs holds the read buffers of digest goroutines: one stops
// whenever it caught up with its writer, so it starts again about once a
// write, and a fresh 1 MiB buffer each time cost as much as a copy of the
// data (measured: memclr in the profile of BenchmarkOutboxVsCurl).
var digestBufs = sync.Pool{New: func() any {
	b := make([]byte, 1<<20)
	return &b
}}

// newDigester starts following the staged data at path (empty so far).
func newDigester(path string) (*digester, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	d := &digester{f: f, h: sha256.New(), refs: 1}
	d.idle = sync.NewCond(&d.mu)
	return d, nil
}

// next is the offset the next in-order write starts at.
func (d *digester) next() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.want
}

// wrote tells that n more bytes were written in order (they are in the
// staged file already).
func (d *digester) wrote(n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want += n
	if !d.running && !d.stopped {
		d.running = true
		go d.run()
	}
}

// run hashes until it caught up with want.
func (d *digester) run() {
	bp := digestBufs.Get().(*[]byte)
	defer digestBufs.Put(bp)
	buf := *bp
	for {
		d.mu.Lock()
		if d.stopped || d.failed || d.done >= d.want {
			d.running = false
			d.idle.Broadcast()
			wake := d.wake
			d.mu.Unlock()
			if wake != nil {
				wake()
			}
			return
		}
		from, n := d.done, min(int64(len(buf)), d.want-d.done)
		d.mu.Unlock()
		got, err := d.f.ReadAt(buf[:n], from)
		d.h.Write(buf[:got])
		d.mu.Lock()
		d.done += int64(got)
		if err != nil && int64(got) < n {
			d.failed = true
		}
		wake := d.wake
		d.mu.Unlock()
		if wake != nil {
			wake()
		}
	}
}

// sum waits until every byte written was hashed and returns the digest of
// the first size bytes, or nil when that is not what was hashed.
func (d *digester) sum(size int64) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.running {
		d.idle.Wait()
	}
	if d.failed || d.stopped || d.done != size || d.want != size {
		return nil
	}
	return d.h.Sum(nil)
}

// setWake sets the function called when more bytes were hashed.
func (d *digester) setWake(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wake = f
}

// hold adds a holder (a stream).
func (d *digester) hold() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refs++
}

// stop releases the owner's hold; the last holder ends the goroutine,
// waits for it and closes the descriptor.
func (d *digester) stop() {
	d.mu.Lock()
	if d.refs--; d.refs > 0 {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	for d.running {
		d.idle.Wait()
	}
	d.mu.Unlock()
	d.f.Close()
}

// Hashed is how many bytes from the start were hashed
// (uploader.StreamSource).
func (d *digester) Hashed() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done
}

// Sum is sum (uploader.StreamSource).
func (d *digester) Sum(size int64) []byte { return d.sum(size) }

// Release is stop, for the stream (uploader.StreamSource).
func (d *digester) Release() { d.stop() }
