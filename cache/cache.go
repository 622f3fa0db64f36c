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
//   - All methods of Cache and File are safe for concurrent use.
package cache

import (
	"errors"
	"log/slog"
)

// ErrStale is returned by WriteBlock and Pin when the generation they name is
// no longer current: the file was reset in between.
var ErrStale = errors.New("cache: stale generation")

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("cache: closed")

// Options configure Open.
type Options struct {
	// Logger receives Pebble's log and the cache's own; nil discards.
	Logger *slog.Logger
}

// Remote identifies one version of a remote object.
type Remote struct {
	Size         int64
	ETag         string
	LastModified string
}

// Cache is an open cache directory. Must call Close.
type Cache struct{}

// Open opens (creating if needed, mode 0700) the cache directory dir.
// Startup cost does not depend on the number of blocks stored.
func Open(dir string, opts Options) (*Cache, error) { return nil, errors.New("cache: not implemented") }

// Close makes every written block durable, closes every data file and Pebble.
func (c *Cache) Close() error { return nil }

// File returns the local copy of the manifest entry at path, creating its
// record on first use. The same *File is returned for the same path while
// the cache is open. If the recorded URL differs from url, or declaredSize
// (-1: unknown) differs from the pinned size, the file is reset first.
// blockSize applies to a new record only; an existing record keeps its own.
func (c *Cache) File(path, url string, declaredSize, blockSize int64) (*File, error) {
	return nil, errors.New("cache: not implemented")
}

// File is the local copy of one remote file.
type File struct{}

// ID is the file's stable identifier in the block map.
func (f *File) ID() uint64 { return 0 }

// BlockSize is fixed for the life of the record.
func (f *File) BlockSize() int64 { return 0 }

// Remote returns the pinned validator and the current generation; ok is
// false when nothing is pinned yet.
func (f *File) Remote() (r Remote, gen uint64, ok bool) { return Remote{}, 0, false }

// Pin records r as the version every block of generation gen comes from.
// It is durable when Pin returns. ErrStale if gen is not current; an error
// if a different validator is already pinned for gen.
func (f *File) Pin(gen uint64, r Remote) error { return nil }

// Present reports whether block idx is local. Cheap: no syscall, no allocation.
func (f *File) Present(idx int64) bool { return false }

// Missing returns the index of the first block in [first, last] that is not
// present, or -1 when all are.
func (f *File) Missing(first, last int64) int64 { return first }

// LocalBytes is the number of bytes of present blocks.
func (f *File) LocalBytes() int64 { return 0 }

// Complete reports whether a validator is pinned and every block is present.
func (f *File) Complete() bool { return false }

// WriteBlock stores block idx of generation gen: len(data) is BlockSize,
// except for the last block, which holds the rest of the file. It returns
// ErrStale when gen is not current. The block is readable when WriteBlock
// returns and durable after the next group commit.
func (f *File) WriteBlock(gen uint64, idx int64, data []byte) error { return nil }

// ReadAt reads local bytes; the caller has checked that the blocks covering
// [off, off+len(p)) are present.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return 0, nil }

// Reset drops every block and the pinned validator in one batch, releases
// the disk space, and returns the new generation.
func (f *File) Reset(reason string) (uint64, error) { return 0, nil }

// Restarts is how many times the file was reset because the remote changed.
func (f *File) Restarts() int { return 0 }

// DataPath is the sparse data file that holds the blocks (for passthrough).
func (f *File) DataPath() string { return "" }
