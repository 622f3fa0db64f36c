package uploader

import (
	"context"
	"errors"
	"hash/crc32"
	"time"
)

// Following a file whose writes nobody sees. With FUSE passthrough the
// kernel writes the staged file itself, so the owner cannot tell the
// Uploader what was written, nor call Modify before a write lands. A
// FollowStream therefore learns what was written from the file's size
// (polled: nothing signals a write), hashes what it sends itself, and
// trusts no byte it read before the file settled: committed, and no
// writer the owner cannot see left (Content.Held, Unhold). From then on
// every change goes through Modify again, so bytes read after it are
// final. The bytes read before it are read once more, and the body ends
// only if they are still the same; otherwise the request is cut (the
// server stores nothing) and a plain PUT follows.
//
// The check compares two 32-bit CRCs (CRC-32C and CRC-32, both in
// hardware, together about 15 GB/s here against about 2 GB/s for
// SHA-256) of the bytes as sent with the same CRCs of the bytes as they
// are: the two generator polynomials are coprime, so the pair is a 64-bit
// cyclic code, which misses no change confined to 64 consecutive bits and
// any other change with odds of about 2^-64. It guards against accidents
// (a writer that goes back and changes a header, say), not an adversary:
// the writer owns the content and could write any mix as a file of its
// own.

// The intervals between two looks at a followed file: short while it
// grows, doubling up to pollMax while it does not.
const (
	pollMin = time.Millisecond
	pollMax = 32 * time.Millisecond
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errStreamChanged cuts a FollowStream whose file changed after the stream
// read it.
var errStreamChanged = errors.New("uploader: streamed upload: bytes already sent changed before the file was closed")

// FollowStream asks for a streamed PUT of the file seq at path, a new file
// whose writes its owner does not see (FUSE passthrough). The stream waits
// until the staged file has StreamMinSize bytes; then it starts unless
// streams are off (StreamNever, a server that refused one) or another
// stream runs (StreamAuto does not compare rates here). It sends the file as it
// grows, and ends the body only after the commit, once the file settled
// and the bytes read before that proved unchanged (see above). It returns
// nil when no stream can start, as StartStream does; a stream that does
// not start ends on its own (Running stays false). Pass it in
// Content.Stream at the commit, or Abort it.
func (u *Uploader) FollowStream(seq uint64, path string) *Stream {
	if !u.streamsApply(path) {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed || !u.started || u.noStream || u.streamMode == StreamNever || u.items[seq] != nil {
		return nil
	}
	s := u.newStream(seq, path, nil)
	if s == nil {
		return nil
	}
	u.wg.Add(1)
	go s.run()
	return s
}

// waitStart waits until the followed file has StreamMinSize bytes and takes
// the stream's turn; false when the stream does not start (aborted, the
// writer paused for StreamIdle, another stream runs).
func (s *Stream) waitStart() bool {
	u := s.u
	t := time.NewTimer(pollMin)
	defer t.Stop()
	every, last, grew := pollMin, int64(-1), time.Now()
	for {
		fi, err := s.f.Stat()
		if err != nil {
			return false
		}
		if size := fi.Size(); size >= StreamMinSize {
			return s.takeTurn()
		} else if size != last {
			last, grew, every = size, time.Now(), pollMin
		} else if time.Since(grew) >= u.opts.StreamIdle {
			return false
		}
		t.Reset(every)
		every = min(2*every, pollMax)
		select {
		case <-t.C:
		case <-s.kick:
		case <-s.ctx.Done():
			return false
		}
	}
}

// takeTurn starts the request of a FollowStream if it may start now.
func (s *Stream) takeTurn() bool {
	u := s.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.ctx.Err() != nil || !u.streamMayStartLocked(s.seq, 0, true) {
		return false
	}
	u.streaming = true
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	return true
}

// Unhold tells that the writers a Content.Held commit of seq spoke of are
// gone and the staged data is the committed content: the upload may start,
// and a stream may end. Nothing happens when seq is not held.
func (u *Uploader) Unhold(seq uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	it := u.items[seq]
	if it == nil || !it.held {
		return
	}
	it.held = false
	if s := it.stream; s != nil {
		s.mu.Lock()
		s.held = false
		s.mu.Unlock()
		s.Wake()
	}
	if it.state == StateQueued {
		u.ready.push(it)
		u.work.Signal()
	}
}

// follower is the part of a FollowStream's body that follows the file: its
// size, the digest and CRCs of the bytes sent, and the check of the bytes
// read before the file settled. Used by the body's goroutine only.
type follower struct {
	s          *Stream
	seen       int64 // the file's size at the last look
	sha        *hasher
	crcC, crcI uint32 // CRC-32C and CRC-32 of the bytes sent
	timer      *time.Timer
	every      time.Duration
	check      chan error // the check's outcome; nil until the file settled
}

func newFollower(s *Stream) *follower {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &follower{s: s, sha: newHasher(&s.u.wg), timer: t, every: pollMin}
}

func (f *follower) stop() {
	f.timer.Stop()
	f.sha.stop()
}

// written returns how many bytes the file has, looking again once the body
// read them all.
func (f *follower) written(off int64) (int64, error) {
	if off < f.seen {
		return f.seen, nil
	}
	fi, err := f.s.f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() > f.seen {
		f.every = pollMin
	}
	f.seen = fi.Size()
	return f.seen, nil
}

// poll returns a channel that fires when the file should be looked at
// again.
func (f *follower) poll() <-chan time.Time {
	f.timer.Reset(f.every)
	f.every = min(2*f.every, pollMax)
	return f.timer.C
}

// sent adds bytes handed to the connection, in order.
func (f *follower) sent(p []byte) {
	f.sha.write(p)
	f.crcC = crc32.Update(f.crcC, castagnoli, p)
	f.crcI = crc32.Update(f.crcI, crc32.IEEETable, p)
}

// sum is the SHA-256 of the bytes sent; nil after stop.
func (f *follower) sum() []byte { return f.sha.sum() }

// settle starts, once, the check of the first n bytes: the file settled
// when n bytes were sent.
func (f *follower) settle(n int64) {
	if f.check != nil {
		return
	}
	f.check = make(chan error, 1)
	s, crcC, crcI := f.s, f.crcC, f.crcI
	s.u.wg.Add(1)
	go func() {
		defer s.u.wg.Done()
		f.check <- s.checkPrefix(n, crcC, crcI)
	}()
}

// verified waits for the check started by settle.
func (f *follower) verified(ctx context.Context) error {
	if f.check == nil {
		return errStreamChanged // cannot happen: the end comes after settle
	}
	select {
	case err := <-f.check:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// checkPrefix reads the first n bytes of the file again and compares their
// CRCs with crcC and crcI.
func (s *Stream) checkPrefix(n int64, crcC, crcI uint32) error {
	buf := make([]byte, min(n, 1<<20))
	var c, i uint32
	for off := int64(0); off < n; {
		if s.ctx.Err() != nil {
			return context.Cause(s.ctx)
		}
		k, err := s.f.ReadAt(buf[:min(int64(len(buf)), n-off)], off)
		c = crc32.Update(c, castagnoli, buf[:k])
		i = crc32.Update(i, crc32.IEEETable, buf[:k])
		off += int64(k)
		if err != nil && off < n {
			return errStreamChanged // shorter now
		}
	}
	if c != crcC || i != crcI {
		return errStreamChanged
	}
	return nil
}
