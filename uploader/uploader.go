package uploader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ferry/cache"
)

// State is what a file of the outbox is doing, as user.ferry.state shows.
type State string

const (
	// StateWriting: changed and not committed yet (a writer has it open).
	StateWriting State = "writing"
	// StateQueued: committed, waiting for an upload (or its next retry).
	StateQueued State = "queued"
	// StateUploading: an upload attempt runs.
	StateUploading State = "uploading"
	// StateSent: the server confirmed it with a 2xx.
	StateSent State = "sent"
	// StateFailed: the upload failed for good; Status.Err says why.
	StateFailed State = "failed"
)

// Queue keeps the upload queue durably; *cache.Cache implements it.
type Queue interface {
	OutboxRecords() ([]cache.OutboxRecord, error)
	PutOutbox(r cache.OutboxRecord, sync bool) error
	DeleteOutbox(seq uint64) error
}

// Options configure New. URL and StagedDir are required.
type Options struct {
	// URL is the upload base URL; a file's URL is URL + its escaped path.
	// It must end with "/".
	URL string
	// Protocol is "put" (the default when empty) or "tus".
	Protocol string
	// Overwrite replaces files the server already has; without it PUT and
	// the tus creation send If-None-Match: *.
	Overwrite bool
	// Encoding is the Content-Encoding of PUT bodies: "", "gzip" or "zstd".
	Encoding string
	// Header is sent with every request. Not modified.
	Header http.Header
	// Keep keeps sent files (state "sent") instead of deleting their
	// records and calling OnSent.
	Keep bool
	// StagedDir holds the staged data, StagedPath(StagedDir, seq).
	StagedDir string
	// TempDir holds content-encoded copies while they are uploaded; New
	// creates it (0700) and empties it. Needed only with Encoding.
	TempDir string
	// Verify makes the first attempt of every file loaded by New check the
	// staged data against its recorded SHA-256 (set it after an unclean
	// stop: a power loss may have lost staged bytes).
	Verify bool
	// Parallel is how many uploads run at once; 0 means 2.
	Parallel int
	// Backoff is the first retry delay after a transient failure, doubled
	// (with jitter) up to MaxBackoff; defaults 250ms and 30s.
	Backoff, MaxBackoff time.Duration
	// StallTimeout aborts an attempt when the server takes no body bytes
	// or sends no answer for this long; 0 means 60s.
	StallTimeout time.Duration
	// NoStream turns streamed uploads off (StartStream returns nil):
	// every upload waits for the commit and sends Content-Length and a
	// Content-Digest header.
	NoStream bool
	// StreamIdle ends a stream whose writer wrote nothing for this long
	// before the commit (the upload then waits for the commit); 0 means
	// 10s.
	StreamIdle time.Duration
	// Transport sends the requests; nil means a transport of the
	// Uploader's own, closed by Close.
	Transport http.RoundTripper
	// Logger receives upload events; nil discards.
	Logger *slog.Logger
	// OnSent is called after a sent file's record was deleted (not with
	// Keep): its owner removes it from the outbox. It runs on a worker,
	// without the Uploader's lock; it may call the Uploader.
	OnSent func(seq uint64)
	// OnDone is called once each time a file is sent or fails for good,
	// with its path relative to the outbox, the state ("sent" or "failed")
	// and the failure. It runs like OnSent, after it.
	OnDone func(path, state string, err error)
}

// Entry describes a file of the queue, as New loaded it.
type Entry struct {
	Seq   uint64
	Path  string
	Size  int64
	MTime time.Time
	Mode  uint32
	State State
}

// Content describes committed content.
type Content struct {
	Path   string // relative to the outbox, "/"-separated
	Size   int64
	SHA256 []byte // of the content; nil: computed before the first attempt
	// Stream, when not nil, is a streamed upload of this content that
	// started while it was written (StartStream): Commit lets it finish
	// instead of queueing a new attempt, or aborts it when it cannot.
	Stream *Stream
	// Held says that a writer the owner does not see (FUSE passthrough)
	// may still change the staged data: nothing is sent, and a stream's
	// body does not end, until Unhold. A change the owner sees later
	// still calls Modify.
	Held  bool
	MTime time.Time
	Mode  uint32
}

