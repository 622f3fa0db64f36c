package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pending is a block that is written and present but not yet in the map.
type pending struct {
	f   *File
	idx int64
	st  blockState
}

// roundMax is the number of queued blocks that ends a commit window early.
const roundMax = 256

// committer is the group-commit goroutine of a Cache. It takes the queued
// blocks every window, fdatasyncs their data files, and commits their "b/"
// keys in one synced batch. Started by Open, stopped by Close (stop).
type committer struct {
	c      *Cache
	window time.Duration
	kick   chan struct{} // cap 1: there is work, or urgent changed
	exited chan struct{} // closed when run returns

	// mu guards the fields below; cond (on mu) is broadcast when done,
	// failures or gone change.
	mu       sync.Mutex
	cond     sync.Cond
	queue    []pending
	enq      uint64 // blocks ever queued
	done     uint64 // blocks ever taken and handled (committed or dropped)
	urgent   bool   // a Flush waits or the queue is full: skip the window
	stopping bool   // no more enqueues
	gone     bool   // run has returned
	failures uint64 // rounds that failed
	lastErr  error  // error of the last failed round

	ring recentRing // the last rounds, for the check after an unclean stop (recover.go); guarded by Cache.commitMu
}

func (m *committer) start(c *Cache, window time.Duration) {
	m.c = c
	m.window = window
	m.kick = make(chan struct{}, 1)
	m.exited = make(chan struct{})
	m.cond.L = &m.mu
	go m.run()
}

func (m *committer) signal() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// enqueue hands a written block to the committer. ErrClosed once the cache
// is closing.
func (m *committer) enqueue(p pending) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return ErrClosed
	}
	m.queue = append(m.queue, p)
	m.enq++
	if len(m.queue) >= roundMax {
		m.urgent = true
	}
	if len(m.queue) == 1 || m.urgent {
		m.signal()
	}
	return nil
}

// run is the committer goroutine. Invariant: while the queue is not empty,
// a kick is pending or run is about to take the queue.
func (m *committer) run() {
	defer func() {
		// Also reached through runtime.Goexit from a fatal Pebble error.
		m.mu.Lock()
		m.stopping, m.gone = true, true
		m.cond.Broadcast()
		m.mu.Unlock()
		close(m.exited)
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		<-m.kick
		m.mu.Lock()
		wait := !m.urgent && !m.stopping
		m.mu.Unlock()
		if wait {
			timer.Reset(m.window)
		window:
			for {
				select {
				case <-timer.C:
					break window
				case <-m.kick:
					// A Flush, a full queue or stop ends the window
					// early; a kick left over from an enqueue that
					// raced with the last round does not.
					m.mu.Lock()
					urgent := m.urgent || m.stopping
					m.mu.Unlock()
					if urgent {
						timer.Stop()
						break window
					}
				}
			}
		}
		m.mu.Lock()
		round := m.queue
		m.queue = nil
		m.urgent = false
		m.mu.Unlock()

		var err error
		if len(round) > 0 {
			err = m.c.commitRound(round)
		}

		m.mu.Lock()
		m.done += uint64(len(round))
		if err != nil {
			m.failures++
			m.lastErr = err
		}
		m.cond.Broadcast()
		exit := m.stopping && len(m.queue) == 0
		m.mu.Unlock()
		if exit {
			return
		}
	}
}

// busy reports whether blocks are queued or being committed.
func (m *committer) busy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.done < m.enq
}

// flush waits until every block queued before the call is handled.
func (m *committer) flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	target, failures := m.enq, m.failures
	if m.done < target {
		m.urgent = true
		m.signal()
	}
	for m.done < target && !m.gone {
		m.cond.Wait()
	}
	switch {
	case m.done < target:
		return fmt.Errorf("cache: committer stopped with %d blocks not durable", target-m.done)
	case m.failures != failures:
		return m.lastErr
	}
	return nil
}

