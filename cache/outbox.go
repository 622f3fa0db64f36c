package cache

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
)

// The durable upload queue of the outbox: one "o/" key per staged file that
// was committed (its last writer closed it). The cache only stores the
// records; the uploader decides what they mean. Staged file data lives in
// DIR/outbox/, one file per record, named by the sequence number in hex
// (like data files); whoever writes the outbox owns those files.

// OutboxState is the persisted state of an outbox record. Part of the
// on-disk format: never renumber.
type OutboxState uint8

const (
	// OutboxQueued: committed, waiting for (or in) an upload.
	OutboxQueued OutboxState = 1
	// OutboxSent: a server confirmed it with a 2xx; kept by request.
	OutboxSent OutboxState = 2
	// OutboxFailed: the upload failed for good; Err says why.
	OutboxFailed OutboxState = 3
	// OutboxOpen: changed again after a commit and not committed since;
	// the staged bytes are not the ones the record describes.
	OutboxOpen OutboxState = 4
)

// OutboxRecord is one entry of the upload queue (the value of its "o/" key).
// It is a copy: changing it changes nothing until PutOutbox.
type OutboxRecord struct {
	Seq      uint64 // the key; also names the staged data file
	Path     string // relative to the outbox directory, "/"-separated
	State    OutboxState
	Size     int64  // bytes of the committed content
	SHA256   []byte // of the committed content; nil until known
	MTime    int64  // Unix ns, as shown in the mount
	Mode     uint32 // permission bits, as shown in the mount
	Attempts uint32 // upload attempts started
	TusURL   string // the tus upload resource, "" when none was created
	ETag     string // ETag of the last upload the server confirmed
	Err      string // why the upload failed (OutboxFailed), or the last transient error
}

// outboxRecordVersion is the first byte of an encoded outbox record. Part
// of the on-disk format.
const outboxRecordVersion = 1

// OutboxDir returns DIR/outbox, the directory of staged outbox data,
// creating it with mode 0700.
func (c *Cache) OutboxDir() (string, error) {
	dir := filepath.Join(c.dir, "outbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return dir, nil
}

// OutboxRecords returns every outbox record in sequence order.
func (c *Cache) OutboxRecords() ([]OutboxRecord, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.dbMu.RUnlock()
	lo, hi := outboxSpan()
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var out []OutboxRecord
	for ok := it.First(); ok; ok = it.Next() {
		seq, err := parseOutboxKey(it.Key())
		if err != nil {
			it.Close()
			return nil, err
		}
		r, err := decodeOutboxRecord(seq, it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, r)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return out, nil
}

// PutOutbox writes r under its Seq, replacing what was there. With sync
// the record is durable when PutOutbox returns; without, it becomes durable
// with the next synced write (one write-ahead log keeps the order).
func (c *Cache) PutOutbox(r OutboxRecord, sync bool) error {
	if r.Seq == 0 {
		return fmt.Errorf("cache: outbox record for %q has sequence 0", r.Path)
	}
	if r.State < OutboxQueued || r.State > OutboxOpen {
		return fmt.Errorf("cache: outbox record %d: unknown state %d", r.Seq, r.State)
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.dbMu.RUnlock()
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := c.db.Set(outboxKey(r.Seq), encodeOutboxRecord(&r), opt); err != nil {
		return fmt.Errorf("cache: outbox record %d: %w", r.Seq, err)
	}
	return nil
}

// DeleteOutbox removes the record seq (synced). Removing an absent record
// is not an error.
func (c *Cache) DeleteOutbox(seq uint64) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.dbMu.RUnlock()
	if err := c.db.Delete(outboxKey(seq), pebble.Sync); err != nil {
		return fmt.Errorf("cache: outbox record %d: %w", seq, err)
	}
	return nil
}

// encodeOutboxRecord lays r out as (see docs/on-disk-format.md):
//
//	version  byte (outboxRecordVersion)
//	path     uvarint length + bytes
//	state    byte (OutboxState)
//	size     uvarint
//	sha256   uvarint length (0 or 32) + bytes
//	mtime    varint (Unix ns)
//	mode     uvarint
//	attempts uvarint
//	tusURL   uvarint length + bytes
//	etag     uvarint length + bytes
//	err      uvarint length + bytes
//
// The sequence number is not stored: it is in the key.
func encodeOutboxRecord(r *OutboxRecord) []byte {
	b := make([]byte, 0, 2+len(r.Path)+len(r.SHA256)+len(r.TusURL)+len(r.ETag)+len(r.Err)+9*binary.MaxVarintLen64)
	b = append(b, outboxRecordVersion)
	b = appendString(b, r.Path)
	b = append(b, byte(r.State))
	b = binary.AppendUvarint(b, uint64(r.Size))
	b = appendString(b, string(r.SHA256))
	b = binary.AppendVarint(b, r.MTime)
	b = binary.AppendUvarint(b, uint64(r.Mode))
	b = binary.AppendUvarint(b, uint64(r.Attempts))
	b = appendString(b, r.TusURL)
	b = appendString(b, r.ETag)
	b = appendString(b, r.Err)
	return b
}

// decodeOutboxRecord is the inverse of encodeOutboxRecord. It copies
// everything out of b.
func decodeOutboxRecord(seq uint64, b []byte) (OutboxRecord, error) {
	d := recordDecoder{b: b}
	if v := d.byte(); v != outboxRecordVersion && d.err == nil {
		return OutboxRecord{}, fmt.Errorf("cache: outbox record %d has unknown version %d", seq, v)
	}
	r := OutboxRecord{Seq: seq}
	r.Path = d.string()
	r.State = OutboxState(d.byte())
	r.Size = int64(d.uvarint())
	if sum := d.string(); sum != "" {
		r.SHA256 = []byte(sum)
	}
	r.MTime = d.varint()
	mode := d.uvarint()
	attempts := d.uvarint()
	r.TusURL = d.string()
	r.ETag = d.string()
	r.Err = d.string()
	switch {
	case d.err != nil:
		return OutboxRecord{}, fmt.Errorf("cache: outbox record %d: %w", seq, d.err)
	case len(d.b) != 0:
		return OutboxRecord{}, fmt.Errorf("cache: outbox record %d: %d trailing bytes", seq, len(d.b))
	case r.State < OutboxQueued || r.State > OutboxOpen:
		return OutboxRecord{}, fmt.Errorf("cache: outbox record %d: unknown state %d", seq, r.State)
	case r.SHA256 != nil && len(r.SHA256) != 32:
		return OutboxRecord{}, fmt.Errorf("cache: outbox record %d: digest of %d bytes", seq, len(r.SHA256))
	case mode > 0o7777 || attempts > 1<<32-1:
		return OutboxRecord{}, fmt.Errorf("cache: outbox record %d: field out of range", seq)
	}
	r.Mode, r.Attempts = uint32(mode), uint32(attempts)
	return r, nil
}
