// Package fetcher downloads byte ranges of remote files over HTTP into a
// Store, ranked by one priority queue. Not a stable API.
//
// # Work and its order
//
// All work goes through one queue. A read that is waiting now (Ensure) is
// served first, readahead (Readahead) next, and background fill (after
// Start, when Options.Background is set) last, ordered by the file's
// manifest priority. Background fill never takes the connections reserved
// for reads: it runs on at most MaxConns minus a reserve of workers, so a
// read finds a free connection unless other reads hold them all. A read that
// needs a block a running background transfer will reach only later steals
// the block: the background transfer stops before it.
//
// # What is accepted from the origin
//
// A ranged GET carries If-Range with the validator pinned by the first
// response. Only a 206 whose Content-Range matches the request and whose
// total equals the pinned size, with no Content-Encoding, is stored. A 200 to
// a ranged request means either that the object changed (its validator
// differs: the file is reset and the new version streamed) or that the origin
// ignores Range: the file is then streamed in order from the start, one
// stream at a time, and readers wait for their offset.
//
// # Goroutines
//
// New starts MaxConns workers; Close cancels every request in flight and
// waits for all of them. Start adds one goroutine that checks the digests
// of files found complete; Close stops it too.
package fetcher

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
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
	// BlockSize is fixed for the life of the store.
	BlockSize() int64
	// Remote returns the pinned validator and the current generation.
	Remote() (r Remote, gen uint64, ok bool)
	// Pin records the validator for generation gen; it is durable before
	// any block of gen is.
	Pin(gen uint64, r Remote) error
	// Present reports whether block idx is local; cheap.
	Present(idx int64) bool
	// Missing returns the first block in [first, last] not present, or -1.
	Missing(first, last int64) int64
	// LocalBytes is the number of bytes held locally.
	LocalBytes() int64
	// WriteBlock stores block idx of generation gen (fails if gen is stale).
	// The caller may reuse data once it returns.
	WriteBlock(gen uint64, idx int64, data []byte) error
	// Reset drops every block and the validator; returns the new generation.
	Reset(reason string) (uint64, error)
	// ReadAt reads local bytes (to check a whole-file digest).
	ReadAt(p []byte, off int64) (int, error)
}

// Options configure New.
type Options struct {
	// MaxConns bounds the HTTP requests in flight, in all; default 8.
	MaxConns int
	// MaxConnsPerHost bounds the connections to one host (name and port);
	// default MaxConns. Only used when Client is nil.
	MaxConnsPerHost int
	// Client makes the requests; nil builds one whose transport allows
	// MaxConns connections per host and never asks for compression.
	Client *http.Client
	// Background fills every file in the background once Start is called.
	Background bool
	// ReadTimeout bounds how long Ensure waits for missing bytes; 0: no limit.
	ReadTimeout time.Duration
	// StallTimeout aborts a response whose body sends nothing for this long;
	// default 30s.
	StallTimeout time.Duration
	// ChunkSize is how many bytes one background request asks for; default
	// 16 MiB (rounded to whole blocks).
	ChunkSize int64
	// Backoff is the first retry delay after a transient failure, doubled
	// (with jitter) up to MaxBackoff; defaults 250ms and 30s.
	Backoff, MaxBackoff time.Duration
	// Bandwidth limits background fill (never reads a program waits on).
	Bandwidth Bandwidth
	// Room, when set, is asked before each background request whether the
	// local store has room for n more bytes without evicting data worth
	// keeping; when it says no, background fill waits (reads do not). Call
	// Fetcher.Wake when room may have come back. It is called with the
	// fetcher's lock held: it must be quick and must not call the fetcher.
	Room func(n int64) bool
	// Logger receives transfer errors; nil discards.
	Logger *slog.Logger
	// OnDone is called once each time a file completes (and its digest, if
	// any, matched) or fails. It runs on a worker: it must not block long
	// and must not call back into the fetcher synchronously.
	OnDone func(Info)
	// OnReset is called after the file's local copy was dropped because
	// the remote changed or failed its digest: cached copies of the old
	// bytes (the kernel's page cache) must go. Same rules as OnDone.
	OnReset func(*File)
}

// Spec describes one remote file.
type Spec struct {
	Path     string
	URL      string
	Mirrors  []string
	Header   http.Header
	Size     int64 // declared, -1 unknown
	Priority manifest.Priority
	Pinned   bool // fetch whole before other background work
	// SHA256 is the whole file's digest (hex), checked when it completes:
	// a mismatch refetches once, then fails the file.
	SHA256 string
	// BlockHashes are the digests of each block, checked before a block is
	// stored; used only when the store's block size is BlockHashSize.
	BlockHashes   [][32]byte
	BlockHashSize int64
}

