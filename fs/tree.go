package fs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"ferry/cache"
	"ferry/control"
	"ferry/fetcher"
	"ferry/manifest"
)

// tree answers the mount's directory structure from the manifest itself,
// so that a mount of a million files builds no million nodes: a directory
// is a range of the paths in byte order (the paths below "a/b/" are
// contiguous), its children are found by binary search, and go-fuse nodes
// are made only for what the kernel looks up (DisableReadDirPlus keeps
// readdir from looking up every entry).
//
// A file is registered with the cache and the fetcher (made a fileNode)
// when it is first looked up or named by a control operation, unless Mount
// registered it before the mount went live (background fill on, a size to
// resolve, a pin, or a record in the cache from an earlier run).
type tree struct {
	files []manifest.File // the manifest's files, in manifest order
	order []int32         // indexes of files in path order; nil: files are in path order
	inos  *inoAllocator

	// nodes[i] is the node of files[i] once it is registered and
	// asked for; never replaced.
	nodes []atomic.Pointer[fileNode]
	// regs[i] is files[i] as Mount registered it before the mount went
	// live, when it has no node yet (a node is made on first use, from
	// it): store is nil for files Mount did not register. Written only
	// before the mount is live; nil when Mount registered none.
	regs []reg
	// regMu[i%len] serializes the registration of files[i] and the making
	// of its inode.
	regMu [64]sync.Mutex

	c   *cache.Cache
	fet *fetcher.Fetcher
	sh  *shared
	iv  *invalidator
}

// newTree indexes the manifest's paths. extraKeys are other nodes that
// take their inode numbers from a hash too (the outbox's).
func newTree(files []manifest.File, extraKeys []inoKey) *tree {
	t := &tree{files: files, nodes: make([]atomic.Pointer[fileNode], len(files))}
	for i := 1; i < len(files); i++ {
		if files[i-1].Path >= files[i].Path {
			t.order = make([]int32, len(files))
			for j := range t.order {
				t.order[j] = int32(j)
			}
			slices.SortFunc(t.order, func(a, b int32) int { return strings.Compare(files[a].Path, files[b].Path) })
			break
		}
	}
	// Directories: about one for every few files, usually.
	t.inos = newInoAllocator(len(files)+len(files)/64+len(extraKeys), func(yield func(inoKey) bool) {
		t.eachDir(func(dir string) bool { return yield(inoKey{'d', dir}) })
		for i := range files {
			if !yield(inoKey{'f', files[i].Path}) {
				return
			}
		}
		for _, k := range extraKeys {
			if !yield(k) {
				return
			}
		}
	})
	return t
}

// len is the number of files.
func (t *tree) len() int { return len(t.files) }

// index is the manifest index of the k-th path in path order.
func (t *tree) index(k int) int {
	if t.order == nil {
		return k
	}
	return int(t.order[k])
}

// path is the k-th path in path order.
func (t *tree) path(k int) string { return t.files[t.index(k)].Path }

