package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"ferry/uploader"
)

// outboxHandle is an open outbox file: a descriptor of its staged data of
// its own, so reads and writes keep working after the file left the outbox.
type outboxHandle struct {
	f     *os.File
	write bool
}

// outboxPassthroughHandle is an outboxHandle the kernel serves itself
// (FUSE passthrough, where the kernel offers it): reads and writes go to
// the staged file without a round trip through ferry, so a copy into the
// outbox runs at the speed of the disk's page cache. Every handle of the
// outbox is one then: the kernel refuses to mix passthrough and caching
// handles of a file, and go-fuse drops the file's backing reference at the
// release of any handle (release.go). Should go-fuse not register the
// backing file, the kernel sends reads and writes to Read and Write as for
// an outboxHandle.
type outboxPassthroughHandle struct {
	outboxHandle
}

func (h *outboxPassthroughHandle) PassthroughFd() (int, bool) {
	return int(h.f.Fd()), true
}

// newOutboxHandle returns the handle of an open staged file f.
func newOutboxHandle(f *os.File, write, pt bool) gofs.FileHandle {
	if pt {
		return &outboxPassthroughHandle{outboxHandle{f: f, write: write}}
	}
	return &outboxHandle{f: f, write: write}
}

func asOutboxHandle(fh gofs.FileHandle) *outboxHandle {
	switch h := fh.(type) {
	case *outboxHandle:
		return h
	case *outboxPassthroughHandle:
		return &h.outboxHandle
	}
	return nil
}

func (n *outboxFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.syncWrittenLocked()
	n.fillAttrLocked(&out.Attr)
	out.SetTimeout(outboxEntryTimeout)
	return 0
}

func (n *outboxFile) fillAttrLocked(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | n.mode
	a.Size = uint64(n.size)
	a.Blocks = uint64((n.size + 511) / 512)
	// Large I/O: cp sizes its buffer by st_blksize.
	a.Blksize = 1 << 20
	a.Uid, a.Gid = n.ob.sh.uid, n.ob.sh.gid
	a.Nlink = 1
	a.SetTimes(nil, &n.mtime, &n.ctime)
}

func (n *outboxFile) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st, err := n.ob.statfs()
	if err != nil {
		return toErrno(n.ob.log, "statfs", n.ob.dir, err)
	}
	out.FromStatfsT(&st)
	return 0
}

func (n *outboxFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	mode := os.O_RDONLY
	if write {
		mode = os.O_RDWR
	}
	pt := n.ob.sh.passthrough.Load()
	// outbox.mu for the path of a stream (lock order).
	n.ob.mu.Lock()
	defer n.ob.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gone {
		return nil, 0, syscall.ENOENT
	}
	f, err := os.OpenFile(n.ob.stagedPath(n.seq), mode, 0)
	if err != nil {
		return nil, 0, toErrno(n.ob.log, "open", n.ob.dir, err)
	}
	if write && pt {
		// Its writes will not be seen: the open is the change.
		if err := n.beginChangeLocked(); err != nil {
			f.Close()
			return nil, 0, toErrno(n.ob.log, "open", n.ob.dir, err)
		}
		n.ptWriters++
	}
	if write && flags&syscall.O_TRUNC != 0 {
		if errno := n.truncateLocked(f, 0); errno != 0 {
			f.Close()
			if pt {
				n.ptWriters--
			}
			return nil, 0, errno
		}
	}
	n.opens++
	if write {
		n.writers++
	}
	if write && pt {
		n.followLocked()
	}
	// No FOPEN_KEEP_CACHE: the content may have changed since the kernel
	// cached it.
	return newOutboxHandle(f, write, pt), 0, 0
}

func (n *outboxFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h := asOutboxHandle(fh)
	if h == nil {
		return nil, syscall.EBADF
	}
	nr, err := h.f.ReadAt(dest, off)
	if err != nil && nr == 0 && !isEOF(err) {
		return nil, toErrno(n.ob.log, "read", n.ob.dir, err)
	}
	return fuse.ReadResultData(dest[:nr]), 0
}

func (n *outboxFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	h := asOutboxHandle(fh)
	if h == nil || !h.write {
		return 0, syscall.EBADF
	}
	n.ob.writes.Add(1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.beginChangeLocked(); err != nil {
		return 0, toErrno(n.ob.log, "write", n.ob.dir, err)
	}
	nw, err := h.f.WriteAt(data, off)
	if nw > 0 {
		n.digestWriteLocked(off, int64(nw))
		n.size = max(n.size, off+int64(nw))
		n.mtime = time.Now()
		n.ctime = n.mtime
	}
	if err != nil {
		return uint32(nw), toErrno(n.ob.log, "write", n.ob.dir, err)
	}
	return uint32(nw), 0
}

func (n *outboxFile) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	h := asOutboxHandle(fh)
	if h == nil {
		return 0
	}
	if err := h.f.Sync(); err != nil {
		return toErrno(n.ob.log, "fsync", n.ob.dir, err)
	}
	return 0
}

// Flush runs at every close(2): when no other handle can write, changed
// content is committed, so the upload is queued when close returns.
func (n *outboxFile) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	h := asOutboxHandle(fh)
	others := 0
	n.ob.mu.Lock()
	defer n.ob.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if h != nil && h.write {
		others = 1
	}
	if !n.dirty || n.gone || n.writers > others {
		return 0
	}
	if err := n.commitLocked(); err != nil {
		return toErrno(n.ob.log, "close", n.ob.dir+"/"+n.pathLocked(), err)
	}
	return 0
}

