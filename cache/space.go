package cache

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Capacity. The cache keeps the bytes of its blocks (Stats.LocalBytes)
// under a limit: Options.MaxSize, and the bytes that can be stored while
// leaving Options.MinFree free on the file system of the cache directory
// (statfs, at most every 100 ms or every 64 MiB written in between, with
// the bytes written and freed since counted in). WriteBlock reserves the
// room for its block first and evicts least recently used blocks until it
// fits (evict.go), so the bound holds at every moment, not on average.
//
// Background fill (Room) only ever fills free room: it is told no unless
// the room under the limit, less what earlier answers granted and a slack,
// holds the request. Eviction frees the slack beyond what a write needs and
// no more, so the room it makes is taken by reads, never by background
// fill: when the manifest is larger than the cache, background fill stops
// once the cache is full and does not churn. Room comes back when blocks
// are dropped from outside (evict, reset), when the limit grows (a restart
// with a larger MaxSize) or when disk space is freed; Options.OnRoom is
// then called.
//
// Disk full. A ballast file (DIR/ballast, 1/64 of the file system, 64 KiB
// to 64 MiB) keeps some space for the block map. When Pebble meets ENOSPC,
// the ballast is released at once and Pebble retries (vfs.OnDiskFull). When
// a block write meets ENOSPC, the cache is marked full: Room says no, least
// recently used blocks are evicted, and the write is tried once more; if
// it fails again, or nothing is left to evict, WriteBlock fails with an
// error wrapping ENOSPC (logged once a minute), which fails the reads that
// wait for that block only. Nothing stored is touched. Once statfs shows
// room for the ballast and a slack again, the ballast is remade, the full
// mark cleared and OnRoom called: background fill resumes by itself.

const (
	statEvery      = 100 * time.Millisecond // statfs at most this often...
	statEveryBytes = 64 << 20               // ...unless this much was written since
	tickEvery      = 100 * time.Millisecond // the space goroutine's period
	clockTicks     = 10                     // ticks between two advances of the access clock
	grantLife      = 10 * time.Second       // room granted to background fill expires
	maxSlack       = 4 << 20
	minBallast     = 64 << 10
	maxBallast     = 64 << 20
	minMemTable    = 256 << 10
	maxMemTable    = 16 << 20
	fullLogEvery   = time.Minute
)

// space is the capacity state of a Cache.
type space struct {
	c           *Cache
	maxSize     int64 // Options.MaxSize; 0: none
	minFree     int64 // Options.MinFree
	onRoom      func()
	ballastPath string

	// mu guards the fields below. Never held across I/O other than
	// statfs, and never while taking another lock of the cache.
	mu          sync.Mutex
	statOK      bool      // avail and total are known
	avail       int64     // free bytes (f_bavail), less writes and plus frees since statAt
	total       int64     // size of the file system
	statAt      time.Time // last statfs
	sinceStat   int64     // bytes written since statAt
	reserved    int64     // bytes reserved by writes in progress
	punching    int64     // bytes evicted whose holes are not punched yet
	granted     int64     // bytes Room granted and not yet written
	grantedAt   time.Time // last grant
	full        bool      // ENOSPC seen and space not back yet
	fullSince   time.Time
	ballastSize int64
	ballastOn   bool // the ballast file holds ballastSize bytes
	roomShown   bool // the last tick saw room for background fill
	// wantRoom is the smallest request Room refused since OnRoom was last
	// called: room for a byte is not room for it.
	wantRoom  int64
	overLogAt time.Time // last "over its limit" warning
	fullLogAt time.Time // last "disk full" error
	evicted   int64     // bytes evicted since Open

	kick chan struct{} // cap 1
	stop chan struct{}
	done chan struct{}
}