// Status is the live state of one file.
type Status struct {
	State State
	Sent  int64  // bytes the server has taken in the current or last attempt
	Size  int64  // bytes of the committed content
	Err   string // why it failed, or the last transient error
}

// Uploader uploads the committed files of one outbox. Its methods are safe
// for concurrent use. Must call Close.
type Uploader struct {
	opts   Options
	q      Queue
	log    *slog.Logger
	client *http.Client
	ownTr  *http.Transport // closed by Close; nil when Options.Transport is set

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards everything below and every item's fields but gen and sent.
	// Records are persisted with mu held, so their writes keep the order
	// of the changes. Callbacks run without it.
	mu      sync.Mutex
	items   map[uint64]*item
	ready   readyHeap  // queued items, earliest first; stale entries skipped
	work    *sync.Cond // signalled when ready gains an item or Close runs
	order   uint64     // commit counter: FIFO order of ready items
	started bool
	closed  bool
	wake    *time.Timer // wakes workers when a backoff ends
	wakeAt  time.Time
	// streaming is set while a Stream runs (one at a time); noStream once
	// the server refused one. putRate is the rate of the last timed plain
	// PUT in bytes/s (0: none yet).
	streaming, noStream bool
	streamMode          StreamMode
	putRate             float64
}

// item is one committed (or once committed) file.
type item struct {
	rec   cache.OutboxRecord // as persisted
	state State
	// gen changes with every Modify, Commit, Rename and Remove; an attempt
	// started at another generation may not complete. Written with
	// Uploader.mu held; read without it by request bodies.
	gen       atomic.Uint64
	sent      atomic.Int64       // progress of the current attempt
	cancel    context.CancelFunc // of the running attempt, nil when none
	removed   bool
	failures  int       // transient failures in a row
	notBefore time.Time // backoff: no attempt before
	order     uint64    // position in the FIFO
	verify    bool      // check the staged data against rec.SHA256 first
	// unsure is set when an attempt sent the whole body but got no
	// answer: a 412 later may be the server holding our own upload.
	unsure bool
	// held: committed with Content.Held and no Unhold yet; it is not
	// queued for a worker meanwhile (its state may say queued).
	held bool
	// stream is the Stream that adopted the current commit while it
	// runs.
	stream *Stream
}

// New loads the queue from q. Records of files that were being changed
// when the last process stopped (cache.OutboxOpen) are dropped: their
// staged bytes are not the committed ones. So are records whose path
// checkPath refuses (nothing writes them; the check guards the tree). Call Entries to see what was
// loaded, then Start.
func New(q Queue, opts Options) (*Uploader, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}
	u := &Uploader{opts: opts, q: q, log: opts.Logger, items: make(map[uint64]*item)}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.work = sync.NewCond(&u.mu)
	if err := u.prepareTemp(); err != nil {
		return nil, err
	}
	recs, err := q.OutboxRecords()
	if err != nil {
		return nil, fmt.Errorf("uploader: loading the queue: %w", err)
	}
	for _, r := range recs {
		if r.State == cache.OutboxOpen || checkPath(r.Path) != nil {
			u.log.Warn("uploader: dropping a file that was being changed when ferry stopped, or has a bad path",
				"path", r.Path, "state", r.State)
			if err := q.DeleteOutbox(r.Seq); err != nil {
				return nil, fmt.Errorf("uploader: %w", err)
			}
			continue
		}
		it := &item{rec: r, verify: opts.Verify && r.State == cache.OutboxQueued}
		it.unsure = r.Attempts > 0 // an attempt of the last run may have made it
		switch r.State {
		case cache.OutboxQueued:
			it.state = StateQueued
			u.order++
			it.order = u.order
			u.ready.push(it)
		case cache.OutboxSent:
			it.state = StateSent
		case cache.OutboxFailed:
			it.state = StateFailed
		}
		u.items[r.Seq] = it
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.client, u.ownTr = newClient(opts)
	return u, nil
}

