package fs

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
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
	// flushes counts the FLUSH requests that reached a manifest file; with
	// FOPEN_NOFLUSH on every open the kernel sends none (tests check).
	flushes atomic.Int64
	// tree is the manifest's directory tree; set before the mount is live.
	tree *tree
	// inval drops the kernel's cached pages of files (invalidate.go).
	inval *invalidator
	// release runs the end of a caching handle's release after go-fuse's
	// own (release.go); nil until mounted.
	release *releaseFS
}

// dirNode is a directory implied by the manifest paths: the paths
// [lo, hi) of the tree (path order) lie below it. Directories never change
// while mounted. Its children get nodes when the kernel looks them up.
type dirNode struct {
	gofs.Inode
	sh     *shared
	dir    string // its path, "" for the root
	lo, hi int    // the tree's paths below it
	// extra is the name of a child that is not the manifest's (the outbox,
	// or a directory on the way to it); "" when none.
	extra string
}

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fillAttr(&out.Attr)
	return 0
}

func (d *dirNode) fillAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
	a.Uid, a.Gid = d.sh.uid, d.sh.gid
	a.SetTimes(nil, &d.sh.mountTime, &d.sh.mountTime)
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
)

// Lookup finds name among the children made already (the outbox, earlier
// lookups), else in the tree, and makes its node.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if ch := d.GetChild(name); ch != nil {
		if ga, ok := ch.Operations().(gofs.NodeGetattrer); ok {
			var a fuse.AttrOut
			if errno := ga.Getattr(ctx, nil, &a); errno != 0 {
				return nil, errno
			}
			out.Attr = a.Attr
		}
		return ch, 0
	}
	t := d.sh.tree
	if t == nil {
		return nil, syscall.ENOENT
	}
	idx, lo, hi, ok := t.child(d.lo, d.hi, d.dir, name)
	switch {
	case !ok:
		return nil, syscall.ENOENT
	case idx >= 0:
		n, err := t.node(idx)
		if err != nil {
			return nil, toErrno(d.sh.log, "lookup", t.files[idx].Path, err)
		}
		in := t.inode(ctx, &d.Inode, idx, n)
		n.fillAttr(&out.Attr)
		return in, 0
	}
	sub := &dirNode{sh: d.sh, dir: joinPath(d.dir, name), lo: lo, hi: hi}
	sub.fillAttr(&out.Attr)
	return d.NewPersistentInode(ctx, sub, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: t.inos.ino('d', sub.dir)}), 0
}

// Readdir lists the directory's part of the tree, then its extra child.
func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	s := &dirStream{t: d.sh.tree, dir: d.dir, k: d.lo, hi: d.hi}
	if d.dir != "" {
		s.prefix = len(d.dir) + 1
	}
	if s.t == nil {
		s.k, s.hi = 0, 0
	}
	if d.extra != "" {
		if ch := d.GetChild(d.extra); ch != nil && (s.t == nil || !s.t.has(d.lo, d.hi, d.dir, d.extra)) {
			s.extra = []fuse.DirEntry{{Name: d.extra, Mode: ch.Mode(), Ino: ch.StableAttr().Ino}}
		}
	}
	return s, 0
}

// joinPath is dir/name, or name in the root.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// rootNode is the mount's root directory. Its OnAdd attaches the outbox;
// the manifest's files and directories are made on lookup.
type rootNode struct {
	dirNode
	outbox *outbox // nil without one; attached after the files
}

