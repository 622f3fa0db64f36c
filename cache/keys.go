package cache

import (
	"encoding/binary"
	"fmt"
)

// The block map's key schema. Every key family the cache writes is declared
// in the block below; docs/on-disk-format.md mirrors it.
//
// The prefixes are part of the on-disk format: never renumber, never reuse.
// A family that is no longer written keeps its prefix reserved forever. Each
// multi-key family ends its prefix with '/', so no family's keys can be a
// prefix of another family's (go-ethereum's shared single-letter "b" needed a
// workaround; we do not). Integers in keys are fixed-width big-endian, so a
// file's blocks sort contiguously by index and a bounded iterator reads them.
var (
	// keySchemaVersion: "v" -> uint64 BE schema version (schemaVersion).
	keySchemaVersion = []byte("v")

	// keyNextID: "n" -> uint64 BE, the next file ID to hand out. Written in
	// the same batch as every new file record, so an ID is never reused.
	// Records are never deleted, so n-1 is also the number of records.
	keyNextID = []byte("n")

	// prefixMeta: "m/" + name -> value; see the meta keys below.
	prefixMeta = []byte("m/")

	// prefixPath: "p/" + path (UTF-8, as in the manifest) -> file ID
	// (uint64 BE) followed by the file record (record.go encoding), the same
	// bytes as the "f/" value, so opening a path costs one read. (Schema 1:
	// the ID alone.)
	prefixPath = []byte("p/")

	// prefixFile: "f/" + ID (uint64 BE) -> file record (record.go encoding).
	// Written in the same batch as the copy in the "p/" value.
	prefixFile = []byte("f/")

	// prefixBlock: "b/" + ID (uint64 BE) + block index (uint64 BE) -> block
	// state, blockValueLen bytes: codec (1 byte, codecRaw), stored length
	// (uint32 BE), CRC-32C of the stored bytes (uint32 BE), generation
	// (uint64 BE), access clock (uint64 BE; schema 2).
	prefixBlock = []byte("b/")

	// prefixOutbox: "o/" + sequence (uint64 BE) -> outbox record
	// (outbox.go encoding): one per committed file of the outbox, whose
	// staged data is DIR/outbox/ + sequence as 16 hex digits.
	prefixOutbox = []byte("o/")

	// prefixLRU: "l/" + access clock (uint64 BE) + ID (uint64 BE) + block
	// index (uint64 BE) -> empty. The eviction order: one key per durable
	// block of a file that is not pinned, with the clock of its "b/" value,
	// so the first key is the least recently used block. Written in the
	// same batch as the "b/" value it mirrors; a key whose block is gone or
	// has another clock is stale and deleted when eviction meets it.
	prefixLRU = []byte("l/")

	// prefixRecent: "r/" + round sequence (uint64 BE) -> the blocks one
	// group commit made durable, 20 bytes each: ID (uint64 BE), block index
	// (uint64 BE), stored length (uint32 BE). Written in the round's own
	// batch; a ring of the last rounds, checked after an unclean stop
	// (recover.go).
	prefixRecent = []byte("r/")
)

// families lists every key family (the single keys too), for the test that
// checks no family's keys can collide with another's.
var families = [][]byte{keySchemaVersion, keyNextID, prefixMeta, prefixPath, prefixFile,
	prefixBlock, prefixOutbox, prefixLRU, prefixRecent}

// Meta keys, "m/" + name. Part of the on-disk format like the prefixes.
var (
	// keyOpenMarker: "m/open" -> uint64 BE Unix time (ns) of the Open that
	// wrote it. Set (synced) by Open, deleted (synced) by a clean Close, so
	// finding it at Open means the previous run stopped uncleanly.
	keyOpenMarker = metaKey("open")

	// keyLocalBytes: "m/bytes" -> uint64 BE sum of the stored lengths of
	// every "b/" key. Updated in the same batch as the "b/" keys it counts.
	keyLocalBytes = metaKey("bytes")

	// keyClock: "m/clock" -> uint64 BE, the access clock of this run: set
	// by Open (one more than the stored value) and by every advance of the
	// clock, in the batch that first uses the new value. (Schema 2.)
	keyClock = metaKey("clock")
)

// schemaVersion is the version of this key schema. Open refuses a map whose
// "v" is different (a newer ferry wrote it) and writes it into a new map.
// Open migrates a map of version 1 (migrate.go).
const schemaVersion = 2

// Block value layout.
const (
	codecRaw      = 0  // the stored bytes are the block's bytes
	blockValueLen = 25 // codec 1 + length 4 + crc 4 + generation 8 + clock 8
)

// metaKey returns "m/" + name.
func metaKey(name string) []byte {
	return append(append([]byte(nil), prefixMeta...), name...)
}

// pathKey returns "p/" + path.
func pathKey(path string) []byte {
	k := make([]byte, 0, len(prefixPath)+len(path))
	return append(append(k, prefixPath...), path...)
}

// fileKey returns "f/" + ID (uint64 BE).
func fileKey(id uint64) []byte {
	k := make([]byte, len(prefixFile)+8)
	copy(k, prefixFile)
	binary.BigEndian.PutUint64(k[len(prefixFile):], id)
	return k
}

// blockKey returns "b/" + ID (uint64 BE) + block index (uint64 BE).
func blockKey(id uint64, idx int64) []byte {
	k := make([]byte, len(prefixBlock)+16)
	copy(k, prefixBlock)
	binary.BigEndian.PutUint64(k[len(prefixBlock):], id)
	binary.BigEndian.PutUint64(k[len(prefixBlock)+8:], uint64(idx))
	return k
}