func checkOptions(opts *Options) error {
	if !strings.HasSuffix(opts.URL, "/") || !(strings.HasPrefix(opts.URL, "http://") || strings.HasPrefix(opts.URL, "https://")) {
		return fmt.Errorf("uploader: URL %q: want an http or https URL ending with /", opts.URL)
	}
	switch opts.Protocol {
	case "":
		opts.Protocol = "put"
	case "put", "tus":
	default:
		return fmt.Errorf("uploader: protocol %q: want put or tus", opts.Protocol)
	}
	switch opts.Encoding {
	case "", "gzip", "zstd":
	default:
		return fmt.Errorf("uploader: encoding %q: want gzip or zstd", opts.Encoding)
	}
	if opts.StagedDir == "" {
		return errors.New("uploader: no staged directory")
	}
	if opts.Encoding != "" && opts.Protocol == "put" && opts.TempDir == "" {
		return errors.New("uploader: an encoding needs a temporary directory")
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 2
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.StreamIdle <= 0 {
		opts.StreamIdle = 10 * time.Second
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = time.Minute
	}
	return nil
}

// prepareTemp creates TempDir (0700) and removes what a previous run left.
func (u *Uploader) prepareTemp() error {
	if u.opts.TempDir == "" {
		return nil
	}
	if err := os.MkdirAll(u.opts.TempDir, 0o700); err != nil {
		return fmt.Errorf("uploader: %w", err)
	}
	ents, err := os.ReadDir(u.opts.TempDir)
	if err != nil {
		return fmt.Errorf("uploader: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(u.opts.TempDir, e.Name())); err != nil {
			return fmt.Errorf("uploader: %w", err)
		}
	}
	return nil
}

// StagedPath is the staged data file of seq in dir: 16 hex digits.
func StagedPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x", seq))
}

// Entries returns the files of the queue in sequence order.
func (u *Uploader) Entries() []Entry {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Entry, 0, len(u.items))
	for _, it := range u.items {
		out = append(out, Entry{Seq: it.rec.Seq, Path: it.rec.Path, Size: it.rec.Size,
			MTime: time.Unix(0, it.rec.MTime), Mode: it.rec.Mode, State: it.state})
	}
	sortEntries(out)
	return out
}

// Start starts the workers. Calling it again does nothing.
func (u *Uploader) Start() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	for range u.opts.Parallel {
		u.wg.Add(1)
		go u.worker()
	}
}

// Close stops the workers and waits for them. Uploads cut short stay
// queued. Calls after Close fail or do nothing.
func (u *Uploader) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	u.cancel()
	if u.wake != nil {
		u.wake.Stop()
	}
	u.work.Broadcast()
	u.mu.Unlock()
	u.wg.Wait()
	if u.ownTr != nil {
		u.ownTr.CloseIdleConnections()
	}
	return nil
}

// errClosed is returned by calls after Close.
var errClosed = errors.New("uploader: closed")

// Commit queues new content for seq (a new file, or a file changed since
// its last commit). The record is durable when Commit returns.
func (u *Uploader) Commit(seq uint64, c Content) error {
	if err := checkPath(c.Path); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return errClosed
	}
	it := u.items[seq]
	fresh := it == nil
	if fresh {
		it = &item{}
		u.items[seq] = it
	}
	etag := ""
	if it.rec.Path == c.Path {
		etag = it.rec.ETag // our own earlier upload of this path
	}
	it.rec = cache.OutboxRecord{Seq: seq, Path: c.Path, State: cache.OutboxQueued, Size: c.Size,
		SHA256: c.SHA256, MTime: c.MTime.UnixNano(), Mode: c.Mode, ETag: etag}
	it.stopLocked()
	it.verify, it.unsure, it.failures, it.notBefore = false, false, 0, time.Time{}
	it.held = c.Held
	streamed := c.Stream != nil && fresh && c.Stream.seq == seq && c.Stream.Running()
	if streamed {
		it.rec.Attempts = 1 // a later 412 may be this attempt's own upload
	}
	if err := u.q.PutOutbox(it.rec, true); err != nil {
		if fresh {
			delete(u.items, seq)
		}
		it.state = StateWriting // not committed
		if c.Stream != nil {
			c.Stream.Abort()
		}
		return fmt.Errorf("uploader: %w", err)
	}
	if streamed && c.Stream.adoptLocked(it, c.Size) {
		return nil
	}
	if c.Stream != nil {
		c.Stream.Abort()
	}
	u.queueLocked(it)
	return nil
}