// State of a file's transfer.
type State string

// The states of SPEC.md's user.ferry.state for remote files.
const (
	StateRemote   State = "remote"
	StatePartial  State = "partial"
	StateComplete State = "complete"
	StateFailed   State = "failed"
)

var (
	// ErrClosed is returned once the fetcher is closed.
	ErrClosed = errors.New("fetcher: closed")
	// ErrTimeout is wrapped by Ensure's error when ReadTimeout passed.
	ErrTimeout = errors.New("fetcher: read timeout")
)

// Fetcher owns the workers and the queue. Must call Close.
type Fetcher struct {
	opts   Options
	client *http.Client
	log    *slog.Logger

	limit  *limiter        // background bandwidth
	ctx    context.Context // cancelled by Close; every request uses it
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers
	// warming counts Warm's requests in flight (tests wait for them).
	warming sync.WaitGroup

	// mu guards everything below, and the fields of every File and job
	// marked "guarded by Fetcher.mu". It is never held across I/O: not
	// across an HTTP request, a body read, or a Store write.
	mu           sync.Mutex
	work         *sync.Cond        // signalled when the queue or background work may have grown
	queue        jobHeap           // demand and readahead jobs
	seq          uint64            // orders jobs of one class: first come, first served
	files        []*File           // every file, in the order they were added
	ranks        [nRanks]rankQueue // the files by background rank (pick.go)
	lowActive    int               // workers running readahead or background jobs
	demandActive int               // workers running demand jobs
	yield        yieldGate         // background transfers' pauses for reads (yield.go)
	waiting      map[*File]int     // reads waiting for missing blocks, per file
	mem          map[memKey]*memBlock
	wake         *time.Timer // wakes idle workers when a backoff ends
	wakeAt       time.Time
	started      bool // background fill allowed
	closed       bool
}

// New starts the fetcher's workers.
func New(opts Options) *Fetcher {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 30 * time.Second
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 16 << 20
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConnsPerHost <= 0 || opts.MaxConnsPerHost > opts.MaxConns {
		opts.MaxConnsPerHost = opts.MaxConns
	}
	client := opts.Client
	if client == nil {
		client = newClient(opts.MaxConnsPerHost)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fetcher{opts: opts, client: client, log: log, ctx: ctx, cancel: cancel,
		limit: &limiter{bw: opts.Bandwidth, now: time.Now}}
	f.work = sync.NewCond(&f.mu)
	f.yield.quiet = make(chan struct{})
	for range opts.MaxConns {
		f.wg.Add(1)
		go f.worker()
	}
	return f
}

// Close cancels every request in flight, stops every worker and waits for
// them. Waiting Ensure calls return ErrClosed.
func (f *Fetcher) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.cancel()
	if f.wake != nil {
		f.wake.Stop()
	}
	f.stopYieldLocked()
	for _, fl := range f.files {
		fl.notifyLocked()
	}
	f.work.Broadcast()
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// Add registers a file. Files are filled in the background once Start is
// called (if Options.Background); reads work at once.
func (f *Fetcher) Add(spec Spec, st Store) *File {
	fl := &File{f: f, spec: spec, st: st, bs: st.BlockSize(), size: -1, pinned: spec.Pinned,
		prio: spec.Priority}
	if r, _, ok := st.Remote(); ok {
		fl.size = r.Size
	} else if spec.Size >= 0 {
		fl.size = spec.Size
	}
	f.mu.Lock()
	f.files = append(f.files, fl)
	f.queueLocked(fl)
	f.mu.Unlock()
	return fl
}

// Start begins background filling (if Options.Background), and checks
// the digest of every file that is complete in the store but was not checked
// in this run (one goroutine, stopped by Close).
func (f *Fetcher) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started || f.closed {
		return
	}
	f.started = true
	f.work.Broadcast()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for _, fl := range f.Files() {
			if f.ctx.Err() != nil {
				return
			}
			f.settle(fl)
		}
	}()
}

// demandFree reports whether a waiting read may take a worker now. With
// background fill on, one worker stays free for it, so that a program that
// reads nonstop cannot starve the fill. Fetcher.mu is held.
func (f *Fetcher) demandFree() bool {
	n := f.opts.MaxConns
	if n <= 1 || !f.opts.Background || !f.started {
		return true
	}
	return f.demandActive < n-1
}

// lowLimit is how many workers readahead and background jobs may hold at
// once: the rest are kept for reads that wait.
func (f *Fetcher) lowLimit() int {
	n := f.opts.MaxConns
	if n <= 1 {
		return n
	}
	reserve := max(1, n/4)
	return n - reserve
}
