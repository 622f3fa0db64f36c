package fs

import (
	"context"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// releaseFS is go-fuse's raw file system with one step added: work a
// handle's Release put off with afterRelease runs once go-fuse's own
// release of the handle is done.
//
// go-fuse (v2.12.1) drops a backing-file reference at the release of every
// handle, caching handles included, after the file system's Release
// returned. A caching handle must therefore count as open until that drop
// is over: a passthrough open that registered the backing file in between
// would lose it to the late drop and fail with EIO.
type releaseFS struct {
	fuse.RawFileSystem

	mu    sync.Mutex
	after map[<-chan struct{}]func() // by the release request's cancel channel
}

func newReleaseFS(raw fuse.RawFileSystem) *releaseFS {
	return &releaseFS{RawFileSystem: raw, after: make(map[<-chan struct{}]func())}
}

func (r *releaseFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.RawFileSystem.Release(cancel, in)
	r.mu.Lock()
	f := r.after[cancel]
	delete(r.after, cancel)
	r.mu.Unlock()
	if f != nil {
		f()
	}
}

// afterRelease runs f when the release request of ctx is served to the
// end, or at once when ctx is not a release request's (no releaseFS, or a
// call from ferry itself). go-fuse gives every request its own cancel
// channel, which identifies the release among those in flight.
func (r *releaseFS) afterRelease(ctx context.Context, f func()) {
	fc, ok := ctx.(*fuse.Context)
	if r == nil || !ok || fc.Cancel == nil {
		f()
		return
	}
	r.mu.Lock()
	r.after[fc.Cancel] = f
	r.mu.Unlock()
}
