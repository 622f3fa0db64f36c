package fetcher

import (
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

// memStore is a Store in memory, for the fetcher's own tests; the real one
// (cache.File) has its own suite. It records every write so tests can prove
// that no block was stored twice and that nothing of a stale version was.
type memStore struct {
	bs int64

	mu      sync.Mutex
	gen     uint64
	remote  Remote
	pinned  bool
	data    map[int64][]byte
	writes  map[int64]int // per block, across generations
	resets  int
	failErr error // WriteBlock returns this when set
	// gate, when set, holds every WriteBlock until it can receive from
	// it (or it is closed): blocks stay "being written" meanwhile.
	gate chan struct{}
}

func newMemStore(bs int64) *memStore {
	return &memStore{bs: bs, data: make(map[int64][]byte), writes: make(map[int64]int)}
}

var errStale = errors.New("memstore: stale generation")

func (s *memStore) BlockSize() int64 { return s.bs }

func (s *memStore) Remote() (Remote, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote, s.gen, s.pinned
}

func (s *memStore) Pin(gen uint64, r Remote) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen {
		return errStale
	}
	if s.pinned && s.remote != r {
		return errors.New("memstore: another version is pinned")
	}
	s.remote, s.pinned = r, true
	return nil
}

func (s *memStore) Present(idx int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.data[idx]
	return ok
}

func (s *memStore) Missing(first, last int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := first; i <= last; i++ {
		if _, ok := s.data[i]; !ok {
			return i
		}
	}
	return -1
}

func (s *memStore) LocalBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, b := range s.data {
		n += int64(len(b))
	}
	return n
}

func (s *memStore) WriteBlock(gen uint64, idx int64, data []byte) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return s.failErr
	}
	if gen != s.gen {
		return errStale
	}
	s.data[idx] = append([]byte(nil), data...)
	s.writes[idx]++
	return nil
}

func (s *memStore) Reset(reason string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.pinned = false
	s.remote = Remote{}
	s.data = make(map[int64][]byte)
	s.resets++
	return s.gen, nil
}

// bytes returns the stored bytes [off, off+n); ok is false if any is missing.
func (s *memStore) bytes(off, n int64) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]byte, 0, n)
	for p := off; p < off+n; {
		b, ok := s.data[p/s.bs]
		if !ok {
			return nil, false
		}
		in := p % s.bs
		k := min(int64(len(b))-in, off+n-p)
		out = append(out, b[in:in+k]...)
		p += k
	}
	return out, true
}

func (s *memStore) ReadAt(p []byte, off int64) (int, error) {
	b, ok := s.bytes(off, int64(len(p)))
	if !ok {
		return 0, errors.New("memstore: bytes not present")
	}
	return copy(p, b), nil
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

// verifiedForTest reports whether the whole-file digest was checked.
func (fl *File) verifiedForTest() bool {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	return fl.verified
}

// tWriter sends log lines to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
