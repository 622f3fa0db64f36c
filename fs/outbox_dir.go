package fs

import (
	"context"
	"os"
	"slices"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// outboxDir is a directory of the outbox (its top, or one made in it).
type outboxDir struct {
	gofs.Inode
	ob *outbox

	// parent, name and entries are guarded by outbox.mu; parent is nil
	// for the outbox's top directory.
	parent  *outboxDir
	name    string
	entries map[string]outboxNode

	// mode and mtime are guarded by outbox.mu too.
	mode  uint32
	mtime time.Time
}

func (d *outboxDir) kindMode() uint32  { return syscall.S_IFDIR }
func (n *outboxFile) kindMode() uint32 { return syscall.S_IFREG }

func (d *outboxDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.ob.mu.Lock()
	defer d.ob.mu.Unlock()
	d.fillAttrLocked(&out.Attr)
	out.SetTimeout(outboxEntryTimeout)
	return 0
}

func (d *outboxDir) fillAttrLocked(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | d.mode
	a.Nlink = 2
	a.Uid, a.Gid = d.ob.sh.uid, d.ob.sh.gid
	a.SetTimes(nil, &d.mtime, &d.mtime)
}

func (d *outboxDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok {
		return syscall.EISDIR
	}
	d.ob.mu.Lock()
	defer d.ob.mu.Unlock()
	if mode, ok := in.GetMode(); ok {
		d.mode = mode & 0o7777
	}
	if mt, ok := in.GetMTime(); ok {
		d.mtime = mt
	}
	// Owners are not kept: everything belongs to the mounting user.
	d.fillAttrLocked(&out.Attr)
	return 0
}

func (d *outboxDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st, err := d.ob.statfs()
	if err != nil {
		return toErrno(d.ob.log, "statfs", d.ob.dir, err)
	}
	out.FromStatfsT(&st)
	return 0
}

func (d *outboxDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.ob.mu.Lock()
	defer d.ob.mu.Unlock()
	c := d.entries[name]
	if c == nil {
		return nil, syscall.ENOENT
	}
	switch c := c.(type) {
	case *outboxDir:
		c.fillAttrLocked(&out.Attr)
	case *outboxFile:
		c.mu.Lock()
		c.fillAttrLocked(&out.Attr)
		c.mu.Unlock()
	}
	out.SetEntryTimeout(outboxEntryTimeout)
	out.SetAttrTimeout(outboxEntryTimeout)
	return c.EmbeddedInode(), 0
}

func (d *outboxDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d.ob.mu.Lock()
	defer d.ob.mu.Unlock()
	list := make([]fuse.DirEntry, 0, len(d.entries))
	for name, c := range d.entries {
		list = append(list, fuse.DirEntry{Name: name, Mode: c.kindMode(), Ino: c.EmbeddedInode().StableAttr().Ino})
	}
	slices.SortFunc(list, func(a, b fuse.DirEntry) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return gofs.NewListDirStream(list), 0
}

func (d *outboxDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	d.ob.mu.Lock()
	defer d.ob.mu.Unlock()
	if d.entries[name] != nil {
		return nil, syscall.EEXIST
	}
	now := time.Now()
	nd := &outboxDir{ob: d.ob, parent: d, name: name, mode: mode & 0o7777, mtime: now, entries: map[string]outboxNode{}}
	in := d.NewPersistentInode(ctx, nd, gofs.StableAttr{Mode: syscall.S_IFDIR})
	d.entries[name] = nd
	d.mtime = now
	nd.fillAttrLocked(&out.Attr)
	out.SetEntryTimeout(outboxEntryTimeout)
	out.SetAttrTimeout(outboxEntryTimeout)
	return in, 0
}

func (d *outboxDir) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return nil, nil, 0, errno
	}
	ob := d.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if d.entries[name] != nil {
		return nil, nil, 0, syscall.EEXIST
	}
	seq := ob.nextSeq
	f, err := os.OpenFile(ob.stagedPath(seq), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, 0, toErrno(ob.log, "create", ob.dir+"/"+d.pathLocked(name), err)
	}
	ob.nextSeq++
	now := time.Now()
	n := &outboxFile{ob: ob, seq: seq, dir: d, name: name, mode: mode & 0o7777, mtime: now, ctime: now,
		dirty: true, opens: 1}
	write, pt := flags&syscall.O_ACCMODE != syscall.O_RDONLY, ob.sh.passthrough.Load()
	if write {
		n.writers = 1
		if pt {
			n.ptWriters = 1 // see outboxPassthroughHandle
		}
	}
	n.resetDigestLocked()
	h := newOutboxHandle(f, write, pt)
	in := d.NewPersistentInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG})
	d.entries[name] = n
	ob.files[seq] = n
	d.mtime = now
	n.fillAttrLocked(&out.Attr)
	out.SetEntryTimeout(outboxEntryTimeout)
	out.SetAttrTimeout(outboxEntryTimeout)
	return in, h, 0, 0
}

func (d *outboxDir) Unlink(ctx context.Context, name string) syscall.Errno {
	ob := d.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	switch c := d.entries[name].(type) {
	case nil:
		return syscall.ENOENT
	case *outboxDir:
		return syscall.EISDIR
	case *outboxFile:
		if err := ob.up.Remove(c.seq); err != nil {
			return toErrno(ob.log, "unlink", ob.dir+"/"+d.pathLocked(name), err)
		}
		ob.dropLocked(c)
	}
	d.mtime = time.Now()
	return 0
}

func (d *outboxDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	ob := d.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	switch c := d.entries[name].(type) {
	case nil:
		return syscall.ENOENT
	case *outboxFile:
		return syscall.ENOTDIR
	case *outboxDir:
		if len(c.entries) > 0 {
			return syscall.ENOTEMPTY
		}
		delete(d.entries, name)
	}
	d.mtime = time.Now()
	return 0
}

// Rename moves within the outbox; the files moved are uploaded under their
// new names (a rename commits). From or to the rest of the mount it is
// EXDEV, so mv copies.
func (d *outboxDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*outboxDir)
	if !ok || np.ob != d.ob {
		return syscall.EXDEV
	}
	if flags&^uint32(renameNoReplace) != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	if errno := checkName(newName); errno != 0 {
		return errno
	}
	ob := d.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	src := d.entries[name]
	if src == nil {
		return syscall.ENOENT
	}
	if sd, isDir := src.(*outboxDir); isDir {
		for p := np; p != nil; p = p.parent {
			if p == sd {
				return syscall.EINVAL // into itself
			}
		}
	}
	if dst := np.entries[newName]; dst != nil {
		if dst == src {
			return 0
		}
		if flags&renameNoReplace != 0 {
			return syscall.EEXIST
		}
		if errno := ob.replaceLocked(np, newName, src, dst); errno != 0 {
			return errno
		}
	}
	delete(d.entries, name)
	np.entries[newName] = src
	switch s := src.(type) {
	case *outboxDir:
		s.parent, s.name = np, newName
	case *outboxFile:
		s.dir, s.name = np, newName
	}
	now := time.Now()
	d.mtime, np.mtime = now, now
	ob.requeueLocked(src)
	return 0
}

// renameNoReplace is RENAME_NOREPLACE (linux/fs.h).
const renameNoReplace = 1

// replaceLocked removes dst, which a rename of src replaces. outbox.mu is
// held.
func (ob *outbox) replaceLocked(dir *outboxDir, name string, src, dst outboxNode) syscall.Errno {
	switch dst := dst.(type) {
	case *outboxDir:
		if _, ok := src.(*outboxDir); !ok {
			return syscall.EISDIR
		}
		if len(dst.entries) > 0 {
			return syscall.ENOTEMPTY
		}
		delete(dir.entries, name)
	case *outboxFile:
		if _, ok := src.(*outboxDir); ok {
			return syscall.ENOTDIR
		}
		if err := ob.up.Remove(dst.seq); err != nil {
			return toErrno(ob.log, "rename", ob.dir+"/"+dir.pathLocked(name), err)
		}
		ob.dropLocked(dst)
	}
	return 0
}

// requeueLocked tells the uploader the new paths of the files under n
// (n itself if it is a file): queued files are uploaded under the new name,
// and a file still being written is committed now. outbox.mu is held.
func (ob *outbox) requeueLocked(n outboxNode) {
	switch n := n.(type) {
	case *outboxDir:
		for _, c := range n.entries {
			ob.requeueLocked(c)
		}
	case *outboxFile:
		n.mu.Lock()
		defer n.mu.Unlock()
		var err error
		switch {
		case n.gone:
		case n.dirty:
			err = n.commitLocked()
		case n.queued:
			err = ob.up.Rename(n.seq, n.pathLocked())
		}
		if err != nil {
			ob.log.Error("fs: outbox: cannot queue a renamed file", "path", ob.dir+"/"+n.pathLocked(), "err", err)
		}
	}
}

// The outbox holds regular files and directories only: no links, no
// devices, nothing that could point outside it.

func (d *outboxDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *outboxDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *outboxDir) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *outboxDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

func (d *outboxDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, 0
}

func (d *outboxDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (d *outboxDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOTSUP
}
