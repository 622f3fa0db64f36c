package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"ferry/cache"
	"ferry/manifest"
	"ferry/uploader"
)

// The outbox: the one writable directory of a mount (manifest "outbox").
// Every file written there is staged in the cache directory
// (CACHE/outbox/<seq>, mode 0600, never only in memory) and committed to
// the uploader once its last writer closed it; a rename commits too. A
// change after a commit first tells the uploader (Modify), which abandons
// an upload of the old content. Sent files leave the outbox (unless
// OutboxKeep). Nothing written here can name a place outside the outbox:
// names are single path segments checked by checkName, symlinks, hard
// links and device nodes are refused, and a rename from or to the rest of
// the mount is EXDEV, so mv copies.
//
// Lock order: outbox.mu, outboxFile.mu, then the uploader's own lock. The
// uploader calls back (onSent) without its lock. No lock is held while the
// kernel is notified of a removal.

// outboxEntryTimeout is how long the kernel may cache names and attributes
// in the outbox: entries change behind its back (sent files leave), which
// is also notified, so this only bounds a notification that got lost.
const outboxEntryTimeout = time.Second

// outbox is the shared state of a mount's outbox.
type outbox struct {
	sh       *shared
	up       *uploader.Uploader
	dir      string // the outbox directory, relative to the mount
	staged   string // CACHE/outbox
	root     *outboxDir
	onDone   func(path, state string, err error) // mount-relative path; may be nil
	log      *slog.Logger
	restored []restoredFile // files of the queue, added to the tree in OnAdd
	// writes counts the writes ferry served (not those the kernel wrote
	// itself through passthrough).
	writes atomic.Int64

	// mu guards the tree (every outboxDir's entries, parent and name, every
	// outboxFile's dir and name), files and nextSeq. Commits hold it, as
	// they read the file's path.
	mu      sync.Mutex
	files   map[uint64]*outboxFile // by sequence number
	nextSeq uint64
}

type restoredFile struct {
	path string
	node *outboxFile
}

// newOutbox opens the outbox of the manifest on the cache: it loads the
// upload queue, rebuilds the files it lists and removes staged data that
// no record refers to (files that were still being written when the last
// process stopped). The uploader is not started.
func newOutbox(mo *manifest.Outbox, c *cache.Cache, sh *shared, cacheDir string, opts Options) (*outbox, error) {
	staged, err := c.OutboxDir()
	if err != nil {
		return nil, fmt.Errorf("fs: outbox: %w", err)
	}
	ob := &outbox{sh: sh, dir: mo.Dir, staged: staged, log: sh.log, files: map[uint64]*outboxFile{}}
	if opts.OnUploadDone != nil {
		ob.onDone = opts.OnUploadDone
	}
	up, err := uploader.New(c, uploader.Options{
		URL:       mo.URL,
		Protocol:  mo.Protocol,
		Overwrite: mo.Overwrite,
		Encoding:  mo.Encoding,
		Header:    header(mo.Headers),
		Keep:      opts.OutboxKeep,
		StagedDir: staged,
		TempDir:   filepath.Join(cacheDir, "outbox-tmp"),
		Verify:    c.UncleanStart(),
		Logger:    sh.log,
		OnSent:    ob.onSent,
		OnDone:    ob.uploadDone,
	})
	if err != nil {
		return nil, fmt.Errorf("fs: outbox (manifest line %d): %w", mo.Line, err)
	}
	ob.up = up
	ob.root = &outboxDir{ob: ob, mode: 0o755, mtime: sh.mountTime, entries: map[string]outboxNode{}}
	if err := ob.restore(); err != nil {
		up.Close()
		return nil, err
	}
	return ob, nil
}

// restore rebuilds the files of the queue and cleans the staged directory.
func (ob *outbox) restore() error {
	known := map[string]bool{}
	for _, e := range ob.up.Entries() {
		ob.nextSeq = max(ob.nextSeq, e.Seq)
		dir, name, ok := ob.root.mkdirAll(e.Path)
		if !ok {
			ob.log.Error("fs: outbox: a queued file collides with another; dropping it", "path", e.Path)
			if err := ob.up.Remove(e.Seq); err != nil {
				return fmt.Errorf("fs: outbox: %w", err)
			}
			continue
		}
		n := &outboxFile{ob: ob, seq: e.Seq, dir: dir, name: name, size: e.Size, mode: e.Mode,
			mtime: e.MTime, ctime: e.MTime, queued: true}
		dir.entries[name] = n
		ob.files[e.Seq] = n
		ob.restored = append(ob.restored, restoredFile{path: e.Path, node: n})
		known[filepath.Base(uploader.StagedPath(ob.staged, e.Seq))] = true
	}
	ob.nextSeq++
	ents, err := os.ReadDir(ob.staged)
	if err != nil {
		return fmt.Errorf("fs: outbox: %w", err)
	}
	for _, de := range ents {
		if known[de.Name()] {
			continue
		}
		ob.log.Info("fs: outbox: removing staged data of a file that was never committed", "name", de.Name())
		if err := os.RemoveAll(filepath.Join(ob.staged, de.Name())); err != nil {
			return fmt.Errorf("fs: outbox: %w", err)
		}
	}
	return nil
}