// stop refuses further blocks, commits the queued ones and waits for run to
// return. It returns the error of a round that failed meanwhile.
func (m *committer) stop() error {
	m.mu.Lock()
	m.stopping = true
	failures := m.failures
	m.signal()
	m.mu.Unlock()
	<-m.exited
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case len(m.queue) > 0:
		return fmt.Errorf("cache: committer stopped with %d blocks not durable", len(m.queue))
	case m.failures != failures:
		return m.lastErr
	}
	return nil
}

// commitRound makes one round of written blocks durable: it fdatasyncs
// their data files (and the data directory, for files new to this
// process), drops the blocks of files whose sync failed, then commits the
// "b/" keys of the rest, except those whose file was reset since they were
// written, in one synced batch.
func (c *Cache) commitRound(round []pending) error {
	failed := make(map[*File]bool)
	var errs []error
	var newFiles []*File
	for _, p := range round {
		f := p.f
		if _, seen := failed[f]; seen {
			continue
		}
		err := c.syncData(f)
		failed[f] = err != nil
		if err != nil {
			errs = append(errs, err)
		} else if !f.dirSynced {
			newFiles = append(newFiles, f)
		}
	}
	if len(newFiles) > 0 {
		if err := syncDir(filepath.Join(c.dir, "data")); err != nil {
			errs = append(errs, err)
			for _, f := range newFiles {
				failed[f] = true
			}
		} else {
			for _, f := range newFiles {
				f.dirSynced = true
			}
		}
	}
	for _, p := range round {
		if failed[p.f] {
			p.f.dropUnsynced(p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.log.Error("cache: sync of written blocks failed; they will be fetched again", "err", err)
	}
	if err := c.commitKeys(round, failed); err != nil {
		// The blocks stay readable in this process but are not durable:
		// after a restart they are fetched again.
		c.log.Error("cache: commit of written blocks failed", "err", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// commitKeys commits the "b/" keys of the round's blocks that are neither
// in failed nor of an old generation, with the current access clock, and
// their "l/" keys (unless their file is pinned).
func (c *Cache) commitKeys(round []pending, failed map[*File]bool) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	b := c.db.NewBatch()
	defer b.Close()
	var added int64
	kept := round[:0:0]
	clock := c.lru.clock.Load()
	for _, p := range round {
		if failed[p.f] || p.f.gen.Load() != p.st.gen {
			continue
		}
		st := p.st
		st.clock = clock
		b.Set(blockKey(p.f.id, p.idx), st.encode(), nil)
		if !p.f.keep.Load() {
			b.Set(lruKey(clock, p.f.id, p.idx), nil, nil)
		}
		added += int64(p.st.length)
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		return nil
	}
	if err := c.noteRecent(b, kept); err != nil {
		return err
	}
	b.Set(keyLocalBytes, u64(uint64(c.durableBytes+added)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cache: commit %d blocks: %w", len(kept), err)
	}
	c.durableBytes += added
	c.lru.used.Store(true)
	for _, p := range kept {
		p.f.durable += int64(p.st.length)
	}
	return nil
}

// syncData fdatasyncs f's data file if anything was written through it
// since its last sync.
func (c *Cache) syncData(f *File) error {
	fd, seen, err := c.fds.acquireDirty(f)
	if err != nil || fd == nil {
		return err
	}
	defer c.fds.releaseSynced(f, seen)
	return fdatasync(fd)
}

func fdatasync(fd *os.File) error {
	rc, err := fd.SyscallConn()
	if err != nil {
		return fmt.Errorf("cache: fdatasync %s: %w", fd.Name(), err)
	}
	var serr error
	if err := rc.Control(func(d uintptr) {
		for {
			serr = syscall.Fdatasync(int(d))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("cache: fdatasync %s: %w", fd.Name(), err)
	}
	if serr != nil {
		return fmt.Errorf("cache: fdatasync %s: %w", fd.Name(), serr)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cache: sync %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("cache: sync %s: %w", dir, err)
	}
	return nil
}
