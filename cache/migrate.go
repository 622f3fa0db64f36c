package cache

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// blockValueLenV1 is the length of a schema 1 "b/" value: no clock.
const blockValueLenV1 = 17

// migrateBatch is how many keys one migration batch writes.
const migrateBatch = 10000

// migrateV1 upgrades a schema 1 map to schema 2: every "p/" value gets the
// record after the ID, every "b/" value gets an access clock (0, the
// oldest) and an "l/" key, and "m/clock" is written. Each batch is correct
// by itself (migration reads values of either layout) and the last one
// writes "v" = 2 with pebble.Sync, so a crash in between migrates again at
// the next Open. The one Open that migrates reads every key once.
func (c *Cache) migrateV1() error {
	start := time.Now()
	m := migration{c: c}
	if err := m.paths(); err != nil {
		return err
	}
	if err := m.blocks(); err != nil {
		return err
	}
	m.b.Set(keyClock, u64(0), nil)
	m.b.Set(keySchemaVersion, u64(schemaVersion), nil)
	if err := m.commit(pebble.Sync); err != nil {
		return err
	}
	c.log.Info("cache: block map migrated from schema 1 to 2", "dir", c.dir, "files", m.files,
		"blocks", m.nblocks, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// migration is the state of migrateV1.
type migration struct {
	c       *Cache
	b       *pebble.Batch
	n       int
	files   int
	nblocks int
}

func (m *migration) set(k, v []byte) error {
	if m.b == nil {
		m.b = m.c.db.NewBatch()
	}
	m.b.Set(k, v, nil)
	m.n++
	if m.n >= migrateBatch {
		return m.commit(pebble.NoSync)
	}
	return nil
}

func (m *migration) commit(opts *pebble.WriteOptions) error {
	if m.b == nil {
		m.b = m.c.db.NewBatch()
	}
	err := m.b.Commit(opts)
	m.b.Close()
	m.b, m.n = nil, 0
	if err != nil {
		return fmt.Errorf("cache: migrate the block map: %w", err)
	}
	return nil
}

// paths rewrites each schema 1 "p/" value (the ID) as ID + record.
func (m *migration) paths() error {
	it, err := m.c.db.NewIter(&pebble.IterOptions{LowerBound: prefixPath, UpperBound: []byte("p0")})
	if err != nil {
		return fmt.Errorf("cache: migrate: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("cache: migrate: %w", err)
		}
		if len(v) != 8 {
			continue // migrated already
		}
		path := string(it.Key()[len(prefixPath):])
		id := binary.BigEndian.Uint64(v)
		rec, ok, err := m.c.readRecord(id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("cache: migrate: path %q names file %d, which has no record", path, id)
		}
		if rec.Path != path {
			return fmt.Errorf("cache: migrate: path %q names record %d of path %q", path, id, rec.Path)
		}
		enc := encodeRecord(&rec)
		pv := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(enc)), id)
		if err := m.set(pathKey(path), append(pv, enc...)); err != nil {
			return err
		}
		m.files++
	}
	return nil
}

// blocks gives each schema 1 "b/" value a clock of 0 and an "l/" key.
func (m *migration) blocks() error {
	it, err := m.c.db.NewIter(&pebble.IterOptions{LowerBound: prefixBlock, UpperBound: []byte("b0")})
	if err != nil {
		return fmt.Errorf("cache: migrate: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("cache: migrate: %w", err)
		}
		if len(v) != blockValueLenV1 {
			continue
		}
		k := it.Key()
		if len(k) != len(prefixBlock)+16 {
			return fmt.Errorf("cache: migrate: malformed block key %x", k)
		}
		id := binary.BigEndian.Uint64(k[2:])
		idx := int64(binary.BigEndian.Uint64(k[10:]))
		nv := append(append([]byte(nil), v...), make([]byte, 8)...)
		if _, err := decodeBlockState(nv); err != nil {
			return fmt.Errorf("cache: migrate: %w (file %d block %d)", err, id, idx)
		}
		if err := m.set(append([]byte(nil), k...), nv); err != nil {
			return err
		}
		if err := m.set(lruKey(0, id, idx), nil); err != nil {
			return err
		}
		m.nblocks++
	}
	return nil
}