// mkdirAll returns the directory that holds path (creating the
// directories on the way) and the file's name; ok is false when a name on
// the way is a file, or the file's name is taken.
func (d *outboxDir) mkdirAll(path string) (*outboxDir, string, bool) {
	segs := strings.Split(path, "/")
	for _, seg := range segs[:len(segs)-1] {
		switch c := d.entries[seg].(type) {
		case nil:
			nd := &outboxDir{ob: d.ob, parent: d, name: seg, mode: 0o755, mtime: d.ob.sh.mountTime,
				entries: map[string]outboxNode{}}
			d.entries[seg] = nd
			d = nd
		case *outboxDir:
			d = c
		default:
			return nil, "", false
		}
	}
	name := segs[len(segs)-1]
	if _, taken := d.entries[name]; taken {
		return nil, "", false
	}
	return d, name, true
}

// attach adds the outbox to the tree under root, at its directory, with
// the restored files. Called from the root's OnAdd.
func (ob *outbox) attach(ctx context.Context, root *gofs.Inode, inos *inoAllocator) {
	parent := root
	segs := strings.Split(ob.dir, "/")
	for i, seg := range segs[:len(segs)-1] {
		child := parent.GetChild(seg)
		if child == nil {
			dir := strings.Join(segs[:i+1], "/")
			child = parent.NewPersistentInode(ctx, &dirNode{sh: ob.sh},
				gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inos.alloc("d/" + dir)})
			parent.AddChild(seg, child, false)
		}
		parent = child
	}
	in := parent.NewPersistentInode(ctx, ob.root, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inos.alloc("o/" + ob.dir)})
	parent.AddChild(segs[len(segs)-1], in, false)
	ob.root.attachChildren(ctx)
}

// attachChildren creates the inodes of d's entries, recursively.
func (d *outboxDir) attachChildren(ctx context.Context) {
	for name, c := range d.entries {
		switch c := c.(type) {
		case *outboxDir:
			d.AddChild(name, d.NewPersistentInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
			c.attachChildren(ctx)
		case *outboxFile:
			d.AddChild(name, d.NewPersistentInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
		}
	}
}

// start starts the uploads.
func (ob *outbox) start() { ob.up.Start() }

// close stops the uploads (a running one stays queued) and the digests.
func (ob *outbox) close() error {
	ob.mu.Lock()
	for _, n := range ob.files {
		n.mu.Lock()
		n.dropDigestLocked()
		n.mu.Unlock()
	}
	ob.mu.Unlock()
	if err := ob.up.Close(); err != nil {
		return fmt.Errorf("fs: outbox: %w", err)
	}
	return nil
}

// stagedPath is the staged data file of seq.
func (ob *outbox) stagedPath(seq uint64) string {
	return uploader.StagedPath(ob.staged, seq)
}

// onSent removes a sent file from the outbox (the uploader dropped its
// record). A file changed meanwhile stays: it is committed anew. A file
// still open for writing leaves when its last writer closes it, unless it
// was changed.
func (ob *outbox) onSent(seq uint64) {
	ob.mu.Lock()
	n := ob.files[seq]
	if n == nil {
		ob.mu.Unlock()
		return
	}
	n.mu.Lock()
	n.queued = false
	if n.dirty || n.gone {
		n.mu.Unlock()
		ob.mu.Unlock()
		return
	}
	if n.writers > 0 {
		n.leaveOnClose = true
		n.mu.Unlock()
		ob.mu.Unlock()
		return
	}
	n.mu.Unlock()
	parent, name := ob.dropLocked(n)
	ob.mu.Unlock()
	ob.forget(parent, name, n)
}

// dropLocked takes n out of the outbox and deletes its staged data (open
// handles keep reading their descriptors). outbox.mu is held; the caller
// then calls forget without it.
func (ob *outbox) dropLocked(n *outboxFile) (*outboxDir, string) {
	n.mu.Lock()
	n.gone = true
	n.dropDigestLocked()
	n.mu.Unlock()
	parent, name := n.dir, n.name
	delete(parent.entries, name)
	delete(ob.files, n.seq)
	if err := os.Remove(ob.stagedPath(n.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		ob.log.Warn("fs: outbox: cannot remove staged data", "path", n.pathLocked(), "err", err)
	}
	return parent, name
}

// forget removes a dropped file from go-fuse's tree and the kernel's
// caches. No lock may be held: the kernel locks the directory.
func (ob *outbox) forget(parent *outboxDir, name string, n *outboxFile) {
	parent.RmChild(name)
	if errno := parent.NotifyDelete(name, &n.Inode); errno != 0 && errno != syscall.ENOENT {
		ob.log.Debug("fs: outbox: kernel not told of a removal", "name", name, "errno", errno)
	}
}

// uploadDone passes an upload outcome on with the mount-relative path.
func (ob *outbox) uploadDone(path, state string, err error) {
	if ob.onDone != nil {
		ob.onDone(ob.dir+"/"+path, state, err)
	}
}

// checkName refuses names that cannot be one path segment of an upload.
// The kernel resolves "." and ".." and never sends a "/", so these are
// the last line of defence.
func checkName(name string) syscall.Errno {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return syscall.EINVAL
	}
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	return 0
}

// outboxNode is an *outboxDir or an *outboxFile.
type outboxNode interface {
	gofs.InodeEmbedder
	kindMode() uint32
}

// outboxFile is a file of the outbox.
type outboxFile struct {
	gofs.Inode
	ob  *outbox
	seq uint64 // names the staged data and the queue record

	// dir and name place the file; guarded by outbox.mu.
	dir  *outboxDir
	name string

	// mu guards the fields below.
	mu           sync.Mutex
	size         int64
	mtime, ctime time.Time
	mode         uint32 // permission bits shown; the staged file is 0600
	opens        int    // open handles
	writers      int    // open handles with write access
	dirty        bool   // changed since its last commit (or never committed)
	queued       bool   // the uploader has a record of it
	gone         bool   // unlinked, or sent and removed
	leaveOnClose bool   // sent while open for writing: leaves at the last close
	// digest follows the writes while they come in order (cp, mv); nil
	// once one did not, and after a commit.
	digest *digester
	// stream is the upload that started while the file is written in
	// order (uploader.StartStream), sending what digest hashed; nil when
	// none. streamTried is set once one was asked for since the digest
	// started.
	stream      *uploader.Stream
	streamTried bool
	writeStart  time.Time // when digest started: the writer's rate
	// ptWriters counts the open writing handles the kernel serves itself
	// (FUSE passthrough): their writes never reach ferry. While one is
	// open the staged file's size and mtime are the truth
	// (syncStagedLocked), a commit is held (uploader.Content.Held) until
	// the last one is released, and a new file's stream follows the
	// staged file (uploader.FollowStream) instead of a digest.
	ptWriters int
	// held is set when the last commit was held; heldSize is the size it
	// committed.
	held        bool
	heldSize    int64
	stagedMTime time.Time // the staged file's mtime at the last sync
}

// pathLocked is the file's path relative to the outbox; outbox.mu is held.
func (n *outboxFile) pathLocked() string {
	return n.dir.pathLocked(n.name)
}

// pathLocked joins d's path and name; outbox.mu is held.
func (d *outboxDir) pathLocked(name string) string {
	segs := []string{name}
	for p := d; p.parent != nil; p = p.parent {
		segs = append(segs, p.name)
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return strings.Join(segs, "/")
}

// beginChangeLocked runs before the first change after a commit: the
// uploader abandons an upload of the old content. outboxFile.mu is held.
func (n *outboxFile) beginChangeLocked() error {
	if n.dirty {
		return nil
	}
	if n.queued {
		known, err := n.ob.up.Modify(n.seq)
		if err != nil {
			return err
		}
		n.queued = known
	}
	n.dirty, n.leaveOnClose, n.held = true, false, false
	return nil
}

// commitLocked queues the file's content; outbox.mu and outboxFile.mu are
// held.
func (n *outboxFile) commitLocked() error {
	n.syncWrittenLocked()
	// A passthrough writer may still write (a dup'ed descriptor, a
	// mapping): held until its release.
	c := uploader.Content{Path: n.pathLocked(), Size: n.size, MTime: n.mtime, Mode: n.mode, Held: n.ptWriters > 0}
	if n.stream != nil && n.stream.Running() && (n.stream.Follows() || n.digest != nil && n.digest.next() == n.size) {
		// The stream sends the rest and the digest (it holds the digest
		// itself, or hashes what it sends); Commit aborts it if it
		// cannot.
		c.Stream, n.stream = n.stream, nil
	} else if n.digest != nil {
		c.SHA256 = n.digest.sum(n.size)
	}
	// Done with the digest: later appends are rare, and it holds a
	// descriptor.
	n.dropDigestLocked()
	if err := n.ob.up.Commit(n.seq, c); err != nil {
		return err
	}
	n.dirty, n.queued = false, true
	n.held, n.heldSize = c.Held, c.Size
	return nil
}

// syncWrittenLocked takes the size and mtime from the staged file while
// passthrough writers may change it. outboxFile.mu is held.
func (n *outboxFile) syncWrittenLocked() {
	if n.ptWriters > 0 {
		n.syncStagedLocked()
	}
}

// syncStagedLocked takes the size and mtime from the staged file, which
// passthrough writers change without telling. outboxFile.mu is held.
func (n *outboxFile) syncStagedLocked() {
	fi, err := os.Stat(n.ob.stagedPath(n.seq))
	if err != nil {
		return // removed: the last known values stand
	}
	n.size = fi.Size()
	// A time set with utimes stands until the next write.
	if mt := fi.ModTime(); !mt.Equal(n.stagedMTime) {
		n.stagedMTime, n.mtime, n.ctime = mt, mt, mt
	}
}

// passthroughReleasedLocked runs when the last passthrough writer was
// released: the staged file is what it wrote. A commit held for it is
// released to the uploader, or, if the file grew or shrank since (a write
// through a dup'ed descriptor or a mapping after the close that
// committed), changed and committed again by the caller. outbox.mu and
// outboxFile.mu are held.
func (n *outboxFile) passthroughReleasedLocked() error {
	n.syncStagedLocked()
	if !n.held || n.dirty {
		return nil
	}
	n.held = false
	if n.size != n.heldSize {
		return n.beginChangeLocked()
	}
	// Same size: a plain PUT starts only now, and a stream checks the
	// bytes it sent before its body ends.
	n.ob.up.Unhold(n.seq)
	return nil
}

// followLocked starts a stream of new content written by passthrough
// writers (uploader.FollowStream): the file is empty and never committed.
// outbox.mu and outboxFile.mu are held.
func (n *outboxFile) followLocked() {
	if n.stream != nil || n.queued || n.gone || n.size != 0 {
		return
	}
	n.stream = n.ob.up.FollowStream(n.seq, n.pathLocked())
}

// resetDigestLocked starts a digest of the (now empty) staged data, or,
// when passthrough writers write it, a stream that follows it.
func (n *outboxFile) resetDigestLocked() {
	n.dropDigestLocked()
	if n.ptWriters > 0 {
		n.followLocked()
		return
	}
	d, err := newDigester(n.ob.stagedPath(n.seq))
	if err != nil {
		n.ob.log.Warn("fs: outbox: no digest while writing; the upload hashes the file", "err", err)
		return
	}
	n.digest = d
	n.streamTried = false
	n.writeStart = time.Now()
}

// dropDigestLocked stops the digest and abandons a stream (one that sends
// what the digest hashed, or one that follows the file).
func (n *outboxFile) dropDigestLocked() {
	if n.stream != nil {
		n.stream.Abort()
		n.stream = nil
	}
	if n.digest != nil {
		n.digest.stop()
		n.digest = nil
	}
}

// digestWriteLocked tells the digest of a write of n bytes at off.
func (n *outboxFile) digestWriteLocked(off, size int64) {
	if n.digest == nil {
		return
	}
	if off != n.digest.next() {
		n.dropDigestLocked()
		return
	}
	n.digest.wrote(size)
	if !n.streamTried && !n.queued && n.digest.next() >= uploader.StreamMinSize {
		n.streamTried = true
		go n.ob.startStream(n)
	}
}

// startStream starts a streamed upload of n if it is still being written
// in order (uploader.StartStream). Runs on a goroutine of its own: a write
// holds n.mu, and the path needs outbox.mu first.
func (ob *outbox) startStream(n *outboxFile) {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.digest
	if d == nil || n.gone || !n.dirty || n.queued || n.stream != nil {
		return
	}
	d.hold()
	rate := float64(d.next()) / max(time.Since(n.writeStart).Seconds(), 1e-6)
	st := ob.up.StartStream(n.seq, n.pathLocked(), d, rate)
	if st == nil {
		d.stop()
		return
	}
	d.setWake(st.Wake)
	st.Wake() // it may have looked before the wake was set
	n.stream = st
}

// statfs answers statfs in the outbox with the file system that holds the
// staged data: df shows the room left for uploads.
func (ob *outbox) statfs() (syscall.Statfs_t, error) {
	var st syscall.Statfs_t
	err := syscall.Statfs(ob.staged, &st)
	return st, err
}

// progressValue formats user.ferry.progress: bytes sent / size.
func progressValue(sent, size int64) string {
	return strconv.FormatInt(sent, 10) + "/" + strconv.FormatInt(size, 10)
}
