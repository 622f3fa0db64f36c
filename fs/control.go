package fs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"ferry/cache"
	"ferry/control"
	"ferry/fetcher"
	"ferry/manifest"
	"ferry/uploader"
)

// The control API (package control) is served by every mount on
// CACHE_DIR/control.sock from before the mount goes live until after it is
// unmounted, and closed before the fetcher and the cache. The root
// directory answers user.ferry.control with the socket's path, which is how
// `ferry status MOUNTPOINT` and the other commands find it.

// controlState is a mount's control server (Mounted.ctl).
type controlState struct {
	srv      *control.Server // nil until started, and when it could not be
	socket   string
	cacheDir string

	// ctx bounds the fills that `ferry pin` starts without waiting; fills
	// counts them. stopControl cancels ctx and waits.
	ctx    context.Context
	cancel context.CancelFunc
	fills  sync.WaitGroup
}

var _ control.Mount = (*Mounted)(nil)

// startControl creates the control socket in the cache directory and serves
// the mount's control API on it.
func (m *Mounted) startControl(opts Options) error {
	dir, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return fmt.Errorf("fs: control: %w", err)
	}
	c := &m.ctl
	c.cacheDir = dir
	c.socket = filepath.Join(dir, control.SocketName)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	srv, err := control.Listen(c.socket, m, control.Options{Logger: m.log})
	if err != nil {
		c.cancel()
		return fmt.Errorf("fs: %w", err)
	}
	c.srv = srv
	return nil
}

// stopControl closes the control socket, stops the fills ferry pin started
// and waits for them. Safe to call when the server never started.
func (m *Mounted) stopControl() error {
	c := &m.ctl
	if c.srv == nil {
		return nil
	}
	err := c.srv.Close()
	c.cancel()
	c.fills.Wait()
	return err
}

// ControlSocket is the path of the mount's control socket.
func (m *Mounted) ControlSocket() string { return m.ctl.socket }

// rootOps is what go-fuse serves as the root: the root directory, plus the
// user.ferry.control attribute once the control server runs.
func (m *Mounted) rootOps(root *rootNode) gofs.InodeEmbedder {
	if m.ctl.srv == nil {
		return root
	}
	return &controlRoot{rootNode: root, socket: m.ctl.socket}
}

// controlRoot is the root directory with the user.ferry.control attribute.
type controlRoot struct {
	*rootNode
	socket string
}

var (
	_ gofs.NodeGetxattrer  = (*controlRoot)(nil)
	_ gofs.NodeListxattrer = (*controlRoot)(nil)
)

func (r *controlRoot) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr == control.XattrName {
		return copyXattr(dest, r.socket)
	}
	if g, ok := any(r.rootNode).(gofs.NodeGetxattrer); ok {
		return g.Getxattr(ctx, attr, dest)
	}
	return 0, syscall.ENODATA
}

func (r *controlRoot) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return copyXattr(dest, control.XattrName+"\x00")
}

// Status returns a snapshot of the mount's transfers and uploads (see
// control.Mount).
func (m *Mounted) Status(q control.Query) control.Status {
	cs := m.cache.Stats()
	st := control.Status{
		Version: control.StatusVersion, Mountpoint: m.dir, CacheDir: m.ctl.cacheDir,
		PID: os.Getpid(), Time: time.Now().UTC(), FUSEReads: m.root.sh.reads.Load(),
		Cache: control.Cache{LocalBytes: cs.LocalBytes, Limit: cs.Limit, PinnedBytes: cs.PinnedBytes,
			EvictedBytes: cs.EvictedBytes, DiskFull: cs.DiskFull},
		Transfers: []control.Transfer{},
		Uploads:   []control.Upload{},
	}
	tot := &st.Totals
	tr := m.root.sh.tree
	for i := range tr.files {
		if !underAny(tr.files[i].Path, q.Paths) {
			continue
		}
		t := tr.transfer(i)
		addTransfer(tot, t)
		if !q.NoFiles && !(q.Active && t.State == string(fetcher.StateComplete)) {
			st.Transfers = append(st.Transfers, t)
		}
	}
	for _, u := range m.uploads() {
		if !underAny(u.Path, q.Paths) {
			continue
		}
		addUpload(tot, u)
		if !q.NoFiles && !(q.Active && u.State == string(uploader.StateSent)) {
			st.Uploads = append(st.Uploads, u)
		}
	}
	tot.ETASeconds = eta(tot.Size, tot.Local, tot.Rate)
	return st
}

