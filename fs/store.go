package fs

import (
	"ferry/cache"
	"ferry/fetcher"
)

// store adapts a *cache.File to fetcher.Store; the two packages do not import
// each other, so their Remote types are converted here.
type store struct {
	f *cache.File
}

var _ fetcher.Store = store{}

func (s store) BlockSize() int64 { return s.f.BlockSize() }

func (s store) Remote() (fetcher.Remote, uint64, bool) {
	r, gen, ok := s.f.Remote()
	return fetcher.Remote(r), gen, ok
}

func (s store) Pin(gen uint64, r fetcher.Remote) error { return s.f.Pin(gen, cache.Remote(r)) }

func (s store) Present(idx int64) bool { return s.f.Present(idx) }

func (s store) Missing(first, last int64) int64 { return s.f.Missing(first, last) }

func (s store) LocalBytes() int64 { return s.f.LocalBytes() }

func (s store) WriteBlock(gen uint64, idx int64, data []byte) error {
	return s.f.WriteBlock(gen, idx, data)
}

func (s store) Reset(reason string) (uint64, error) { return s.f.Reset(reason) }

func (s store) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }
