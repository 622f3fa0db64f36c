package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// Lazy verification after an unclean stop.
//
// A block's "b/" key is committed only after its bytes were fdatasynced, so
// on a disk that honours fdatasync every block the map names is whole. A
// disk that acknowledges a flush it has not done (a volatile write cache
// without power-loss protection, some virtual disks) can lose the last
// writes while keeping the map's: the blocks at risk are the ones committed
// last. The committer therefore records, in the same synced batch as the
// "b/" keys, which blocks each round committed ("r/" keys: a ring of the
// last rounds, trimmed to about recentMaxBytes). After an unclean stop
// (UncleanStart) the blocks of the ring, and only those, are reread and
// checked against their CRC-32C before any file is loaded: a block that
// does not match is dropped, so it is fetched again. Startup reads the ring
// (a few keys) and those blocks, never the whole map or the data directory.
// The ring of a clean stop is trusted.
//
// The check runs at the first Cache.File call of the process (before any
// block can be read), with filesMu held, so no file is loaded and eviction
// waits meanwhile.

// recentMaxBytes is about how many bytes of the most recently committed
// blocks the ring names: rounds are trimmed, oldest first, while the newer
// ones still name this many. The newest round is always kept, however big.
const recentMaxBytes = 64 << 20

// recentEntryLen is the size of one block in an "r/" value: file ID (u64
// BE), block index (u64 BE), stored length (u32 BE).
const recentEntryLen = 20

// recentRound is one "r/" key: a commit round.
type recentRound struct {
	seq   uint64
	bytes int64
}

// recentRing is the committer's record of its last rounds (the "r/" keys).
// All fields are guarded by Cache.commitMu.
type recentRing struct {
	loaded  bool          // rounds and next hold the map's "r/" keys
	rounds  []recentRound // oldest first
	total   int64         // bytes of rounds
	next    uint64        // sequence of the next round
	checked bool          // the check after an unclean stop is done (or not needed)
	stats   Recovery
	limit   int64 // trim bound; 0: recentMaxBytes (tests set less)
}

// Recovery is what the check after an unclean stop found.
type Recovery struct {
	Checked      int   // recently committed blocks reread
	CheckedBytes int64 // their bytes
	Dropped      int   // blocks that did not match their CRC-32C (or could not be read): dropped
}

// Recovery returns what the check of recently committed blocks after an
// unclean stop found (zero after a clean stop). The check runs at the first
// File call.
func (c *Cache) Recovery() Recovery {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	return c.cm.ring.stats
}

// recentKey returns "r/" + sequence (uint64 BE).
func recentKey(seq uint64) []byte {
	k := make([]byte, len(prefixRecent)+8)
	copy(k, prefixRecent)
	binary.BigEndian.PutUint64(k[len(prefixRecent):], seq)
	return k
}

// recentSpan returns the bounds [lo, hi) of every "r/" key: "r/" and "r0".
func recentSpan() (lo, hi []byte) {
	return prefixRecent, []byte("r0")
}

// suspect is a block named by the ring.
type suspect struct {
	id  uint64
	idx int64
}

// loadRing reads the "r/" keys (at most a few dozen) into r, and returns
// the blocks they name. c.commitMu is held.
func (c *Cache) loadRing() ([]suspect, error) {
	r := &c.cm.ring
	lo, hi := recentSpan()
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("cache: read recent commits: %w", err)
	}
	var out []suspect
	r.rounds, r.total, r.next = nil, 0, 1
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefixRecent)+8 {
			it.Close()
			return nil, fmt.Errorf("cache: malformed recent-commit key %x", k)
		}
		seq := binary.BigEndian.Uint64(k[len(prefixRecent):])
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("cache: read recent commits: %w", err)
		}
		if len(v)%recentEntryLen != 0 {
			it.Close()
			return nil, fmt.Errorf("cache: recent-commit value %d has %d bytes, not a multiple of %d", seq, len(v), recentEntryLen)
		}
		var bytes int64
		for e := v; len(e) > 0; e = e[recentEntryLen:] {
			out = append(out, suspect{id: binary.BigEndian.Uint64(e), idx: int64(binary.BigEndian.Uint64(e[8:]))})
			bytes += int64(binary.BigEndian.Uint32(e[16:]))
		}
		r.rounds = append(r.rounds, recentRound{seq: seq, bytes: bytes})
		r.total += bytes
		r.next = seq + 1
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("cache: read recent commits: %w", err)
	}
	r.loaded = true
	return out, nil
}

// noteRecent adds to b, the batch that commits the "b/" keys of kept, the
// "r/" key of this round, and the deletion of the rounds that fall out of
// the ring. c.commitMu is held.
func (c *Cache) noteRecent(b *pebble.Batch, kept []pending) error {
	r := &c.cm.ring
	if !r.loaded {
		if _, err := c.loadRing(); err != nil {
			return err
		}
	}
	v := make([]byte, 0, len(kept)*recentEntryLen)
	var bytes int64
	for _, p := range kept {
		v = binary.BigEndian.AppendUint64(v, p.f.id)
		v = binary.BigEndian.AppendUint64(v, uint64(p.idx))
		v = binary.BigEndian.AppendUint32(v, p.st.length)
		bytes += int64(p.st.length)
	}
	b.Set(recentKey(r.next), v, nil)
	r.rounds = append(r.rounds, recentRound{seq: r.next, bytes: bytes})
	r.total += bytes
	r.next++
	// If the batch fails, the ring in memory names a round the map lacks
	// (harmless) or the map keeps a trimmed round (checked once more after
	// an unclean stop).
	limit := r.limit
	if limit == 0 {
		limit = recentMaxBytes
	}
	for len(r.rounds) > 1 && r.total-r.rounds[0].bytes >= limit {
		b.Delete(recentKey(r.rounds[0].seq), nil)
		r.total -= r.rounds[0].bytes
		r.rounds = r.rounds[1:]
	}
	return nil
}

