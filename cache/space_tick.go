package cache

import (
	"errors"
	"time"
)

// start starts the space goroutine; stopSpace stops it. Owned by the Cache:
// Open starts it, Close stops it before the committer.
func (s *space) start() {
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go s.run()
}

func (s *space) stopSpace() {
	close(s.stop)
	<-s.done
}

// run is the space goroutine: every 100 ms (or when kicked) it refreshes
// the disk's free space, notices a disk that has room again, evicts when
// the cache is over its limit for reasons of its own (another program
// filled the disk, a restart with a smaller MaxSize), advances the access
// clock every second, and calls OnRoom when room for background fill
// appears.
func (s *space) run() {
	defer close(s.done)
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		s.c.tick(n%clockTicks == 0)
	}
}

// tick is one round of the space goroutine.
func (c *Cache) tick(clockDue bool) {
	if c.closed.Load() {
		return
	}
	s := &c.space
	now := time.Now()
	s.mu.Lock()
	if s.full || s.sinceStat != 0 || now.Sub(s.statAt) >= time.Second {
		s.statLocked(now)
	}
	if s.granted > 0 && now.Sub(s.grantedAt) > grantLife {
		s.granted = 0
	}
	used := s.usedLocked()
	lim := s.limitLocked(used)
	sl := slack(lim)
	over := used + s.reserved - lim
	remake := !s.ballastOn && s.ballastSize > 0 && s.avail >= s.ballastSize+s.minFree+sl
	s.mu.Unlock()

	if remake {
		c.remakeBallast()
	}
	c.recoverFromFull()
	if over > 0 {
		if _, err := c.evict(over + sl); err != nil && !errors.Is(err, ErrClosed) {
			c.log.Error("cache: eviction failed", "err", err)
		}
	}
	if clockDue || c.lru.size() >= maxTouched {
		c.tickClock()
	}
	c.notifyRoom()
}

// tickClock advances the access clock if blocks came or went since.
func (c *Cache) tickClock() {
	if c.enter() != nil {
		return
	}
	defer c.dbMu.RUnlock()
	if err := c.advanceClock(false); err != nil {
		c.log.Error("cache: access clock", "err", err)
	}
}

// remakeBallast allocates the ballast file again after it was released.
func (c *Cache) remakeBallast() {
	s := &c.space
	if err := makeBallast(s.ballastPath, s.ballastSize); err != nil {
		c.log.Debug("cache: ballast not remade yet", "err", err)
		return
	}
	s.mu.Lock()
	s.ballastOn = true
	s.avail -= s.ballastSize
	s.mu.Unlock()
}

// recoverFromFull clears the full mark once the ballast is back and the
// disk has room beyond MinFree: four slacks, more than eviction ever frees
// beyond a write's need, so the room the cache's own evictions made does
// not count as space that came back.
func (c *Cache) recoverFromFull() {
	s := &c.space
	s.mu.Lock()
	lim := s.limitLocked(s.usedLocked())
	back := s.full && (s.ballastOn || s.ballastSize == 0) && s.avail >= s.minFree+4*max(slack(lim), 64<<10)
	var since time.Duration
	if back {
		s.full = false
		since = time.Since(s.fullSince)
	}
	s.mu.Unlock()
	if back {
		c.log.Info("cache: disk space is back; background fill resumes", "dir", c.dir,
			"full_for", since.Round(time.Millisecond))
	}
}

// notifyRoom calls OnRoom when room for background fill appeared since the
// last tick.
func (c *Cache) notifyRoom() {
	s := &c.space
	s.mu.Lock()
	used := s.usedLocked()
	lim := s.limitLocked(used)
	// Room for what background fill last asked for, when it was refused;
	// else room at all.
	room := !s.full && used+s.reserved+s.granted+s.wantRoom+slack(lim) < lim
	notify := room && (!s.roomShown || s.wantRoom > 0)
	s.roomShown = room
	if notify {
		s.wantRoom = 0
	}
	s.mu.Unlock()
	if notify && s.onRoom != nil {
		s.onRoom()
	}
}

// size is the number of blocks read since the clock last advanced.
func (l *lruClock) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.touched)
}