// search returns the first k in [lo, hi) whose path is >= s, or hi.
func (t *tree) search(lo, hi int, s string) int {
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t.path(mid) < s {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// below returns the range of the paths below dir (a directory path, ""
// for the root) within [lo, hi). '0' follows '/', so every path below
// "a/b/" sorts before "a/b0".
func (t *tree) below(lo, hi int, dir string) (int, int) {
	if dir == "" {
		return lo, hi
	}
	lo = t.search(lo, hi, dir+"/")
	return lo, t.search(lo, hi, dir+"0")
}

// eachDir calls fn with every directory the paths imply (not the root),
// each once, parents before children.
func (t *tree) eachDir(fn func(dir string) bool) {
	prev := ""
	for k := range t.len() {
		p := t.path(k)
		common := 0
		for common < len(p) && common < len(prev) && p[common] == prev[common] {
			common++
		}
		// p[:j] is a new directory unless prev starts with p[:j+1].
		for j := strings.IndexByte(p, '/'); j >= 0; {
			if j+1 > common && !fn(p[:j]) {
				return
			}
			next := strings.IndexByte(p[j+1:], '/')
			if next < 0 {
				break
			}
			j += 1 + next
		}
		prev = p
	}
}

// child finds name in the directory dir whose paths are [lo, hi): a file
// (its manifest index, dlo = -1) or a directory (the range of its paths).
func (t *tree) child(lo, hi int, dir, name string) (idx, dlo, dhi int, ok bool) {
	full := name
	if dir != "" {
		full = dir + "/" + name
	}
	k := t.search(lo, hi, full)
	if k < hi && t.path(k) == full {
		return t.index(k), -1, -1, true
	}
	dlo, dhi = t.below(k, hi, full)
	if dlo < dhi {
		return -1, dlo, dhi, true
	}
	return -1, -1, -1, false
}

// has reports whether name is a file or directory of the manifest in the
// directory dir whose paths are [lo, hi).
func (t *tree) has(lo, hi int, dir, name string) bool {
	_, _, _, ok := t.child(lo, hi, dir, name)
	return ok
}

// fileIndex returns the manifest index of the file at path, if any.
func (t *tree) fileIndex(path string) (int, bool) {
	k := t.search(0, t.len(), path)
	if k < t.len() && t.path(k) == path {
		return t.index(k), true
	}
	return -1, false
}

// under returns the manifest indexes of the file at p, or of every file
// below the directory p ("" for all), in path order.
func (t *tree) under(p string) []int {
	if i, ok := t.fileIndex(p); ok {
		return []int{i}
	}
	lo, hi := t.below(0, t.len(), p)
	out := make([]int, 0, hi-lo)
	for k := lo; k < hi; k++ {
		out = append(out, t.index(k))
	}
	return out
}

// reg is a file registered with the cache and the fetcher: what a
// fileNode is made from. A mount of a million files with background fill
// registers every file, but makes a node (about 250 bytes with its
// go-fuse inode) only for those looked up or named by control operations.
type reg struct {
	store *cache.File
	fetch *fetcher.File
	size  int64 // resolved when the manifest has none
}

// registered returns files[i]'s registration, if Mount made one.
func (t *tree) registered(i int) *reg {
	if t.regs == nil || t.regs[i].store == nil {
		return nil
	}
	return &t.regs[i]
}

// node returns the registered node of files[i], registering the file
// with the cache and the fetcher first if needed.
func (t *tree) node(i int) (*fileNode, error) {
	if n := t.nodes[i].Load(); n != nil {
		return n, nil
	}
	mu := &t.regMu[i%len(t.regMu)]
	mu.Lock()
	defer mu.Unlock()
	if n := t.nodes[i].Load(); n != nil {
		return n, nil
	}
	var n *fileNode
	if r := t.registered(i); r != nil {
		n = t.newNode(&t.files[i], *r)
	} else {
		var err error
		if n, err = t.register(&t.files[i]); err != nil {
			return nil, err
		}
	}
	t.nodes[i].Store(n)
	return n, nil
}

// newNode makes the node of mf registered as r.
func (t *tree) newNode(mf *manifest.File, r reg) *fileNode {
	mtime := mf.MTime
	if mtime.IsZero() {
		mtime = t.sh.mountTime
	}
	return &fileNode{sh: t.sh, path: mf.Path, url: mf.URL, size: r.size, mtime: mtime, store: r.store, fetch: r.fetch}
}

// register makes the node of one manifest file: its cache record (created
// or loaded) and its fetcher entry.
func (t *tree) register(mf *manifest.File) (*fileNode, error) {
	cf, err := t.c.File(mf.Path, mf.URL, mf.Size, t.sh.blockSize)
	if err != nil {
		return nil, fmt.Errorf("fs: manifest line %d: %s: %w", mf.Line, mf.Path, err)
	}
	r, err := t.registerWith(mf, cf)
	if err != nil {
		return nil, err
	}
	return t.newNode(mf, r), nil
}

// registerAll registers files[i] for every i of idx with one bulk look-up
// in the cache (cache.Files), before the mount is live, into t.regs.
func (t *tree) registerAll(idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	specs := make([]cache.FileSpec, len(idx))
	for k, i := range idx {
		mf := &t.files[i]
		specs[k] = cache.FileSpec{Path: mf.Path, URL: mf.URL, DeclaredSize: mf.Size, BlockSize: t.sh.blockSize}
	}
	cfs, err := t.c.Files(specs)
	if err != nil {
		return fmt.Errorf("fs: %w", err)
	}
	t.regs = make([]reg, len(t.files))
	for k, i := range idx {
		if t.regs[i], err = t.registerWith(&t.files[i], cfs[k]); err != nil {
			return err
		}
	}
	return nil
}

// registerWith registers mf, whose local copy is cf, with the fetcher.
func (t *tree) registerWith(mf *manifest.File, cf *cache.File) (reg, error) {
	// The manifest's pin keeps the file local (never evicted).
	if err := cf.SetManifestPin(mf.Pin); err != nil {
		return reg{}, fmt.Errorf("fs: manifest line %d: %s: %w", mf.Line, mf.Path, err)
	}
	spec := fetcher.Spec{
		Path:     mf.Path,
		URL:      mf.URL,
		Mirrors:  mf.Mirrors,
		Header:   header(mf.Headers),
		Size:     mf.Size,
		Priority: mf.Priority,
		Pinned:   mf.Pin,
		SHA256:   mf.SHA256,
	}
	if mf.Blocks != nil {
		spec.BlockHashes, spec.BlockHashSize = mf.Blocks.Hashes, mf.Blocks.BlockSize
	}
	ff := t.fet.Add(spec, store{cf})
	if cf.Pinned() {
		ff.SetPinned(true) // pinned by the manifest or by ferry pin
	}
	// Eviction took blocks: background fill looks at the file again.
	cf.SetDropHook(ff.Dropped)
	return reg{store: cf, fetch: ff, size: mf.Size}, nil
}

// inode returns the inode of files[i] (node n) under parent, making it on
// first use. From then on the invalidator may drop its kernel pages.
func (t *tree) inode(ctx context.Context, parent *gofs.Inode, i int, n *fileNode) *gofs.Inode {
	mu := &t.regMu[i%len(t.regMu)]
	mu.Lock()
	defer mu.Unlock()
	if n.live.Load() {
		return n.EmbeddedInode()
	}
	in := parent.NewPersistentInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: t.inos.ino('f', n.path)})
	n.live.Store(true)
	t.iv.add(n)
	return in
}

