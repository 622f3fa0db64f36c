// Package fetcher downloads byte ranges of remote files over HTTP, ranked by
// one priority queue, into a Store. Not a stable API.
package fetcher

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"ferry/manifest"
)

// Remote identifies one version of a remote object.
type Remote struct {
	Size         int64
	ETag         string
	LastModified string
}

// Store is the local copy of one remote file, as the fetcher needs it.
// Implementations are safe for concurrent use.
type Store interface {
	BlockSize() int64
	// Remote returns the pinned validator and the current generation.
	Remote() (r Remote, gen uint64, ok bool)
	// Pin records the validator for generation gen, durably.
	Pin(gen uint64, r Remote) error
	Present(idx int64) bool
	// Missing returns the first block in [first, last] not present, or -1.
	Missing(first, last int64) int64
	// WriteBlock stores block idx of generation gen (fails if gen is stale).
	WriteBlock(gen uint64, idx int64, data []byte) error
	// Reset drops every block and the validator; returns the new generation.
	Reset(reason string) (uint64, error)
}

// Options configure New.
type Options struct {
	MaxConns    int           // connections in all, default 8
	Client      *http.Client  // nil: a client with a transport sized to MaxConns
	Background  bool          // fill every file in the background
	ReadTimeout time.Duration // how long Ensure waits for missing bytes; 0: no limit
	Logger      *slog.Logger
}

// Spec describes one remote file.
type Spec struct {
	Path     string
	URL      string
	Mirrors  []string
	Header   http.Header
	Size     int64 // declared, -1 unknown
	Priority manifest.Priority
}

// State of a file's transfer.
type State string

const (
	StateRemote   State = "remote"
	StatePartial  State = "partial"
	StateComplete State = "complete"
	StateFailed   State = "failed"
)

// ErrClosed is returned once the fetcher is closed.
var ErrClosed = errors.New("fetcher: closed")

// Fetcher owns the workers; must call Close.
type Fetcher struct{}

// New starts the fetcher's workers.
func New(opts Options) *Fetcher { return &Fetcher{} }

// Close stops every worker and waits for them.
func (f *Fetcher) Close() error { return nil }

// Add registers a file. Files added before Start are filled in the background
// once Start is called (if Options.Background).
func (f *Fetcher) Add(spec Spec, st Store) *File { return &File{} }

// Start begins background filling.
func (f *Fetcher) Start() {}

// File is one registered remote file.
type File struct{}

// Size returns the size of the remote file, asking the origin (HEAD) when it is
// neither declared nor pinned.
func (fl *File) Size(ctx context.Context) (int64, error) { return 0, errors.New("not implemented") }

// Ensure waits until the bytes [off, off+n) are local, fetching missing blocks
// first at demand priority. It returns ctx.Err() when ctx ends, an error
// wrapping ErrTimeout after ReadTimeout, and the file's error when it failed.
func (fl *File) Ensure(ctx context.Context, off, n int64) error { return errors.New("not implemented") }

// Readahead asks for [off, off+n) ahead of need; it never blocks.
func (fl *File) Readahead(off, n int64) {}

// State returns the transfer state and, when failed, the reason.
func (fl *File) State() (State, error) { return StateRemote, nil }

// ErrTimeout is wrapped by Ensure's error when ReadTimeout passed.
var ErrTimeout = errors.New("fetcher: read timeout")