// recoverRecent checks the blocks of the ring once per process, at the
// first File call, if the previous run stopped uncleanly. c.dbMu (read) and
// c.filesMu are held; no file is loaded yet.
func (c *Cache) recoverRecent() error {
	c.commitMu.Lock()
	r := &c.cm.ring
	if r.checked {
		c.commitMu.Unlock()
		return nil
	}
	suspects, err := c.loadRing()
	if err != nil || !c.unclean {
		r.checked = err == nil
		c.commitMu.Unlock()
		return err
	}
	rounds := slices.Clone(r.rounds)
	c.commitMu.Unlock()

	bad, stats, err := c.checkSuspects(suspects)
	if err != nil {
		return err
	}
	return c.dropSuspects(bad, rounds, stats)
}

// badBlock is a suspect that failed its check.
type badBlock struct {
	suspect
	st blockState
}

// checkSuspects rereads each suspect that the map still names and returns
// the ones whose bytes do not match their CRC. Errors are map errors only:
// a data file that cannot be read makes its blocks bad.
func (c *Cache) checkSuspects(suspects []suspect) ([]badBlock, Recovery, error) {
	slices.SortFunc(suspects, func(a, b suspect) int {
		if a.id != b.id {
			return cmpU64(a.id, b.id)
		}
		return cmpU64(uint64(a.idx), uint64(b.idx))
	})
	suspects = slices.Compact(suspects)
	var bad []badBlock
	var stats Recovery
	var fd *os.File
	var fdID uint64
	var rec Record
	var recOK bool
	defer func() {
		if fd != nil {
			fd.Close()
		}
	}()
	for _, s := range suspects {
		if fd == nil || fdID != s.id {
			if fd != nil {
				fd.Close()
				fd = nil
			}
			var err error
			if rec, recOK, err = c.readRecord(s.id); err != nil {
				return nil, stats, err
			}
			fdID = s.id
			fd, _ = os.Open(dataPath(c.dir, s.id)) // nil: every block of it is bad
		}
		st, ok, err := c.blockAt(s.id, s.idx)
		if err != nil {
			return nil, stats, err
		}
		if !ok || !recOK || st.gen != rec.Generation {
			continue // gone, or stale and dropped when its file loads
		}
		stats.Checked++
		stats.CheckedBytes += int64(st.length)
		if blockMatches(fd, s.idx*rec.BlockSize, st) {
			continue
		}
		stats.Dropped++
		bad = append(bad, badBlock{suspect: s, st: st})
		c.log.Warn("cache: block committed just before an unclean stop does not match its checksum; dropped",
			"path", rec.Path, "block", s.idx)
	}
	return bad, stats, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// blockMatches rereads the block at off (state st) from fd and checks its
// CRC-32C. A nil fd, a read error or a short read is a mismatch.
func blockMatches(fd *os.File, off int64, st blockState) bool {
	if fd == nil {
		return false
	}
	buf := make([]byte, st.length)
	n, err := fd.ReadAt(buf, off)
	if n != len(buf) || err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	return crc32.Checksum(buf, castagnoli) == st.crc
}

// dropSuspects deletes the bad blocks (their "b/" and "l/" keys, if the map
// still holds the same state) and the checked rounds, in one synced batch,
// and punches the bad blocks' holes.
func (c *Cache) dropSuspects(bad []badBlock, rounds []recentRound, stats Recovery) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	b := c.db.NewBatch()
	defer b.Close()
	var dropped int64
	var gone []badBlock
	for _, x := range bad {
		st, ok, err := c.blockAt(x.id, x.idx)
		if err != nil {
			return err
		}
		if !ok || st != x.st {
			continue // changed meanwhile: not the block that was checked
		}
		b.Delete(blockKey(x.id, x.idx), nil)
		b.Delete(lruKey(st.clock, x.id, x.idx), nil)
		dropped += int64(st.length)
		gone = append(gone, x)
	}
	for _, rd := range rounds {
		b.Delete(recentKey(rd.seq), nil)
	}
	b.Set(keyLocalBytes, u64(uint64(c.durableBytes-dropped)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cache: drop blocks that failed their check after an unclean stop: %w", err)
	}
	c.durableBytes -= dropped
	c.localBytes.Add(-dropped)
	r := &c.cm.ring
	r.rounds = slices.DeleteFunc(r.rounds, func(x recentRound) bool {
		return slices.ContainsFunc(rounds, func(y recentRound) bool { return x.seq == y.seq })
	})
	r.total = 0
	for _, x := range r.rounds {
		r.total += x.bytes
	}
	r.checked = true
	r.stats = stats
	c.log.Info("cache: checked the blocks committed just before an unclean stop",
		"blocks", stats.Checked, "bytes", stats.CheckedBytes, "dropped", stats.Dropped)
	c.punchBad(gone)
	return nil
}

// punchBad frees the disk space of dropped blocks (best effort: the space
// of a block no key names is also freed when the block is written again or
// its file is reset).
func (c *Cache) punchBad(bad []badBlock) {
	for _, x := range bad {
		rec, ok, err := c.readRecord(x.id)
		if err != nil || !ok {
			continue
		}
		fd, err := os.OpenFile(dataPath(c.dir, x.id), os.O_RDWR, 0)
		if err != nil {
			continue
		}
		err = unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
			x.idx*rec.BlockSize, int64(x.st.length))
		fd.Close()
		if err != nil {
			c.log.Debug("cache: punching a dropped block", "id", x.id, "block", x.idx, "err", err)
		}
	}
}
