// Package cache keeps the local copies of remote files: one sparse data file
// per remote file under DIR/data/, and a Pebble block map under DIR/map/
// recording which blocks are present. Not a stable API.
//
// Contracts:
//   - A block's bytes are written and fdatasynced before the Pebble batch that
//     marks it present commits (with pebble.Sync). The map never claims data
//     that is not on disk. A block is readable (Present reports true) as soon
//     as WriteBlock returns; it becomes durable a little later (group commit),
//     and Close makes every written block durable.
//   - Each file record pins the remote validator (size, ETag, Last-Modified)
//     that every stored block belongs to. Reset drops all blocks and the
//     validator in one batch and bumps the generation, so a write that was
//     started for the old version is refused with ErrStale.
//   - The bytes of blocks kept stay under Options.MaxSize and leave
//     Options.MinFree free on the disk: WriteBlock evicts least recently
//     used blocks of files that are not pinned before it writes (space.go,
//     evict.go). Background fill is told (Room) to fill free room only.
//   - ReadAt never returns the bytes of a block that is not present: it
//     fails with ErrNotLocal instead, and the caller fetches again.
//   - All methods of Cache and File are safe for concurrent use.
//
// # Directory layout
//
//	DIR/            mode 0700
//	DIR/lock        flock(LOCK_EX) held while a process has DIR open
//	DIR/map/        Pebble: the block map (keys below)
//	DIR/data/       one sparse file per remote file, named by its ID in hex:
//	                data/00000000000000a3; block i at offset i*BlockSize
//	DIR/ballast     space kept for the block map when the disk fills
//
// # Block map keys (keys.go, docs/on-disk-format.md)
//
//	"v"                       -> u64 schema version (2; 1 is migrated)
//	"n"                       -> u64 next file ID
//	"m/open"                  -> u64 Unix ns; present while a process has DIR open
//	"m/bytes"                 -> u64 sum of stored lengths of all "b/" keys
//	"m/clock"                 -> u64 access clock
//	"p/" path                 -> u64 file ID + file record (record.go)
//	"f/" id                   -> file record
//	"b/" id idx               -> block state
//	"l/" clock id idx         -> empty: eviction order (lru.go)
//	"o/" seq                  -> outbox record (outbox.go)
//
// Every u64 is 8 bytes big-endian. A block key and its value:
//
//	 0      2               10              18
//	+------+---------------+---------------+
//	| "b/" | file ID (BE)  | block idx (BE)|
//	+------+---------------+---------------+
//	 0       1            5            9                17            25
//	+-------+------------+------------+-----------------+-------------+
//	| codec | length (BE)| crc32c (BE)| generation (BE) | clock (BE)  |
//	+-------+------------+------------+-----------------+-------------+
//
// # Lifecycle of a block
//
// WriteBlock pwrites the bytes, sets the block's bit (readable now) and
// queues it for the committer, a goroutine owned by the Cache. Every few
// milliseconds the committer fdatasyncs each data file it has blocks for,
// then commits one synced Pebble batch with their "b/" keys. A queued block
// whose file was reset meanwhile (its generation changed) is dropped. After
// an unclean stop, Open finds "m/open" (UncleanStart) and the map holds
// exactly the blocks committed before the stop; Verify rereads a block and
// checks it against its CRC.
//
// # Capacity
//
// Eviction is per block, least recently used first, by a coarse access
// clock kept in Pebble (lru.go): a read costs a map insert, and once a
// second the blocks read are restamped in one unsynced batch, so the order
// and the byte count ("m/bytes") survive a restart and Open never scans.
// Pinned files (SetPinned, persisted; SetManifestPin, for this run) and
// files the FUSE layer hands to the kernel (HoldComplete) are never
// evicted; when they alone exceed the limit, PinsExceedLimit says so and
// writes go over the limit rather than fail reads. A full disk pauses
// background fill, evicts cold blocks, and only then fails writes
// (space.go). An evicted block is punched out of its data file, so du
// drops.
//
// Read versus evict: ReadAt read-locks File.mu from its presence check
// until the bytes are copied; eviction write-locks it from clearing the
// bits until the holes are punched. So a read that found a block copies
// it before it can be punched, and a read that comes later finds it absent
// (ErrNotLocal) and its caller fetches the block again. A block cannot be
// written again before its old copy is punched either: WriteBlock
// read-locks File.mu.
//
// Lock order: Cache.dbMu, Cache.evictMu, Cache.filesMu, File.mu (several
// only in eviction, by ascending ID), Cache.commitMu, fdCache.mu. The
// access clock's set of read blocks and the space state have leaf locks.
package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrStale is returned by WriteBlock and Pin when the generation they name is
// no longer current: the file was reset in between.
var ErrStale = errors.New("cache: stale generation")

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("cache: closed")