// transfer is the status row of files[i]: the node's when it is
// registered, else that of a file nothing asked for yet (Mount registered
// every file with local bytes, so it has none).
func (t *tree) transfer(i int) control.Transfer {
	if n := t.nodes[i].Load(); n != nil {
		return n.transfer()
	}
	mf := &t.files[i]
	if r := t.registered(i); r != nil {
		return statusRow(mf.Path, mf.URL, r.size, r.store, r.fetch)
	}
	return control.Transfer{Path: mf.Path, URL: mf.URL, State: string(fetcher.StateRemote), Size: mf.Size,
		Priority: mf.Priority.String(), Pinned: mf.Pin, ETASeconds: eta(mf.Size, 0, 0)}
}

// dirStream lists a directory of the tree: its files and subdirectories
// in path order, then extra entries (the outbox or its parent).
type dirStream struct {
	t      *tree
	dir    string // "" for the root
	k, hi  int
	extra  []fuse.DirEntry
	prefix int // len(dir) plus the slash, 0 for the root
}

func (s *dirStream) HasNext() bool { return s.k < s.hi || len(s.extra) > 0 }

func (s *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	if s.k >= s.hi {
		e := s.extra[0]
		s.extra = s.extra[1:]
		return e, 0
	}
	p := s.t.path(s.k)
	rest := p[s.prefix:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		dir := p[:s.prefix+j]
		s.k = s.t.search(s.k+1, s.hi, dir+"0")
		return fuse.DirEntry{Name: rest[:j], Mode: syscall.S_IFDIR, Ino: s.t.inos.ino('d', dir)}, 0
	}
	s.k++
	return fuse.DirEntry{Name: rest, Mode: syscall.S_IFREG, Ino: s.t.inos.ino('f', p)}, 0
}

func (s *dirStream) Close() {}
