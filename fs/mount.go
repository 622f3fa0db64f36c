package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"ferry/cache"
	"ferry/fetcher"
	"ferry/manifest"
)

// fsName is the mount's source in /proc/self/mountinfo; its type is
// "fuse.ferry", which is what `mount -t fuse.ferry` names.
const fsName = "ferry"

// DefaultBlockSize is the block size of new cache records when
// Options.BlockSize is zero.
const DefaultBlockSize = 64 << 10

// kernelReadAheadKB is what the mount's read_ahead_kb is raised to: the
// kernel otherwise keeps 128 KiB reads whatever MaxReadAhead says
// (FACTS.md).
const kernelReadAheadKB = 1024

// Options configure Mount. The zero value works, except CacheDir.
type Options struct {
	CacheDir    string        // cache directory (created 0700); required
	BlockSize   int64         // block size of new cache records; 0: DefaultBlockSize
	MaxConns    int           // connections to origins in all; 0: the fetcher's default
	Background  bool          // fill every file in the background
	ReadTimeout time.Duration // how long a read waits for missing bytes; 0: no limit
	AllowOther  bool          // let other users see the mount
	Logger      *slog.Logger  // nil discards
	Debug       bool          // log every FUSE request (at Info level)
	// OutboxKeep keeps sent outbox files (state "sent") instead of
	// removing them.
	OutboxKeep bool
	// OnUploadDone, when set, is called once each time an outbox file is
	// sent or fails for good, with its mount-relative path; it runs on an
	// upload worker and must not block long.
	OnUploadDone func(path, state string, err error)
	// OnDownloadDone, when set, is called once each time a file completes
	// (its digest matched, if the manifest has one) or fails. It runs on
	// a fetcher worker: it must not block.
	OnDownloadDone func(fetcher.Info)
	// Bandwidth limits background fill (--bwlimit); reads are never held.
	Bandwidth fetcher.Bandwidth
	// MaxConnsPerHost caps the connections to one host; 0: MaxConns.
	MaxConnsPerHost int
	// CacheMaxSize bounds the bytes of remote data kept in the cache
	// (cache.Options.MaxSize); 0: no bound but the disk's.
	CacheMaxSize int64
	// CacheMinFree is the free disk space the cache leaves
	// (cache.Options.MinFree); 0: none.
	CacheMinFree int64
}

// Mounted is a live ferry mount. It owns the FUSE server, the fetcher and the
// cache; must call Close.
type Mounted struct {
	dir     string // absolute mountpoint
	root    *rootNode
	log     *slog.Logger
	server  *fuse.Server
	fetcher *fetcher.Fetcher
	cache   *cache.Cache
	outbox  *outbox       // nil without a manifest outbox
	dev     string        // major:minor of the mount, "" if unknown
	served  chan struct{} // closed when the FUSE serve loop has ended
	ctl     controlState  // the control socket (control.go)
	inval   *invalidator  // drops the kernel's pages of dropped files

	closeOnce sync.Once
	closeErr  error
}

// Mount mounts the files of m at mountpoint and returns once the mount is
// live and the background fill has started. See MountContext.
func Mount(mountpoint string, m *manifest.Manifest, opts Options) (*Mounted, error) {
	return MountContext(context.Background(), mountpoint, m, opts)
}