// transfer is the file's row of the status.
func (n *fileNode) transfer() control.Transfer {
	return statusRow(n.path, n.url, n.size, n.store, n.fetch)
}

// transferOf is the status row of a registered file.
func statusRow(path, url string, size int64, st *cache.File, ff *fetcher.File) control.Transfer {
	info := ff.Info()
	t := control.Transfer{
		Path: path, URL: url, State: string(info.State), Local: st.LocalBytes(), Size: size,
		Rate: info.Rate, Priority: info.Priority.String(), Pinned: info.Pinned || st.Pinned(),
		Paused: info.Paused, Open: info.Open, Restarts: info.Restarts, Fetched: info.Fetched,
	}
	if info.Err != nil {
		t.Error = info.Err.Error()
	}
	t.ETASeconds = eta(t.Size, t.Local, t.Rate)
	if info.State == fetcher.StateComplete {
		t.ETASeconds = 0
	}
	return t
}

func addTransfer(tot *control.Totals, t control.Transfer) {
	tot.Files++
	if t.Size >= 0 {
		tot.Size += t.Size
	}
	tot.Local += t.Local
	tot.Rate += t.Rate
	tot.Fetched += t.Fetched
	switch fetcher.State(t.State) {
	case fetcher.StateRemote:
		tot.Remote++
	case fetcher.StatePartial:
		tot.Partial++
	case fetcher.StateComplete:
		tot.Complete++
	case fetcher.StateFailed:
		tot.Failed++
	}
	if t.Paused {
		tot.Paused++
	}
	if t.Pinned {
		tot.Pinned++
	}
	if t.Error != "" && t.State != string(fetcher.StateFailed) {
		tot.Retrying++
	}
}

func addUpload(tot *control.Totals, u control.Upload) {
	tot.Uploads++
	tot.UploadSize += u.Size
	tot.UploadSent += u.Sent
	switch uploader.State(u.State) {
	case uploader.StateSent:
		tot.UploadsDone++
	case uploader.StateFailed:
		tot.UploadsFail++
	}
}

// eta is the seconds until size bytes are local at rate: 0 when they are,
// -1 when nothing moves or the size is unknown.
func eta(size, local int64, rate float64) int64 {
	switch {
	case size >= 0 && local >= size:
		return 0
	case size < 0 || rate <= 0:
		return -1
	}
	return int64(math.Ceil(float64(size-local) / rate))
}

// uploads lists the outbox's queue with mount-relative paths.
func (m *Mounted) uploads() []control.Upload {
	ob := m.outbox
	if ob == nil {
		return nil
	}
	var out []control.Upload
	for _, e := range ob.up.Entries() {
		u := control.Upload{Path: ob.dir + "/" + e.Path, URL: ob.up.URL(e.Path), State: string(e.State), Size: e.Size}
		if s, ok := ob.up.Status(e.Seq); ok {
			u.State, u.Sent, u.Size, u.Error = string(s.State), s.Sent, s.Size, s.Err
		}
		out = append(out, u)
	}
	return out
}