func (r *rootNode) OnAdd(ctx context.Context) {
	if r.outbox == nil {
		return
	}
	// The directories on the way to the outbox are made now (the outbox
	// attaches below them), each listing the next one as its extra child.
	parent := &r.dirNode
	segs := strings.Split(r.outbox.dir, "/")
	for _, seg := range segs[:len(segs)-1] {
		parent.extra = seg
		ch := parent.GetChild(seg)
		if ch == nil {
			sub := &dirNode{sh: r.sh, dir: joinPath(parent.dir, seg)}
			sub.lo, sub.hi = r.sh.tree.below(parent.lo, parent.hi, sub.dir)
			ch = parent.NewPersistentInode(ctx, sub, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: r.sh.tree.inos.ino('d', sub.dir)})
			parent.AddChild(seg, ch, false)
		}
		next, ok := ch.Operations().(*dirNode)
		if !ok {
			break
		}
		parent = next
	}
	parent.extra = segs[len(segs)-1]
	r.outbox.attach(ctx, &r.Inode, r.sh.tree.inos)
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

// inoKey names a node for its inode number: kind 'f' (a manifest file),
// 'd' (a directory) or 'o' (the outbox), and its path.
type inoKey struct {
	kind byte
	path string
}

// inoAllocator hands out inode numbers derived from a hash of the node's
// kind and path, so the same manifest gets the same numbers on every mount
// and a number is known without a table. The numbers of every node are
// hashed once at mount: where two collide, all but the first (in key
// order) move to the next free number, kept in moved (deterministic for a
// manifest). Numbers stay in [2, 2^63): 1 is the root and go-fuse
// allocates its automatic numbers from 2^63 up.
type inoAllocator struct {
	moved map[inoKey]uint64
}

// newInoAllocator numbers the keys keys yields (a key may come twice);
// about n of them.
func newInoAllocator(n int, keys func(yield func(inoKey) bool)) *inoAllocator {
	a := &inoAllocator{}
	hashes := make([]uint64, 0, n)
	for k := range keys {
		hashes = append(hashes, inoHash(k.kind, k.path))
	}
	slices.Sort(hashes)
	clash := map[uint64]bool{}
	for i, h := range hashes {
		if h < 2 || i > 0 && hashes[i-1] == h {
			clash[h] = true
		}
	}
	if len(clash) == 0 {
		return a
	}
	var moving []inoKey
	for k := range keys {
		if clash[inoHash(k.kind, k.path)] {
			moving = append(moving, k)
		}
	}
	slices.SortFunc(moving, func(x, y inoKey) int {
		if c := cmp.Compare(inoHash(x.kind, x.path), inoHash(y.kind, y.path)); c != 0 {
			return c
		}
		if c := cmp.Compare(x.kind, y.kind); c != 0 {
			return c
		}
		return strings.Compare(x.path, y.path)
	})
	moving = slices.Compact(moving)
	a.moved = make(map[inoKey]uint64)
	taken := map[uint64]bool{}
	used := func(ino uint64) bool {
		_, found := slices.BinarySearch(hashes, ino)
		return ino < 2 || found || taken[ino]
	}
	for i, k := range moving {
		h := inoHash(k.kind, k.path)
		if h >= 2 && (i == 0 || inoHash(moving[i-1].kind, moving[i-1].path) != h) {
			continue // the first of its hash keeps it
		}
		ino := h
		for used(ino) {
			ino = (ino + 1) & (1<<63 - 1)
		}
		taken[ino] = true
		a.moved[k] = ino
	}
	return a
}

// ino is the inode number of the node of kind and path.
func (a *inoAllocator) ino(kind byte, path string) uint64 {
	if len(a.moved) > 0 {
		if ino, ok := a.moved[inoKey{kind, path}]; ok {
			return ino
		}
	}
	return inoHash(kind, path)
}

// alloc is ino for a key written "KIND/PATH" (the outbox's).
func (a *inoAllocator) alloc(key string) uint64 {
	if len(key) < 2 {
		return a.ino(0, key)
	}
	return a.ino(key[0], key[2:])
}

// inoHash is FNV-1a (64 bits) of kind, "/" and path, halved.
func inoHash(kind byte, path string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	h = (h ^ uint64(kind)) * prime
	h = (h ^ '/') * prime
	for i := 0; i < len(path); i++ {
		h = (h ^ uint64(path[i])) * prime
	}
	return h >> 1
}