// initSpace reads the file system's size and makes the ballast. It runs
// before Pebble is opened, which sizes its memtable from s.total.
func (s *space) init(c *Cache, opts Options) error {
	if opts.MaxSize < 0 || opts.MinFree < 0 {
		return fmt.Errorf("cache: MaxSize %d, MinFree %d: must not be negative", opts.MaxSize, opts.MinFree)
	}
	s.c, s.maxSize, s.minFree, s.onRoom = c, opts.MaxSize, opts.MinFree, opts.OnRoom
	s.ballastPath = filepath.Join(c.dir, "ballast")
	s.kick = make(chan struct{}, 1)
	s.mu.Lock()
	s.statLocked(time.Now())
	s.ballastSize = min(max(s.total/64, minBallast), maxBallast)
	s.mu.Unlock()
	if err := makeBallast(s.ballastPath, s.ballastSize); err != nil {
		if !errors.Is(err, syscall.ENOSPC) {
			c.log.Warn("cache: no ballast file; a full disk may stop the block map", "err", err)
			s.ballastSize = 0
			return nil
		}
		c.log.Warn("cache: disk full at start; background fill waits for free space", "dir", c.dir)
		s.full, s.fullSince = true, time.Now()
		return nil
	}
	s.ballastOn = true
	return nil
}

// memTableSize is Pebble's memtable size for the cache's file system: a
// small file system gets a small write-ahead log.
func (s *space) memTableSize() uint64 {
	if !s.statOK {
		return maxMemTable
	}
	return uint64(min(max(s.total/64, minMemTable), maxMemTable))
}

// statLocked refreshes avail and total. s.mu is held.
func (s *space) statLocked(now time.Time) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.c.dir, &st); err != nil {
		s.c.log.Warn("cache: statfs failed", "dir", s.c.dir, "err", err)
		return
	}
	s.statOK = true
	s.avail = int64(st.Bavail) * st.Bsize
	s.total = int64(st.Blocks) * st.Bsize
	s.statAt, s.sinceStat = now, 0
}

// usedLocked is the disk space the cache's blocks take: the present ones,
// and evicted ones whose holes are not punched yet. s.mu is held.
func (s *space) usedLocked() int64 { return s.c.localBytes.Load() + s.punching }

// limitLocked is the most bytes of blocks the cache may hold now, given
// that it holds used. s.mu is held.
func (s *space) limitLocked(used int64) int64 {
	lim := int64(math.MaxInt64)
	if s.maxSize > 0 {
		lim = s.maxSize
	}
	if s.statOK {
		disk := used + s.avail - s.minFree
		if !s.ballastOn {
			disk -= s.ballastSize // leave room to remake it
		}
		lim = min(lim, disk)
	}
	return max(lim, 0)
}

// slack is what eviction frees beyond a write's need, and the room Room
// never grants: 1/16 of the limit, at most 4 MiB.
func slack(lim int64) int64 { return min(lim/16, maxSlack) }

// tryReserve reserves room for a block of n bytes and returns 0, or
// returns how many bytes to evict first.
func (s *space) tryReserve(n int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.statAt) >= statEvery || s.sinceStat >= statEveryBytes {
		s.statLocked(now)
	}
	used := s.usedLocked()
	lim := s.limitLocked(used)
	if over := used + s.reserved + n - lim; over > 0 {
		return over + slack(lim)
	}
	s.take(n)
	return 0
}

// take reserves n bytes whatever the limit. s.mu is held.
func (s *space) take(n int64) {
	s.reserved += n
	s.granted = max(0, s.granted-n)
}

// release ends a reservation of n bytes; wrote says they were written.
func (s *space) release(n int64, wrote bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved -= n
	if wrote {
		s.sinceStat += n
		s.avail -= n
	}
}

// evicting counts n bytes of evicted blocks whose holes are not punched
// yet: they still take disk space, so they still count against the limit.
func (s *space) evicting(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.punching += n
}

// punched ends evicting(n); freed of them were given back to the file
// system (the rest keep their space: the punch failed).
func (s *space) punched(n, freed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.punching -= n
	s.avail += freed
	s.evicted += n
}

// signal makes the space goroutine tick now.
func (s *space) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Room reports whether background fill may add n more bytes without
// evicting anything: never while the disk is full, and only into room
// under the limit beyond the slack and beyond what earlier answers granted
// (a grant lasts until written, or 10 s). It is what fetcher.Options.Room
// asks: quick, no I/O, and it never calls out of the cache.
func (c *Cache) Room(n int64) bool {
	s := &c.space
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	used := s.usedLocked()
	lim := s.limitLocked(used)
	if s.full || used+s.reserved+s.granted+max(n, 0)+slack(lim) > lim {
		if n > 0 && (s.wantRoom == 0 || n < s.wantRoom) {
			s.wantRoom = n
		}
		return false
	}
	s.granted += max(n, 0)
	s.grantedAt = time.Now()
	return true
}