// underAny reports whether p is one of dirs or lies below one; no dirs
// means everything.
func underAny(p string, dirs []string) bool {
	if len(dirs) == 0 {
		return true
	}
	for _, d := range dirs {
		if d == "" || p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// Apply runs a control operation on the files each path names (see
// control.Mount): a manifest file, or every file below a directory.
func (m *Mounted) Apply(ctx context.Context, op control.Op, req control.Request) []control.Result {
	var prio manifest.Priority
	var prioErr error
	if op == control.OpPriority {
		prio, prioErr = manifest.ParsePriority(req.Priority)
	}
	out := make([]control.Result, len(req.Paths))
	for i, p := range req.Paths {
		r := &out[i]
		r.Path = p
		if prioErr != nil {
			r.Error = prioErr.Error()
			continue
		}
		files, err := m.filesUnder(p)
		r.Files = len(files)
		errs := []error{err}
		switch op {
		case control.OpPause:
			forEach(files, (*fetcher.File).Pause)
		case control.OpResume:
			forEach(files, (*fetcher.File).Resume)
			n, err := m.retryUploads(p)
			r.Files += n
			errs = append(errs, err)
		case control.OpCancel:
			forEach(files, (*fetcher.File).Cancel)
		case control.OpPriority:
			forEach(files, func(f *fetcher.File) { f.SetPriority(prio) })
		case control.OpPin:
			errs = append(errs, m.pin(ctx, files, req))
		case control.OpEvict:
			for _, n := range files {
				errs = append(errs, n.evict())
			}
		}
		if err := errors.Join(errs...); err != nil {
			r.Error = err.Error()
		} else if r.Files == 0 {
			r.Error = m.noFiles(op, p)
		}
	}
	return out
}

// filesUnder returns the manifest file at p, or every one below p, in
// path order, registering those nothing asked for yet. A file that cannot
// be registered (the cache failed) is left out and named in the error.
func (m *Mounted) filesUnder(p string) ([]*fileNode, error) {
	t := m.root.sh.tree
	idx := t.under(p)
	out := make([]*fileNode, 0, len(idx))
	var errs []error
	for _, i := range idx {
		n, err := t.node(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, n)
	}
	return out, errors.Join(errs...)
}

// noFiles explains why p named no file.
func (m *Mounted) noFiles(op control.Op, p string) string {
	if ob := m.outbox; ob != nil && underAny(p, []string{ob.dir}) {
		if op == control.OpResume {
			return "no such upload in the outbox queue"
		}
		return "in the outbox: of the control operations, only resume applies to uploads (it retries a failed one)"
	}
	if p == "" {
		return "the manifest has no files"
	}
	return "no such file or directory in the manifest"
}

func forEach(files []*fileNode, fn func(*fetcher.File)) {
	for _, n := range files {
		fn(n.fetch)
	}
}

// retryUploads retries the failed uploads at or below p and returns how many
// uploads p names.
func (m *Mounted) retryUploads(p string) (int, error) {
	ob := m.outbox
	if ob == nil {
		return 0, nil
	}
	named := 0
	var errs []error
	for _, e := range ob.up.Entries() {
		if !underAny(ob.dir+"/"+e.Path, []string{p}) {
			continue
		}
		named++
		if e.State == uploader.StateFailed {
			if _, err := ob.up.Retry(e.Seq); err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", ob.dir, e.Path, err))
			}
		}
	}
	return named, errors.Join(errs...)
}

// pin pins the files in the cache (never evicted, durably) and in the
// fetcher (filled first), and fetches them whole now: in the request when
// req.Wait, else on a goroutine that stopControl stops. Unpin undoes the
// pin of ferry pin; a pin of the manifest stays.
func (m *Mounted) pin(ctx context.Context, files []*fileNode, req control.Request) error {
	var errs []error
	for _, n := range files {
		if err := n.store.SetPinned(!req.Unpin); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.path, err))
			continue
		}
		n.fetch.SetPinned(n.store.Pinned())
	}
	if req.Unpin || len(files) == 0 {
		return errors.Join(errs...)
	}
	if req.Wait {
		for _, n := range files {
			if err := n.fetch.Fill(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.path, err))
			}
		}
		return errors.Join(errs...)
	}
	c := &m.ctl
	c.fills.Add(1)
	go func() {
		defer c.fills.Done()
		for _, n := range files {
			if err := n.fetch.Fill(c.ctx); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				m.log.Warn("fs: pin: fill failed", "path", n.path, "err", err)
			}
		}
	}()
	return errors.Join(errs...)
}

