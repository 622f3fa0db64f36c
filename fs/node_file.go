package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
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

	// mu guards the open counters. The kernel refuses (with EIO to the
	// caller) to open an inode in passthrough mode while a handle in
	// caching mode is open on it, and the other way round, so Open picks
	// the mode the open handles already use. A counter drops in Release,
	// which the kernel sends after it dropped its own count: the counters
	// may be high for a moment, never low.
	mu           sync.Mutex
	cachedOpen   int // handles served by Read
	passthruOpen int // handles served by the kernel from the data file
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
	if n.cachedOpen == 0 && n.sh.passthrough.Load() && n.store.Complete() {
		f, err := os.Open(n.store.DataPath())
		if err == nil {
			n.passthruOpen++
			return &passthroughHandle{handle: handle{node: n}, f: f}, fuse.FOPEN_KEEP_CACHE, 0
		}
		n.sh.log.Warn("fs: passthrough unavailable, serving reads", "path", n.path, "err", err)
	}
	n.cachedOpen++
	// The bytes of a version never change, so the page cache may keep
	// them across opens.
	return &handle{node: n}, fuse.FOPEN_KEEP_CACHE, 0
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
	if h := asHandle(fh); h != nil {
		if raOff, raN := h.ra.advance(off, end, n.store.BlockSize(), n.size); raN > 0 {
			n.fetch.Readahead(raOff, raN)
		}
	}
	if err := n.fetch.Ensure(ctx, off, end-off); err != nil {
		return nil, toErrno(n.sh.log, "read", n.path, err)
	}
	buf := dest[:end-off]
	nr, err := n.store.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && nr == len(buf)) {
		return nil, toErrno(n.sh.log, "read", n.path, err)
	}
	if nr != len(buf) {
		return nil, toErrno(n.sh.log, "read", n.path, io.ErrUnexpectedEOF)
	}
	return fuse.ReadResultData(buf), 0
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
	node *fileNode
	ra   readahead
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.node.mu.Lock()
	h.node.cachedOpen--
	h.node.mu.Unlock()
	return 0
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
	h.node.mu.Unlock()
	if err := h.f.Close(); err != nil {
		h.node.sh.log.Warn("fs: closing data file", "path", h.node.path, "err", err)
	}
	return 0
}