// reserve makes room for a block of n bytes, evicting as needed. When
// nothing can be evicted (every block is pinned, held open, or not durable
// yet and the commit did not help), the write goes ahead over the limit and
// a warning is logged (once a minute): a read must not fail because of
// pins.
func (c *Cache) reserve(n int64) error {
	for try := 0; ; try++ {
		want := c.space.tryReserve(n)
		if want <= 0 {
			return nil
		}
		freed, err := c.evict(want)
		if err != nil {
			return err
		}
		if freed > 0 && try < 64 {
			continue
		}
		if try < 2 && c.cm.busy() {
			// Blocks written but not yet committed cannot be evicted
			// (they have no "l/" key yet): commit them, then retry.
			if err := c.cm.flush(); err != nil {
				c.log.Debug("cache: commit before eviction failed", "err", err)
			}
			continue
		}
		s := &c.space
		s.mu.Lock()
		s.take(n)
		warn := time.Since(s.overLogAt) >= fullLogEvery
		if warn {
			s.overLogAt = time.Now()
		}
		s.mu.Unlock()
		if warn {
			c.log.Warn("cache: over its size limit: nothing left to evict (pinned, open or uncommitted blocks)",
				"local", c.localBytes.Load(), "pinned", c.pinnedBytes())
		}
		return nil
	}
}

// onDiskFull handles ENOSPC from a block write of n bytes: background fill
// pauses (Room says no), and least recently used blocks are evicted. It
// returns nil when the write may be tried again.
func (c *Cache) onDiskFull(f *File, idx, n int64, werr error) error {
	s := &c.space
	s.mu.Lock()
	first := !s.full
	if first {
		s.full, s.fullSince = true, time.Now()
	}
	s.statLocked(time.Now())
	lim := s.limitLocked(s.usedLocked())
	s.mu.Unlock()
	if first {
		c.log.Warn("cache: disk full: background fill paused; evicting least recently used blocks", "dir", c.dir)
	}
	freed, err := c.evict(n + slack(lim))
	if err != nil {
		return err
	}
	if freed == 0 {
		return c.diskFullError(f, idx, werr)
	}
	return nil
}

// diskFullError is the error of a block write that found the disk full
// with nothing left to evict; it is logged once a minute.
func (c *Cache) diskFullError(f *File, idx int64, werr error) error {
	s := &c.space
	s.mu.Lock()
	log := time.Since(s.fullLogAt) >= fullLogEvery
	if log {
		s.fullLogAt = time.Now()
	}
	s.mu.Unlock()
	if log {
		c.log.Error("cache: disk full and nothing left to evict: reads of data that is not local fail until space is freed",
			"dir", c.dir, "path", f.path(), "err", werr)
	}
	return fmt.Errorf("cache: %s: block %d: disk full, nothing left to evict: %w", f.path(), idx, werr)
}

// pebbleDiskFull is Pebble's ENOSPC callback (vfs.OnDiskFull): it releases
// the ballast so that Pebble's retry finds space. Pebble blocks its writes
// meanwhile, so it must not call Pebble.
func (c *Cache) pebbleDiskFull() {
	s := &c.space
	s.mu.Lock()
	on := s.ballastOn
	s.ballastOn = false
	if !s.full {
		s.full, s.fullSince = true, time.Now()
	}
	s.mu.Unlock()
	if on {
		if err := os.Truncate(s.ballastPath, 0); err != nil {
			c.log.Error("cache: cannot release the ballast file", "err", err)
		}
	}
	c.log.Warn("cache: disk full while writing the block map; ballast released", "dir", c.dir)
	s.signal()
}

// makeBallast allocates size bytes to the file at path.
func makeBallast(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("cache: ballast: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Size == size && st.Blocks*512 >= size {
		return nil
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		f.Truncate(0) // give back what a partial allocation took
		return fmt.Errorf("cache: ballast: %w", err)
	}
	return nil
}
