package fs

import (
	"context"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// shared is the state every node of one mount refers to.
type shared struct {
	uid, gid   uint32
	mountTime  time.Time
	blockSize  int64 // the mount's default block size, for Statfs and st_blksize
	log        *slog.Logger
	quiet      *slog.Logger // logs at Debug level, for repeated failures
	files      int          // number of files, for Statfs
	totalBytes int64        // sum of the file sizes, for Statfs
	// passthrough is set once the kernel has agreed to FUSE passthrough
	// (after WaitMount); until then every open is served by Read.
	passthrough atomic.Bool
	// reads counts the reads this process served (passthrough reads
	// never get here).
	reads atomic.Int64
}

// dirNode is a directory implied by the manifest paths. Directories never
// change while mounted.
type dirNode struct {
	gofs.Inode
	sh *shared
}

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.Nlink = 2
	out.Uid, out.Gid = d.sh.uid, d.sh.gid
	out.SetTimes(nil, &d.sh.mountTime, &d.sh.mountTime)
	return 0
}

// rootNode is the mount's root directory; it builds the whole tree in
// OnAdd, from the files Mount prepared.
type rootNode struct {
	dirNode
	files  []*fileNode
	outbox *outbox // nil without one; attached after the files
}

func (r *rootNode) OnAdd(ctx context.Context) {
	inos := newInoAllocator()
	for _, f := range r.files {
		parent := &r.Inode
		segs := strings.Split(f.path, "/")
		for i, seg := range segs[:len(segs)-1] {
			child := parent.GetChild(seg)
			if child == nil {
				dir := strings.Join(segs[:i+1], "/")
				child = parent.NewPersistentInode(ctx, &dirNode{sh: r.sh},
					gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inos.alloc("d/" + dir)})
				parent.AddChild(seg, child, false)
			}
			parent = child
		}
		child := parent.NewPersistentInode(ctx, f,
			gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inos.alloc("f/" + f.path)})
		parent.AddChild(segs[len(segs)-1], child, false)
	}
	if r.outbox != nil {
		r.outbox.attach(ctx, &r.Inode, inos)
	}
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.sh.statfs(out)
	return 0
}

// statfs describes a read-only file system of the manifest's files: the
// blocks are the manifest's bytes and nothing is free.
func (sh *shared) statfs(out *fuse.StatfsOut) {
	bs := sh.blockSize
	out.Bsize = uint32(bs)
	out.Frsize = uint32(bs)
	out.Blocks = uint64((sh.totalBytes + bs - 1) / bs)
	out.Files = uint64(sh.files)
	out.NameLen = 255
}

// inoAllocator hands out inode numbers derived from a hash of the node's
// path, so the same manifest gets the same numbers on every mount. A
// collision moves to the next free number (deterministic for a manifest).
// Numbers stay in [2, 2^63): 1 is the root and go-fuse allocates its
// automatic numbers from 2^63 up.
type inoAllocator struct {
	used map[uint64]bool
}

func newInoAllocator() *inoAllocator {
	return &inoAllocator{used: map[uint64]bool{}}
}

func (a *inoAllocator) alloc(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	ino := h.Sum64() >> 1
	for ino < 2 || a.used[ino] {
		ino = (ino + 1) & (1<<63 - 1)
	}
	a.used[ino] = true
	return ino
}