// maxBlockSize bounds BlockSize: a block's stored length is a uint32.
const maxBlockSize = 1 << 30

// Options configure Open.
type Options struct {
	// Logger receives Pebble's log and the cache's own; nil discards.
	Logger *slog.Logger

	// OnFatal is called when Pebble reports an error it cannot continue
	// from (its Logger.Fatalf: a failed WAL or MANIFEST write). The cache is
	// unusable afterwards. cmd should log msg and exit; if OnFatal is nil or
	// returns, the goroutine that hit the error ends (runtime.Goexit),
	// because Pebble requires that Fatalf not return.
	OnFatal func(msg string)

	// MaxOpenFiles bounds the data files kept open; 0 means 256.
	MaxOpenFiles int

	// CommitWindow is how long the committer collects blocks before it
	// syncs them; 0 means 2ms.
	CommitWindow time.Duration

	// MaxSize bounds the bytes of blocks kept (Stats.LocalBytes); 0 means
	// no bound but the disk's. Least recently used blocks are evicted to
	// stay under it (space.go).
	MaxSize int64

	// MinFree is the free space to leave on the cache directory's file
	// system: blocks are evicted rather than take it. 0 means none (the
	// cache still stops background fill before the disk is full).
	MinFree int64

	// OnRoom is called when room for background fill may have come back
	// (blocks dropped, disk space freed): fetcher.Fetcher.Wake. It runs on
	// the cache's space goroutine with no lock of the cache held, and must
	// not call the cache synchronously.
	OnRoom func()

	// mapFS, when set, holds the block map instead of the real disk (crash
	// tests use a crashable vfs.MemFS). Data files stay on the real disk.
	mapFS vfs.FS
}

// Remote identifies one version of a remote object.
type Remote struct {
	Size         int64
	ETag         string
	LastModified string
}

// Stats are cache-wide totals, maintained as blocks come and go.
type Stats struct {
	LocalBytes   int64 // bytes of present blocks, in every file (loaded or not)
	Files        int64 // file records
	Limit        int64 // most bytes of blocks the cache may hold now (MaxSize, MinFree, disk)
	PinnedBytes  int64 // size of the pinned files (loaded in this process)
	EvictedBytes int64 // bytes evicted since Open
	DiskFull     bool  // ENOSPC met and space not back yet: background fill paused
}

// Cache is an open cache directory. Must call Close.
type Cache struct {
	dir     string
	log     *slog.Logger
	db      *pebble.DB
	lock    *os.File
	unclean bool
	closed  atomic.Bool
	fds     fdCache
	cm      committer

	// dbMu is read-locked by every method that uses db outside the
	// committer; Close write-locks it to close db, so no call can reach a
	// closed Pebble.
	dbMu sync.RWMutex

	// filesMu guards files, nextID and fileCount.
	filesMu   sync.Mutex
	files     map[string]*File
	nextID    uint64
	fileCount atomic.Int64

	// commitMu serializes every batch that adds or removes "b/" keys or
	// changes a file's generation, so the committer's generation check and
	// its commit are one step. It guards durableBytes and File.durable.
	commitMu     sync.Mutex
	durableBytes int64 // value of "m/bytes"

	// evictMu makes evictions take turns; it guards evictCursor (the "l/"
	// key the next round starts at; nil: the first).
	evictMu     sync.Mutex
	evictCursor []byte
	// keepFiles are the pinned files, guarded by filesMu.
	keepFiles map[*File]struct{}

	lru   lruClock
	space space

	localBytes atomic.Int64 // Stats.LocalBytes: durable plus not yet committed
	fatal      atomic.Pointer[string]
}

