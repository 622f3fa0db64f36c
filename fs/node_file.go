package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"ferry/cache"
	"ferry/fetcher"
)

// fileNode is one manifest file. Its size and mtime are fixed for the life
// of the mount.
type fileNode struct {
	gofs.Inode
	sh    *shared
	path  string // manifest path
	url   string
	size  int64
	mtime time.Time
	store *cache.File
	fetch *fetcher.File
	// failing is set while reads fail: only the first failure of a run is
	// logged at its own level.
	failing atomic.Bool
	// live is set once the node's inode exists (tree.inode): only then
	// may the kernel hold pages of it to invalidate.
	live atomic.Bool

	// mu guards the open counters and openRestarts. The kernel refuses (with EIO to the
	// caller) to open an inode in passthrough mode while a handle in
	// caching mode is open on it, and the other way round, so Open picks
	// the mode the open handles already use. A counter drops in Release,
	// which the kernel sends after it dropped its own count: the counters
	// may be high for a moment, never low.
	mu           sync.Mutex
	cachedOpen   int // handles served by Read
	passthruOpen int // handles served by the kernel from the data file
	// openRestarts is the cache's restart count at the last open: when it
	// changed, the kernel's cached pages are of an older version.
	openRestarts int
	// openAt counts the open handles by the restart count they were
	// opened at. While a handle of an older version is open, new handles
	// bypass the page cache (FOPEN_DIRECT_IO): pages of the new version
	// must never be where an old handle can read them without asking.
	openAt map[int]int
}

func (n *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

func (n *fileNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	n.sh.statfs(out)
	return 0
}

func (n *fileNode) fillAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Size = uint64(n.size)
	// st_blocks counts the local bytes, so du shows what is on disk.
	a.Blocks = uint64((n.store.LocalBytes() + 511) / 512)
	a.Blksize = uint32(min(n.sh.blockSize, 1<<20))
	a.Uid, a.Gid = n.sh.uid, n.sh.gid
	a.Nlink = 1
	a.SetTimes(nil, &n.mtime, &n.mtime)
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sh.passthrough.Load() {
		if st, _ := n.fetch.State(); st == fetcher.StateComplete {
			n.handoverLocked(ctx)
		}
	}
	restarts := n.store.Restarts()
	// A close(2) of a manifest file has nothing to flush (the file is
	// read-only): FOPEN_NOFLUSH spares it the FLUSH round trip.
	const noFlush = fuse.FOPEN_NOFLUSH
	// The bytes of a version never change, so the page cache may keep
	// them across opens, unless the version changed since the last open:
	// an open without FOPEN_KEEP_CACHE makes the kernel drop them.
	keep := uint32(fuse.FOPEN_KEEP_CACHE)
	if restarts != n.openRestarts {
		keep = 0
		n.openRestarts = restarts
	}
	if n.olderOpenLocked(restarts) {
		keep = fuse.FOPEN_DIRECT_IO
	}
	// An open file is filled before closed ones in the background.
	n.fetch.Opened()
	// The kernel reads a passthrough file without asking: the cache must
	// not evict its blocks (punch holes) while the handle is open, and
	// only a file the fetcher calls complete (not failed, say on a digest
	// mismatch) may be handed over.
	st, _ := n.fetch.State()
	if st == fetcher.StateRemote || st == fetcher.StatePartial {
		// Reads follow: open (or create) the data file now, so the
		// first block's write does not do it with a read waiting.
		n.store.Prepare()
	}
	if st == fetcher.StateFailed {
		// Reads must fail with EIO, also where the kernel still caches
		// pages of the file (the invalidation runs on its own).
		keep = fuse.FOPEN_DIRECT_IO
	}
	if n.cachedOpen == 0 && n.sh.passthrough.Load() && st == fetcher.StateComplete && n.store.HoldComplete() {
		f, err := os.Open(n.store.DataPath())
		if err == nil {
			n.passthruOpen++
			n.countOpenLocked(restarts, 1)
			return &passthroughHandle{handle: handle{node: n, restarts: restarts}, f: f}, keep | noFlush, 0
		}
		n.store.Unhold()
		n.sh.log.Warn("fs: passthrough unavailable, serving reads", "path", n.path, "err", err)
	}
	n.cachedOpen++
	n.countOpenLocked(restarts, 1)
	return &handle{node: n, restarts: restarts, nonblock: flags&syscall.O_NONBLOCK != 0}, keep | noFlush, 0
}

// Flush is never called while every open sets FOPEN_NOFLUSH; it counts
// the FLUSH requests that do arrive, for the tests.
func (n *fileNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	n.sh.flushes.Add(1)
	return 0
}

