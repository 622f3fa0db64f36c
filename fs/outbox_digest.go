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
type digester struct {
	f *os.File // its own read-only descriptor of the staged data

	mu      sync.Mutex
	idle    *sync.Cond // broadcast when the goroutine stops running
	want    int64      // bytes written in order so far
	done    int64      // bytes hashed
	running bool
	stopped bool
	failed  bool // a read failed: no digest
	// h is written by the goroutine while running, read by sum once it
	// is not.
	h hash.Hash
}

// newDigester starts following the staged data at path (empty so far).
func newDigester(path string) (*digester, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	d := &digester{f: f, h: sha256.New()}
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
	buf := make([]byte, 1<<20)
	for {
		d.mu.Lock()
		if d.stopped || d.failed || d.done >= d.want {
			d.running = false
			d.idle.Broadcast()
			d.mu.Unlock()
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
		d.mu.Unlock()
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

// stop ends the goroutine, waits for it and closes the descriptor.
func (d *digester) stop() {
	d.mu.Lock()
	d.stopped = true
	for d.running {
		d.idle.Wait()
	}
	d.mu.Unlock()
	d.f.Close()
}