// blockSpan returns the bounds [lo, hi) of every "b/" key of file id:
// "b/" + ID and "b/" + (ID+1). IDs never reach MaxUint64 (they count up
// from 1), so ID+1 does not wrap.
func blockSpan(id uint64) (lo, hi []byte) {
	lo = make([]byte, len(prefixBlock)+8)
	copy(lo, prefixBlock)
	binary.BigEndian.PutUint64(lo[len(prefixBlock):], id)
	hi = make([]byte, len(prefixBlock)+8)
	copy(hi, prefixBlock)
	binary.BigEndian.PutUint64(hi[len(prefixBlock):], id+1)
	return lo, hi
}

// outboxKey returns "o/" + sequence (uint64 BE).
func outboxKey(seq uint64) []byte {
	k := make([]byte, len(prefixOutbox)+8)
	copy(k, prefixOutbox)
	binary.BigEndian.PutUint64(k[len(prefixOutbox):], seq)
	return k
}

// outboxSpan returns the bounds [lo, hi) of every "o/" key: "o/" and "o0"
// ('/'+1 is '0').
func outboxSpan() (lo, hi []byte) {
	return prefixOutbox, []byte("o0")
}

// parseOutboxKey returns the sequence number of an "o/" key.
func parseOutboxKey(k []byte) (uint64, error) {
	if len(k) != len(prefixOutbox)+8 || string(k[:len(prefixOutbox)]) != string(prefixOutbox) {
		return 0, fmt.Errorf("cache: malformed outbox key %x", k)
	}
	return binary.BigEndian.Uint64(k[len(prefixOutbox):]), nil
}

// parseBlockKey returns the block index of a "b/" key of file id.
func parseBlockKey(k []byte, id uint64) (int64, error) {
	if len(k) != len(prefixBlock)+16 || string(k[:len(prefixBlock)]) != string(prefixBlock) ||
		binary.BigEndian.Uint64(k[len(prefixBlock):]) != id {
		return 0, fmt.Errorf("cache: malformed block key %x for file %d", k, id)
	}
	idx := binary.BigEndian.Uint64(k[len(prefixBlock)+8:])
	if idx > 1<<62 {
		return 0, fmt.Errorf("cache: block key %x: index out of range", k)
	}
	return int64(idx), nil
}

// blockState is the decoded value of a "b/" key.
type blockState struct {
	length uint32 // stored bytes
	crc    uint32 // CRC-32C (Castagnoli) of the stored bytes
	gen    uint64 // generation of the file record the block belongs to
	clock  uint64 // access clock of the last commit or read (lru.go)
}

func (s blockState) encode() []byte {
	v := make([]byte, blockValueLen)
	v[0] = codecRaw
	binary.BigEndian.PutUint32(v[1:], s.length)
	binary.BigEndian.PutUint32(v[5:], s.crc)
	binary.BigEndian.PutUint64(v[9:], s.gen)
	binary.BigEndian.PutUint64(v[17:], s.clock)
	return v
}

func decodeBlockState(v []byte) (blockState, error) {
	if len(v) != blockValueLen {
		return blockState{}, fmt.Errorf("cache: block value has %d bytes, want %d", len(v), blockValueLen)
	}
	if v[0] != codecRaw {
		return blockState{}, fmt.Errorf("cache: block value has unknown codec %d", v[0])
	}
	return blockState{
		length: binary.BigEndian.Uint32(v[1:]),
		crc:    binary.BigEndian.Uint32(v[5:]),
		gen:    binary.BigEndian.Uint64(v[9:]),
		clock:  binary.BigEndian.Uint64(v[17:]),
	}, nil
}

// lruKeyLen is the length of an "l/" key.
const lruKeyLen = 2 + 24

// lruKey returns "l/" + clock (uint64 BE) + ID (uint64 BE) + block index
// (uint64 BE).
func lruKey(clock, id uint64, idx int64) []byte {
	k := make([]byte, lruKeyLen)
	copy(k, prefixLRU)
	binary.BigEndian.PutUint64(k[2:], clock)
	binary.BigEndian.PutUint64(k[10:], id)
	binary.BigEndian.PutUint64(k[18:], uint64(idx))
	return k
}

// lruSpan returns the bounds [lo, hi) of every "l/" key: "l/" and "l0"
// ('/'+1 is '0').
func lruSpan() (lo, hi []byte) {
	return prefixLRU, []byte("l0")
}

// parseLRUKey splits an "l/" key.
func parseLRUKey(k []byte) (clock, id uint64, idx int64, err error) {
	if len(k) != lruKeyLen || string(k[:2]) != string(prefixLRU) {
		return 0, 0, 0, fmt.Errorf("cache: malformed LRU key %x", k)
	}
	clock = binary.BigEndian.Uint64(k[2:])
	id = binary.BigEndian.Uint64(k[10:])
	u := binary.BigEndian.Uint64(k[18:])
	if u > 1<<62 {
		return 0, 0, 0, fmt.Errorf("cache: LRU key %x: index out of range", k)
	}
	return clock, id, int64(u), nil
}

// u64 encodes a uint64 value as 8 bytes BE (the "v", "n" and "m/" values).
func u64(x uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, x)
}

// decodeU64 decodes an 8-byte BE value; what names the key in the error.
func decodeU64(what string, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("cache: %s value has %d bytes, want 8", what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