func (n *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.sh.reads.Add(1)
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= n.size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), n.size)
	h := asHandle(fh)
	if h != nil {
		if raOff, raN := h.ra.advance(off, end, n.store.BlockSize(), n.size); raN > 0 {
			n.fetch.Readahead(raOff, raN)
		}
		n.dropBehind(h)
	}
	buf := dest[:end-off]
	if bs := n.store.BlockSize(); n.store.Missing(off/bs, (end-1)/bs) >= 0 {
		if h != nil && h.nonblock {
			// O_NONBLOCK: ask for the bytes, do not wait for them.
			n.fetch.Request(off, end-off)
			return nil, syscall.EAGAIN
		}
		// The read will wait: it ends when its process is gone.
		var stop func()
		ctx, stop = watchCaller(ctx)
		defer stop()
	}
	if err := n.readLocal(ctx, buf, off); err != nil {
		log := n.sh.log
		if n.failing.Swap(true) {
			log = n.sh.quiet // logged at its level already
		}
		return nil, toErrno(log, "read", n.path, err)
	}
	if n.failing.Load() {
		n.failing.Store(false)
	}
	if h != nil && n.store.Restarts() != h.restarts {
		// The remote object changed since this handle was opened: its
		// earlier reads (and the kernel's cached pages) hold the old
		// version, so serving the new one would mix versions.
		return nil, syscall.ESTALE
	}
	return fuse.ReadResultData(buf), 0
}

// errDropped is returned by readLocal when the blocks kept being dropped
// (reset or evicted) between Ensure and the read.
var errDropped = errors.New("fs: local copy dropped while reading")

// readLocal fills buf with the bytes at off once they are local (or
// received: the fetcher may hand over a block it is still writing). The
// generation, read before Ensure and after the copy, proves that the file
// was not reset in between, so the bytes are of one version. A block
// evicted between Ensure and the copy makes the cache's ReadAt fail with
// cache.ErrNotLocal (it never copies a hole): the range is fetched again.
func (n *fileNode) readLocal(ctx context.Context, buf []byte, off int64) error {
	for range 5 {
		_, gen, _ := n.store.Remote()
		copied, err := n.fetch.EnsureCopy(ctx, buf, off)
		if err != nil {
			return err
		}
		if copied {
			// From a block still being written to the store.
			if _, gen2, _ := n.store.Remote(); gen2 == gen {
				return nil
			}
			continue
		}
		nr, err := n.store.ReadAt(buf, off)
		if errors.Is(err, cache.ErrNotLocal) {
			continue
		}
		if err != nil && !(errors.Is(err, io.EOF) && nr == len(buf)) {
			return err
		}
		if nr != len(buf) {
			return io.ErrUnexpectedEOF
		}
		if _, gen2, _ := n.store.Remote(); gen2 == gen {
			return nil
		}
	}
	return errDropped
}

func asHandle(fh gofs.FileHandle) *handle {
	switch h := fh.(type) {
	case *handle:
		return h
	case *passthroughHandle:
		return &h.handle
	}
	return nil
}

// handle is an open file served by Read. It holds the sequential-read
// state of this open.
type handle struct {
	node     *fileNode
	restarts int  // the cache's restart count at open: the version read
	nonblock bool // opened O_NONBLOCK: reads of missing bytes get EAGAIN
	ra       readahead
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	// The handle counts as open until go-fuse is done with its release:
	// the next open may be passthrough only then (release.go).
	h.node.sh.release.afterRelease(ctx, h.released)
	return 0
}

func (h *handle) released() {
	n := h.node
	n.mu.Lock()
	n.cachedOpen--
	n.countOpenLocked(h.restarts, -1)
	if n.cachedOpen == 0 && n.sh.passthrough.Load() && n.size >= dropMinSize && n.sh.inval != nil {
		// The next open will be passthrough if the file is complete:
		// drop the pages cached through this process now (an open
		// waits for it, handoverLocked).
		if st, _ := n.fetch.State(); st == fetcher.StateComplete {
			n.sh.inval.dropRange(n, 0, 0)
		}
	}
	n.mu.Unlock()
	n.fetch.Closed()
}

// passthroughHandle is an open file of a complete file: the kernel reads
// the cache's data file directly. If go-fuse cannot register the backing
// file, the reads come to fileNode.Read as for a handle.
type passthroughHandle struct {
	handle
	f *os.File // the data file, O_RDONLY; closed in Release
}

func (h *passthroughHandle) PassthroughFd() (int, bool) {
	return int(h.f.Fd()), true
}

func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	h.node.mu.Lock()
	h.node.passthruOpen--
	h.node.countOpenLocked(h.restarts, -1)
	h.node.mu.Unlock()
	h.node.store.Unhold()
	h.node.fetch.Closed()
	if err := h.f.Close(); err != nil {
		h.node.sh.log.Warn("fs: closing data file", "path", h.node.path, "err", err)
	}
	return 0
}

// countOpenLocked adds d to the handles open at restart count r. n.mu is
// held.
func (n *fileNode) countOpenLocked(r, d int) {
	if n.openAt == nil {
		n.openAt = make(map[int]int)
	}
	if n.openAt[r] += d; n.openAt[r] <= 0 {
		delete(n.openAt, r)
	}
}

// olderOpenLocked reports whether a handle of a version older than r is
// open. n.mu is held.
func (n *fileNode) olderOpenLocked(r int) bool {
	for at := range n.openAt {
		if at != r {
			return true
		}
	}
	return false
}