// MountContext is Mount with a context that bounds the preparation (the
// resolution of sizes the manifest leaves open); it is not used once the
// mount is live. On error nothing is left mounted and the cache is closed.
func MountContext(ctx context.Context, mountpoint string, m *manifest.Manifest, opts Options) (_ *Mounted, err error) {
	if opts.CacheDir == "" {
		return nil, errors.New("fs: no cache directory")
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := mountDir(mountpoint)
	if err != nil {
		return nil, err
	}
	// The cache tells the fetcher when room for background fill came
	// back; the fetcher is made after the cache.
	var wake atomic.Pointer[fetcher.Fetcher]
	c, err := cache.Open(opts.CacheDir, cache.Options{
		Logger:  opts.Logger,
		MaxSize: opts.CacheMaxSize,
		MinFree: opts.CacheMinFree,
		OnRoom: func() {
			if f := wake.Load(); f != nil {
				f.Wake()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("fs: %w", err)
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	iv := newInvalidator(opts.Logger)
	fet := fetcher.New(fetcher.Options{
		MaxConns:    opts.MaxConns,
		Background:  opts.Background,
		ReadTimeout: opts.ReadTimeout,
		Logger:      opts.Logger,
		// Background fill only fills free room in the cache; it never
		// evicts (cache/space.go).
		Room:            c.Room,
		OnDone:          iv.done(opts.OnDownloadDone),
		OnReset:         iv.reset,
		Bandwidth:       opts.Bandwidth,
		MaxConnsPerHost: opts.MaxConnsPerHost,
	})
	wake.Store(fet)
	defer func() {
		if err != nil {
			fet.Close()
		}
	}()
	sh := &shared{
		uid:       uint32(os.Getuid()),
		gid:       uint32(os.Getgid()),
		mountTime: time.Now(),
		blockSize: opts.BlockSize,
		log:       opts.Logger,
		quiet:     slog.New(quietHandler{opts.Logger.Handler()}),
		inval:     iv,
	}
	t := newTree(m.Files, outboxInoKeys(m.Outbox))
	t.c, t.fet, t.sh, t.iv = c, fet, sh, iv
	sh.tree = t
	eager, err := eagerFiles(t, c, opts.Background)
	if err != nil {
		return nil, fmt.Errorf("fs: %w", err)
	}
	if err := t.registerAll(eager); err != nil {
		return nil, err
	}
	files := make([]prepared, len(eager))
	for k, i := range eager {
		files[k] = prepared{r: &t.regs[i], mf: &m.Files[i]}
	}
	if pinned, limit, over := c.PinsExceedLimit(); over {
		opts.Logger.Warn("fs: pinned files are larger than the cache may hold: the limit cannot hold and pinned files fill only as room allows",
			"pinned", pinned, "limit", limit)
	}
	if err := resolveSizes(ctx, files, opts.MaxConns); err != nil {
		return nil, err
	}
	sh.files = len(m.Files)
	for i := range m.Files {
		size := m.Files[i].Size
		if r := t.registered(i); r != nil {
			size = r.size
		}
		sh.totalBytes += size
	}
	var ob *outbox
	if m.Outbox != nil {
		if ob, err = newOutbox(m.Outbox, c, sh, opts.CacheDir, opts); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				ob.close()
			}
		}()
	}
	root := &rootNode{dirNode: dirNode{sh: sh, hi: t.len()}, outbox: ob}
	mnt := &Mounted{dir: dir, root: root, log: opts.Logger, fetcher: fet, cache: c, outbox: ob, served: make(chan struct{}), inval: iv}
	// The control socket is up before the mount is live, and its path is
	// in the root's user.ferry.control attribute.
	if err := mnt.startControl(opts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			mnt.stopControl()
		}
	}()
	// Connections to the origins open while the mount goes live.
	fet.Warm(warmURLs(t, m))
	if err := mnt.mount(root, opts); err != nil {
		return nil, err
	}
	fet.Start()
	if ob != nil {
		ob.start()
	}
	if len(m.Files) >= bigManifest {
		// Parsing and indexing a large manifest leaves much garbage:
		// give it back now rather than carry it as RSS.
		debug.FreeOSMemory()
	}
	opts.Logger.Info("fs: mounted", "mountpoint", dir, "files", len(m.Files), "registered", len(files), "cache", opts.CacheDir)
	return mnt, nil
}

// mountDir returns the absolute, symlink-free mountpoint, refusing one that
// is already a ferry mount.
func mountDir(mountpoint string) (string, error) {
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("fs: mountpoint: %w", err)
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return "", fmt.Errorf("fs: mountpoint: %w", err)
	}
	if st, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("fs: mountpoint: %w", err)
	} else if !st.IsDir() {
		return "", fmt.Errorf("fs: mountpoint %s is not a directory", dir)
	}
	if e, ok, err := findMount(dir); err == nil && ok && e.fstype == "fuse."+fsName {
		return "", fmt.Errorf("fs: %s is already a ferry mount", dir)
	}
	return dir, nil
}