// evict drops the file's local copy and holds its background transfer (as
// ferry cancel), so the room stays free; reads fetch what they need again.
// A pinned file, and a file the kernel reads directly from the cache
// (passthrough), are refused.
func (n *fileNode) evict() error {
	if n.store.Pinned() {
		return fmt.Errorf("%s is pinned (by ferry pin or the manifest): unpin it first", n.path)
	}
	if err := n.evictLocal(); err != nil {
		return err
	}
	// The kernel may hold pages of the file: drop them, so that reads
	// come here again (and fetch the bytes again). A file never looked
	// up has no inode, and no pages.
	if !n.live.Load() {
		return nil
	}
	if errno := n.NotifyContent(0, 0); errno != 0 && errno != syscall.ENOENT {
		n.sh.log.Debug("fs: evict: kernel cache not invalidated", "path", n.path, "errno", errno)
	}
	return nil
}

// evictLocal drops the blocks unless the kernel reads the file directly;
// n.mu keeps an open from handing the file to the kernel meanwhile.
func (n *fileNode) evictLocal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.passthruOpen > 0 {
		return fmt.Errorf("%s is open and read by the kernel from the cache: close it first", n.path)
	}
	n.fetch.Cancel()
	if err := n.store.Evict(); err != nil {
		return fmt.Errorf("%s: %w", n.path, err)
	}
	n.fetch.Dropped()
	return nil
}

// MountOf finds the ferry mount that path (absolute, or relative to the
// working directory) lies in: its mountpoint, and path relative to it
// ("/"-separated, "" for the mountpoint itself). Symbolic links are
// resolved when they can be. The error says when path is in no ferry
// mount.
func MountOf(path string) (mountpoint, rel string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", fmt.Errorf("fs: %w", err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	entries, err := mountEntries()
	if err != nil {
		return "", "", err
	}
	// The mount a path is on is the one with the longest mountpoint that
	// contains it (the last such entry, when several are stacked).
	var best mountEntry
	found := false
	for _, e := range entries {
		if within(abs, e.mountpoint) && (!found || len(e.mountpoint) >= len(best.mountpoint)) {
			best, found = e, true
		}
	}
	if !found || best.fstype != "fuse."+fsName {
		return "", "", fmt.Errorf("fs: %s is not inside a ferry mount", abs)
	}
	rel, err = filepath.Rel(best.mountpoint, abs)
	if err != nil {
		return "", "", fmt.Errorf("fs: %w", err)
	}
	if rel == "." {
		rel = ""
	}
	return best.mountpoint, filepath.ToSlash(rel), nil
}

// within reports whether the clean absolute path p is dir or lies below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// MountInfo is one ferry mount of /proc/self/mountinfo.
type MountInfo struct {
	Dir string // the mountpoint
	UID int    // the mounting user (the FUSE user_id option); -1 if not shown
}

// Mounts returns every ferry mount in this process's mount namespace, of
// every user, in mount order.
func Mounts() ([]MountInfo, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("fs: %w", err)
	}
	var out []MountInfo
	for _, line := range strings.Split(string(data), "\n") {
		e, ok := parseMountinfoLine(line)
		if !ok || e.fstype != "fuse."+fsName {
			continue
		}
		mi := MountInfo{Dir: e.mountpoint, UID: -1}
		fields := strings.Fields(line)
		for _, opt := range strings.Split(fields[len(fields)-1], ",") {
			if v, ok := strings.CutPrefix(opt, "user_id="); ok {
				if uid, err := strconv.Atoi(v); err == nil {
					mi.UID = uid
				}
			}
		}
		out = append(out, mi)
	}
	return out, nil
}

// mountEntries reads every entry of /proc/self/mountinfo.
func mountEntries() ([]mountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("fs: %w", err)
	}
	var out []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		if e, ok := parseMountinfoLine(line); ok {
			out = append(out, e)
		}
	}
	return out, nil
}
