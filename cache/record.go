package cache

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Record is a snapshot of one file's record in the block map (the value of
// its "f/" key). It is a copy: changing it changes nothing.
type Record struct {
	ID           uint64
	Path         string // manifest path
	URL          string // URL the blocks are fetched from
	BlockSize    int64
	DeclaredSize int64  // size the manifest declared; -1: unknown
	Pinned       bool   // Remote is the validator of every stored block
	Remote       Remote // zero unless Pinned
	Generation   uint64 // bumped by every Reset and Evict; starts at 1
	Restarts     int    // Resets because the remote changed
	// KeepLocal is the persisted pin of the local copy (File.SetPinned:
	// ferry pin): the cache never evicts the file's blocks. Not to be
	// confused with Pinned, the validator.
	KeepLocal bool
}

// recordVersion is the first byte of an encoded record. Part of the on-disk
// format: a new layout gets a new version, and decodeRecord keeps reading
// every old one.
const recordVersion = 1

// Flag bits of an encoded record.
const (
	recordPinned = 1 << 0 // Pinned
	recordKeep   = 1 << 1 // KeepLocal (schema 2)
	recordFlags  = recordPinned | recordKeep
)

// encodeRecord lays r out as (see docs/on-disk-format.md):
//
//	version   byte (recordVersion)
//	path      uvarint length + bytes
//	url       uvarint length + bytes
//	blockSize uvarint
//	declared  varint (-1: unknown)
//	flags     byte (bit 0: pinned, bit 1: keep local)
//	size      varint (pinned remote size)
//	etag      uvarint length + bytes
//	lastMod   uvarint length + bytes
//	gen       uvarint
//	restarts  uvarint
//
// The ID is not stored: it is in the key.
func encodeRecord(r *Record) []byte {
	n := 1 + 6*binary.MaxVarintLen64 + 1 + len(r.Path) + len(r.URL) + len(r.Remote.ETag) +
		len(r.Remote.LastModified) + 4*binary.MaxVarintLen64
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = appendString(b, r.Path)
	b = appendString(b, r.URL)
	b = binary.AppendUvarint(b, uint64(r.BlockSize))
	b = binary.AppendVarint(b, r.DeclaredSize)
	var flags byte
	if r.Pinned {
		flags |= recordPinned
	}
	if r.KeepLocal {
		flags |= recordKeep
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, r.Remote.Size)
	b = appendString(b, r.Remote.ETag)
	b = appendString(b, r.Remote.LastModified)
	b = binary.AppendUvarint(b, r.Generation)
	b = binary.AppendUvarint(b, uint64(r.Restarts))
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decodeRecord is the inverse of encodeRecord. It copies every string out
// of b, so b may be a Pebble slice that is about to become invalid.
func decodeRecord(id uint64, b []byte) (Record, error) {
	d := recordDecoder{b: b}
	if v := d.byte(); v != recordVersion && d.err == nil {
		return Record{}, fmt.Errorf("cache: file record %d has unknown version %d", id, v)
	}
	r := Record{ID: id}
	r.Path = d.string()
	r.URL = d.string()
	r.BlockSize = int64(d.uvarint())
	r.DeclaredSize = d.varint()
	flags := d.byte()
	r.Pinned = flags&recordPinned != 0
	r.KeepLocal = flags&recordKeep != 0
	r.Remote.Size = d.varint()
	r.Remote.ETag = d.string()
	r.Remote.LastModified = d.string()
	r.Generation = d.uvarint()
	r.Restarts = int(d.uvarint())
	switch {
	case d.err != nil:
		return Record{}, fmt.Errorf("cache: file record %d: %w", id, d.err)
	case len(d.b) != 0:
		return Record{}, fmt.Errorf("cache: file record %d: %d trailing bytes", id, len(d.b))
	case flags&^recordFlags != 0:
		return Record{}, fmt.Errorf("cache: file record %d: unknown flags %#x", id, flags)
	case r.BlockSize <= 0 || r.BlockSize > maxBlockSize:
		return Record{}, fmt.Errorf("cache: file record %d: block size %d out of range", id, r.BlockSize)
	case r.DeclaredSize < -1 || r.Remote.Size < 0 || r.Restarts < 0 || r.Generation == 0:
		return Record{}, fmt.Errorf("cache: file record %d: field out of range", id)
	}
	return r, nil
}

// putRecord writes r under its "f/" key and, with the ID in front, under
// its "p/" key, in batch b.
func putRecord(b *pebble.Batch, r *Record) {
	enc := encodeRecord(r)
	b.Set(fileKey(r.ID), enc, nil)
	pv := make([]byte, 8+len(enc))
	binary.BigEndian.PutUint64(pv, r.ID)
	copy(pv[8:], enc)
	b.Set(pathKey(r.Path), pv, nil)
}

// decodePathValue decodes the value of the "p/" key of path: the ID and
// the record. It copies everything out of v.
func decodePathValue(path string, v []byte) (Record, error) {
	if len(v) < 8 {
		return Record{}, fmt.Errorf("cache: path %q: value of %d bytes", path, len(v))
	}
	id := binary.BigEndian.Uint64(v)
	r, err := decodeRecord(id, v[8:])
	if err == nil && r.Path != path {
		err = fmt.Errorf("cache: path %q names record %d of path %q", path, id, r.Path)
	}
	return r, err
}

var errTruncated = errors.New("truncated")

// recordDecoder reads the fields of an encoded record; the first error
// sticks and later reads return zero values.
type recordDecoder struct {
	b   []byte
	err error
}

func (d *recordDecoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *recordDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 || x > 1<<62 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *recordDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *recordDecoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *recordDecoder) fail() {
	if d.err == nil {
		d.err = errTruncated
	}
}