// Modify tells that seq is about to change; call it before the first byte
// of the change is written. A running upload is abandoned and nothing is
// sent until the next Commit. It reports whether seq is in the queue (false
// for a file never committed, or one already sent and dropped).
func (u *Uploader) Modify(seq uint64) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	it := u.items[seq]
	if it == nil {
		return false, nil
	}
	it.stopLocked()
	it.state = StateWriting
	it.rec.State = cache.OutboxOpen
	it.rec.TusURL = ""
	if err := u.q.PutOutbox(it.rec, true); err != nil {
		return true, fmt.Errorf("uploader: %w", err)
	}
	return true, nil
}

// Rename moves seq to a new path. Committed content is uploaded again
// under the new name (an attempt under the old name is abandoned); a sent
// or failed file is queued again, as a rename commits.
func (u *Uploader) Rename(seq uint64, path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	it := u.items[seq]
	if it == nil {
		return nil
	}
	if it.rec.Path == path {
		return nil
	}
	it.rec.Path, it.rec.ETag, it.rec.TusURL, it.rec.Err = path, "", "", ""
	if it.state == StateWriting {
		return u.persistLocked(it, true)
	}
	it.stopLocked()
	it.rec.State = cache.OutboxQueued
	it.failures, it.notBefore, it.unsure = 0, time.Time{}, false
	if err := u.q.PutOutbox(it.rec, true); err != nil {
		return fmt.Errorf("uploader: %w", err)
	}
	u.queueLocked(it)
	return nil
}

// Remove drops seq from the queue (the file was deleted): a running upload
// is abandoned and the record deleted.
func (u *Uploader) Remove(seq uint64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	it := u.items[seq]
	if it == nil {
		return nil
	}
	it.stopLocked()
	it.removed = true
	delete(u.items, seq)
	if err := u.q.DeleteOutbox(seq); err != nil {
		return fmt.Errorf("uploader: %w", err)
	}
	return nil
}

// Retry queues a failed file again. It reports whether seq had failed.
func (u *Uploader) Retry(seq uint64) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	it := u.items[seq]
	if it == nil || it.state != StateFailed {
		return false, nil
	}
	it.stopLocked()
	it.rec.State, it.rec.Err, it.rec.TusURL = cache.OutboxQueued, "", ""
	it.failures, it.notBefore = 0, time.Time{}
	if err := u.q.PutOutbox(it.rec, true); err != nil {
		return true, fmt.Errorf("uploader: %w", err)
	}
	u.queueLocked(it)
	return true, nil
}

// Status returns the state of seq; ok is false when seq is not in the
// queue.
func (u *Uploader) Status(seq uint64) (st Status, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	it := u.items[seq]
	if it == nil {
		return Status{}, false
	}
	st = Status{State: it.state, Sent: it.sent.Load(), Size: it.rec.Size, Err: it.rec.Err}
	if it.state == StateSent {
		st.Sent = it.rec.Size
	}
	return st, true
}

// URL returns the upload URL of a path relative to the outbox.
func (u *Uploader) URL(path string) string {
	return u.opts.URL + escapePath(path)
}

// stopLocked starts a new generation of it: a running attempt is cancelled
// and may not complete. Uploader.mu is held.
func (it *item) stopLocked() {
	it.gen.Add(1)
	if it.cancel != nil {
		it.cancel()
		it.cancel = nil
	}
}

// queueLocked marks it queued and wakes a worker (at Unhold if it is
// held). Uploader.mu is held.
func (u *Uploader) queueLocked(it *item) {
	it.state = StateQueued
	it.sent.Store(0)
	u.order++
	it.order = u.order
	if it.held {
		return
	}
	u.ready.push(it)
	u.work.Signal()
}

// persistLocked writes it's record. Uploader.mu is held.
func (u *Uploader) persistLocked(it *item, sync bool) error {
	if err := u.q.PutOutbox(it.rec, sync); err != nil {
		return fmt.Errorf("uploader: %w", err)
	}
	return nil
}