// Open opens (creating if needed, mode 0700) the cache directory dir.
// Startup cost does not depend on the number of blocks stored.
func Open(dir string, opts Options) (*Cache, error) {
	c := &Cache{dir: dir, log: opts.Logger, files: make(map[string]*File), keepFiles: make(map[*File]struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.fds.max = opts.MaxOpenFiles
	if c.fds.max <= 0 {
		c.fds.max = 256
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	c.lock = lock
	if err := c.space.init(c, opts); err != nil {
		lock.Close()
		return nil, err
	}
	if err := c.openMap(opts); err != nil {
		lock.Close()
		return nil, err
	}
	window := opts.CommitWindow
	if window <= 0 {
		window = 2 * time.Millisecond
	}
	c.cm.start(c, window)
	c.space.start()
	// Check the blocks committed just before an unclean stop now rather
	// than at the first File call: a run that loads no file and closes
	// cleanly must not hide the unclean stop from the next one.
	c.dbMu.RLock()
	c.filesMu.Lock()
	err = c.recoverRecent()
	c.filesMu.Unlock()
	c.dbMu.RUnlock()
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// prepareDir creates dir and dir/data with mode 0700, tightening dir if it
// exists with a looser mode.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cache: %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// lockDir takes the exclusive flock on dir/lock; the lock lives as long as
// the returned file stays open.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cache: cache directory %s is in use by another ferry process", dir)
		}
		return nil, fmt.Errorf("cache: lock %s: %w", dir, err)
	}
	return f, nil
}

// openMap opens Pebble, checks or writes the schema version, loads the
// counters and sets the open marker (synced).
func (c *Cache) openMap(opts Options) error {
	po := &pebble.Options{
		Logger: pebbleLogger{c: c, onFatal: opts.OnFatal},
		// Pinned, not FormatNewest: upgrading Pebble must not silently
		// ratchet the on-disk format.
		FormatMajorVersion: pebble.FormatTableFormatV6,
		MemTableSize:       16 << 20, // a million-file mount writes ~100 MB of records
		// Measured with BenchmarkFileNew at 200k records: the default 8 MiB
		// block cache doubles the cost of a new record's lookup. Bloom
		// filters did not pay: on L0 they made new-path lookups 4x slower
		// (filter blocks reread), on L1+ they changed nothing measurable.
		CacheSize: 64 << 20,
		// On ENOSPC Pebble calls pebbleDiskFull, which releases the
		// ballast, and retries once (the shape of CockroachDB's ballast).
		FS: vfs.OnDiskFull(mapFS(opts), c.pebbleDiskFull),
	}
	if n := c.space.memTableSize(); n < po.MemTableSize {
		po.MemTableSize = n // a small file system gets a small WAL
	}
	db, err := pebble.Open(filepath.Join(c.dir, "map"), po)
	if err != nil {
		return fmt.Errorf("cache: open block map in %s: %w", c.dir, err)
	}
	c.db = db
	if err := c.loadMeta(); err != nil {
		db.Close()
		return err
	}
	b := db.NewBatch()
	b.Set(keyOpenMarker, u64(uint64(time.Now().UnixNano())), nil)
	b.Set(keyClock, u64(c.lru.clock.Load()), nil)
	err = b.Commit(pebble.Sync)
	b.Close()
	if err != nil {
		db.Close()
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// mapFS is the file system of the block map: the real disk, unless a test
// gave one.
func mapFS(opts Options) vfs.FS {
	if opts.mapFS != nil {
		return opts.mapFS
	}
	return vfs.Default
}

// loadMeta checks the schema version (writing it into an empty map) and
// reads the counters and the open marker.
func (c *Cache) loadMeta() error {
	v, ok, err := c.getU64(keySchemaVersion)
	if err != nil {
		return err
	}
	if !ok {
		empty, err := c.mapEmpty()
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("cache: block map in %s has no schema version: not a ferry cache", c.dir)
		}
		b := c.db.NewBatch()
		b.Set(keySchemaVersion, u64(schemaVersion), nil)
		b.Set(keyNextID, u64(1), nil)
		b.Set(keyLocalBytes, u64(0), nil)
		b.Set(keyClock, u64(0), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		v = schemaVersion
	}
	if v == 1 {
		if err := c.migrateV1(); err != nil {
			return err
		}
		v = schemaVersion
	}
	if v != schemaVersion {
		return fmt.Errorf("cache: block map in %s has schema version %d; this ferry reads version %d (was it written by a newer ferry?)",
			c.dir, v, schemaVersion)
	}
	if c.nextID, err = c.mustU64(keyNextID); err != nil {
		return err
	}
	c.fileCount.Store(int64(c.nextID - 1))
	bytes, err := c.mustU64(keyLocalBytes)
	if err != nil {
		return err
	}
	c.durableBytes = int64(bytes)
	c.localBytes.Store(int64(bytes))
	clock, err := c.mustU64(keyClock)
	if err != nil {
		return err
	}
	c.lru.clock.Store(clock + 1)
	_, c.unclean, err = c.getU64(keyOpenMarker)
	return err
}

func (c *Cache) mapEmpty() (bool, error) {
	it, err := c.db.NewIter(nil)
	if err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	return empty, nil
}

// getU64 reads an 8-byte value; ok is false when the key is absent.
func (c *Cache) getU64(key []byte) (x uint64, ok bool, err error) {
	v, closer, err := c.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("cache: read %q: %w", key, err)
	}
	x, err = decodeU64(string(key), v)
	closer.Close()
	return x, err == nil, err
}

func (c *Cache) mustU64(key []byte) (uint64, error) {
	x, ok, err := c.getU64(key)
	if err == nil && !ok {
		err = fmt.Errorf("cache: block map in %s lacks key %q", c.dir, key)
	}
	return x, err
}

// enter begins a method that uses db; the caller must call c.dbMu.RUnlock
// when it returns nil.
func (c *Cache) enter() error {
	c.dbMu.RLock()
	if c.closed.Load() {
		c.dbMu.RUnlock()
		return ErrClosed
	}
	if p := c.fatal.Load(); p != nil {
		c.dbMu.RUnlock()
		return fmt.Errorf("cache: block map failed: %s", *p)
	}
	return nil
}

// UncleanStart reports whether the previous process that had the cache
// directory open stopped without Close (crash, kill -9, power loss).
func (c *Cache) UncleanStart() bool { return c.unclean }

// Stats returns the cache-wide totals.
func (c *Cache) Stats() Stats {
	st := Stats{Files: c.fileCount.Load(), PinnedBytes: c.pinnedBytes()}
	s := &c.space
	s.mu.Lock()
	st.LocalBytes = c.localBytes.Load()
	st.Limit = s.limitLocked(s.usedLocked())
	st.EvictedBytes = s.evicted
	st.DiskFull = s.full
	s.mu.Unlock()
	return st
}

// Flush waits until every block written before the call is durable (or
// dropped because its file was reset). It returns the error of a commit
// round that failed while it waited; the blocks of that round are no longer
// present and will be fetched again.
func (c *Cache) Flush() error {
	if c.closed.Load() {
		return ErrClosed
	}
	return c.cm.flush()
}

// Close makes every written block durable, closes every data file and Pebble.
func (c *Cache) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	c.space.stopSpace()
	errs := []error{c.cm.stop()}
	c.dbMu.Lock()
	defer c.dbMu.Unlock()
	if errs[0] == nil && c.fatal.Load() == nil {
		// A clean stop: every written block is durable.
		if err := c.db.Delete(keyOpenMarker, pebble.Sync); err != nil {
			errs = append(errs, fmt.Errorf("cache: %w", err))
		}
	}
	if err := c.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cache: close block map: %w", err))
	}
	errs = append(errs, c.fds.close())
	if err := c.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cache: %w", err))
	}
	return errors.Join(errs...)
}

// pebbleLogger sends Pebble's log to the cache's logger.
type pebbleLogger struct {
	c       *Cache
	onFatal func(msg string)
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.c.log.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.c.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf marks the cache failed, tells OnFatal and, as Pebble requires,
// does not return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.c.log.Error(msg, "component", "pebble", "fatal", true)
	l.c.fatal.CompareAndSwap(nil, &msg)
	if l.onFatal != nil {
		l.onFatal(msg)
	}
	runtime.Goexit()
}