// prepared is a file Mount registered, with what it needs to resolve its
// size.
type prepared struct {
	r  *reg
	mf *manifest.File
}

// bigManifest is the number of files from which Mount returns the
// garbage of its preparation to the system.
const bigManifest = 100_000

// eagerFiles returns the manifest indexes of the files Mount registers
// before the mount goes live, in manifest order: every file when
// background fill is on (it fills them all); else those whose size must
// be resolved first, those the manifest pins, and those with a record in
// the cache (an earlier run's blocks, a ferry pin): status and eviction
// know them from the start. The others are registered on first use.
func eagerFiles(t *tree, c *cache.Cache, all bool) ([]int, error) {
	n := t.len()
	if all {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	mark := make([]bool, n)
	for i := range t.files {
		mark[i] = t.files[i].Size < 0 || t.files[i].Pin
	}
	// The records come in path order, as the tree's paths: one merge.
	k := 0
	err := c.RecordedPaths(func(p string) bool {
		for k < n && t.path(k) < p {
			k++
		}
		if k < n && t.path(k) == p {
			mark[t.index(k)] = true
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	var out []int
	for i, m := range mark {
		if m {
			out = append(out, i)
		}
	}
	return out, nil
}

// outboxInoKeys are the nodes of the outbox that take their inode number
// from a hash, as the manifest's: the directories on the way to it and the
// outbox itself.
func outboxInoKeys(ob *manifest.Outbox) []inoKey {
	if ob == nil {
		return nil
	}
	var keys []inoKey
	segs := strings.Split(ob.Dir, "/")
	for i := 1; i < len(segs); i++ {
		keys = append(keys, inoKey{'d', strings.Join(segs[:i], "/")})
	}
	return append(keys, inoKey{'o', ob.Dir})
}

func header(h map[string]string) http.Header {
	if len(h) == 0 {
		return nil
	}
	out := make(http.Header, len(h))
	for k, v := range h {
		out.Set(k, v)
	}
	return out
}

// mount starts the FUSE server and waits until the kernel serves the
// mount; on error nothing is left mounted.
func (m *Mounted) mount(root *rootNode, opts Options) error {
	entryTimeout := time.Hour
	attrTimeout := time.Second
	fsOpts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			// We run as root: mount(2) /dev/fuse directly. go-fuse
			// falls back to fusermount3 when that fails (not root).
			DirectMount: true,
			// Shown as the source ("ferry") and the type
			// ("fuse.ferry") in mountinfo, df -T and mount.
			FsName: fsName,
			Name:   fsName,
			// Reads of up to 1 MiB per request (max_read and the
			// kernel's max_pages follow MaxWrite); with 128 KiB
			// requests a FUSE read costs ~20% more (FACTS.md).
			MaxWrite: 1 << 20,
			// Let the kernel read ahead up to 1 MiB; the bdi's
			// read_ahead_kb is raised to match after the mount.
			MaxReadAhead: 1 << 20,
			// Other users may read only when asked for.
			AllowOther: opts.AllowOther,
			// Answer security.* xattr queries (sent on every
			// write-ish syscall and by ls -Z) in go-fuse without a
			// round trip; we carry no labels.
			IgnoreSecurityLabels: true,
			// Reads are answered from a buffer (ReadResultData): a
			// splice would only copy it into a pipe first, and logs a
			// line per 1 MiB read when the pipe cannot grow.
			DisableSplice: true,
			// Plain readdir: with READDIRPLUS go-fuse looks up every
			// entry listed, which would make (and register) a node per
			// file of a directory only listed; `find` of a million files
			// needs none. A stat still looks a file up.
			DisableReadDirPlus: true,
			Debug:              opts.Debug,
			Logger:             slog.NewLogLogger(opts.Logger.Handler(), slog.LevelInfo),
		},
		// The tree is fixed for the life of the mount, so names
		// (positive and negative) may be cached for long.
		EntryTimeout:    &entryTimeout,
		NegativeTimeout: &entryTimeout,
		// Sizes and times are fixed too, but st_blocks follows the
		// local bytes: keep attributes for a second, like libfuse.
		AttrTimeout:    &attrTimeout,
		RootStableAttr: &gofs.StableAttr{Ino: 1},
		Logger:         log.New(&slogWriter{opts.Logger}, "", 0),
	}
	root.sh.release = newReleaseFS(gofs.NewNodeFS(m.rootOps(root), fsOpts))
	server, err := fuse.NewServer(root.sh.release, m.dir, &fsOpts.MountOptions)
	if err != nil {
		// go-fuse does not unmount when the INIT handshake fails.
		m.removeStaleMount()
		return fmt.Errorf("fs: mount %s: %w", m.dir, err)
	}
	m.server = server
	// INIT is done: the kernel's answer on passthrough is known. go-fuse
	// asks for CAP_PASSTHROUGH by default (no mount option needed);
	// registering a backing file needs CAP_SYS_ADMIN, so only root gets
	// it. Without it every read is served by fileNode.Read.
	if server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0 && os.Geteuid() == 0 {
		root.sh.passthrough.Store(true)
	}
	go func() {
		server.Serve()
		close(m.served)
	}()
	if err := server.WaitMount(); err != nil {
		m.unmount()
		return fmt.Errorf("fs: mount %s: %w", m.dir, err)
	}
	if e, ok, err := findMount(m.dir); err == nil && ok {
		m.dev = e.dev
		m.raiseReadahead()
	} else {
		m.log.Warn("fs: mount not found in mountinfo", "mountpoint", m.dir, "err", err)
	}
	return nil
}

// raiseReadahead sets the mount's read_ahead_kb (best effort).
func (m *Mounted) raiseReadahead() {
	p := "/sys/class/bdi/" + m.dev + "/read_ahead_kb"
	if err := os.WriteFile(p, []byte(fmt.Sprint(kernelReadAheadKB)), 0); err != nil {
		m.log.Warn("fs: cannot raise kernel readahead", "path", p, "err", err)
	}
}

// slogWriter sends go-fuse's diagnostic lines to the logger as warnings.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("fs: go-fuse: " + string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}

// Dir is the absolute mountpoint.
func (m *Mounted) Dir() string { return m.dir }

// Wait blocks until the mount is gone: unmounted from outside (umount,
// fusermount3 -u, ferry unmount) or by Close. Call Close afterwards to
// release the fetcher and the cache.
func (m *Mounted) Wait() { <-m.served }

// Close unmounts (retrying, then lazily as a last resort), stops the
// fetcher, then closes the cache, which makes every written block durable.
// Safe to call more than once and after Wait returned.
func (m *Mounted) Close() error {
	m.closeOnce.Do(func() {
		errs := []error{m.unmount()}
		// Before the fetcher and the cache: a pin fill stops waiting.
		errs = append(errs, m.stopControl())
		if m.outbox != nil {
			// Before the cache: an upload cut short stays queued.
			errs = append(errs, m.outbox.close())
		}
		if err := m.fetcher.Close(); err != nil {
			errs = append(errs, fmt.Errorf("fs: closing fetcher: %w", err))
		}
		m.inval.close()
		if err := m.cache.Close(); err != nil {
			errs = append(errs, fmt.Errorf("fs: closing cache: %w", err))
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// unmount takes the mount down and waits for the serve loop to end.
func (m *Mounted) unmount() error {
	select {
	case <-m.served:
		return nil // unmounted from outside
	default:
	}
	err := m.server.Unmount() // retries a few times on EBUSY
	if err == nil {
		<-m.served
		return nil
	}
	if e, ok, ferr := findMount(m.dir); ferr == nil && (!ok || e.fstype != "fuse."+fsName) {
		<-m.served // went away from outside meanwhile
		return nil
	}
	// Still busy (an open file, a shell's cwd): detach it from the tree
	// and abort the connection, so the serve loop ends and processes
	// still holding files get ENOTCONN rather than a hang.
	m.log.Warn("fs: unmount failed, detaching", "mountpoint", m.dir, "err", err)
	if derr := lazyUnmount(m.dir); derr != nil {
		return fmt.Errorf("fs: unmount %s: %w (lazy unmount: %v)", m.dir, err, derr)
	}
	if !m.abortConnection() {
		// The serve loop ends when the last open file is closed;
		// requests until then fail, as the fetcher and the cache are
		// closed next.
		m.log.Warn("fs: detached; still served until its files are closed", "mountpoint", m.dir)
		return nil
	}
	<-m.served
	return nil
}

// lazyUnmount detaches dir (umount -l), through fusermount3 when not root.
func lazyUnmount(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err == nil || os.Geteuid() == 0 {
		return err
	}
	out, ferr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("%v; fusermount3: %v: %s", err, ferr, bytes.TrimSpace(out))
	}
	return nil
}

// fuseConnections is where the kernel's fusectl file system lists FUSE
// connections.
const fuseConnections = "/sys/fs/fuse/connections"

// abortConnection aborts the FUSE connection of the mount (whose number is
// the minor of its device), failing every pending and future request. When
// fusectl is not mounted (no systemd), it is mounted for the moment, as
// root.
func (m *Mounted) abortConnection() bool {
	var major, minor int
	if _, err := fmt.Sscanf(m.dev, "%d:%d", &major, &minor); err != nil {
		m.log.Warn("fs: cannot abort FUSE connection: device unknown", "dev", m.dev)
		return false
	}
	conn := fmt.Sprintf("%s/%d", fuseConnections, minor)
	if _, err := os.Stat(conn); errors.Is(err, os.ErrNotExist) && os.Geteuid() == 0 {
		if err := syscall.Mount("fusectl", fuseConnections, "fusectl", 0, ""); err == nil {
			defer syscall.Unmount(fuseConnections, 0)
		}
	}
	if err := os.WriteFile(conn+"/abort", []byte("1"), 0); err != nil {
		m.log.Warn("fs: cannot abort FUSE connection", "path", conn+"/abort", "err", err)
		return false
	}
	return true
}

// removeStaleMount unmounts m.dir if a failed NewServer left a ferry mount
// there (mountDir checked that there was none before).
func (m *Mounted) removeStaleMount() {
	if e, ok, err := findMount(m.dir); err == nil && ok && e.fstype == "fuse."+fsName {
		if err := syscall.Unmount(m.dir, syscall.MNT_DETACH); err != nil {
			m.log.Error("fs: cannot remove failed mount", "mountpoint", m.dir, "err", err)
		}
	}
}

// warmURLs returns the URLs of the first files of the manifest that are
// not complete in the cache, for Fetcher.Warm (which keeps one per host): a
// mount whose files are all local touches no origin. A large manifest is
// not walked to the end for it.
func warmURLs(t *tree, m *manifest.Manifest) []string {
	var urls []string
	for i := range min(len(m.Files), 10000) {
		if r := t.registered(i); r != nil && r.store.Complete() {
			continue
		}
		urls = append(urls, m.Files[i].URL)
	}
	return urls
}