// Release runs after the last close of a handle (asynchronously): it
// commits what a writer changed after the last flush (mmap, a dup'ed
// descriptor) and lets a sent file leave once no one writes it.
func (n *outboxFile) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	h := asOutboxHandle(fh)
	_, pt := fh.(*outboxPassthroughHandle)
	ob := n.ob
	ob.mu.Lock()
	n.mu.Lock()
	n.opens--
	if h != nil && h.write {
		n.writers--
		if pt {
			n.ptWriters--
		}
	}
	if pt && h.write && n.ptWriters == 0 && !n.gone {
		if err := n.passthroughReleasedLocked(); err != nil {
			ob.log.Error("fs: outbox: cannot queue a file", "path", ob.dir+"/"+n.pathLocked(), "err", err)
		}
	}
	leave := false
	if n.writers == 0 && !n.gone {
		switch {
		case n.dirty:
			if err := n.commitLocked(); err != nil {
				ob.log.Error("fs: outbox: cannot queue a file", "path", ob.dir+"/"+n.pathLocked(), "err", err)
			}
		case n.leaveOnClose:
			leave = true
		}
	}
	n.mu.Unlock()
	var parent *outboxDir
	var name string
	if leave {
		parent, name = ob.dropLocked(n)
	}
	ob.mu.Unlock()
	if leave {
		ob.forget(parent, name, n)
	}
	if h != nil {
		if err := h.f.Close(); err != nil {
			ob.log.Warn("fs: outbox: closing staged data", "err", err)
		}
	}
	return 0
}

func (n *outboxFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ob := n.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gone {
		return syscall.ENOENT
	}
	if size, ok := in.GetSize(); ok {
		var f *os.File
		if h := asOutboxHandle(fh); h != nil && h.write {
			f = h.f
		}
		if errno := n.truncateLocked(f, int64(size)); errno != 0 {
			return errno
		}
		if n.writers == 0 { // truncate(2) by name: a change of its own
			if err := n.commitLocked(); err != nil {
				return toErrno(ob.log, "truncate", ob.dir+"/"+n.pathLocked(), err)
			}
		}
	}
	if mode, ok := in.GetMode(); ok {
		n.mode = mode & 0o7777
	}
	if mt, ok := in.GetMTime(); ok {
		n.mtime = mt
		// touch on a failed upload tries it again.
		if !n.dirty && n.writers == 0 && n.queued {
			if _, err := ob.up.Retry(n.seq); err != nil {
				return toErrno(ob.log, "utimes", ob.dir+"/"+n.pathLocked(), err)
			}
		}
	}
	// Owners are not kept: everything belongs to the mounting user.
	n.ctime = time.Now()
	n.fillAttrLocked(&out.Attr)
	return 0
}

// truncateLocked sets the size of the staged data (through f when given).
// outboxFile.mu is held.
func (n *outboxFile) truncateLocked(f *os.File, size int64) syscall.Errno {
	if err := n.beginChangeLocked(); err != nil {
		return toErrno(n.ob.log, "truncate", n.ob.dir, err)
	}
	n.syncWrittenLocked()
	old := n.size
	var err error
	if f != nil {
		err = f.Truncate(size)
	} else {
		err = os.Truncate(n.ob.stagedPath(n.seq), size)
	}
	if err != nil {
		return toErrno(n.ob.log, "truncate", n.ob.dir, err)
	}
	n.size = size
	switch {
	case size == 0:
		n.resetDigestLocked()
	case n.digest != nil && size != n.digest.next():
		n.dropDigestLocked()
	case n.stream != nil && n.stream.Follows() && size < old:
		// It may have sent bytes that are gone now.
		n.dropDigestLocked()
	}
	n.mtime = time.Now()
	n.ctime = n.mtime
	return 0
}

// Extended attributes of outbox files (SPEC.md): state, progress (bytes
// sent / size), the upload URL, and the reason of a failure.
const xattrError = "user.ferry.error"

func (n *outboxFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	st, url := n.status()
	var val string
	switch attr {
	case xattrState:
		val = string(st.State)
	case xattrProgress:
		val = progressValue(st.Sent, st.Size)
	case xattrURL:
		val = url
	case xattrError:
		if st.Err == "" {
			return 0, syscall.ENODATA
		}
		val = st.Err
	default:
		return 0, syscall.ENODATA
	}
	return copyXattr(dest, val)
}

func (n *outboxFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	list := xattrList
	if st, _ := n.status(); st.Err != "" {
		list += xattrError + "\x00"
	}
	return copyXattr(dest, list)
}

// status is the upload status of n and its upload URL.
func (n *outboxFile) status() (uploader.Status, string) {
	n.ob.mu.Lock()
	path := n.pathLocked()
	n.ob.mu.Unlock()
	n.mu.Lock()
	n.syncWrittenLocked()
	dirty, size := n.dirty, n.size
	n.mu.Unlock()
	url := n.ob.up.URL(path)
	if dirty {
		return uploader.Status{State: uploader.StateWriting, Size: size}, url
	}
	st, ok := n.ob.up.Status(n.seq)
	if !ok {
		// Sent and dropped from the queue; leaving the outbox.
		return uploader.Status{State: uploader.StateSent, Sent: size, Size: size}, url
	}
	return st, url
}

func (n *outboxFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if strings.HasPrefix(attr, "user.ferry.") {
		return syscall.EPERM
	}
	return syscall.ENOTSUP
}

func (n *outboxFile) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if strings.HasPrefix(attr, "user.ferry.") {
		return syscall.EPERM
	}
	return syscall.ENOTSUP
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
