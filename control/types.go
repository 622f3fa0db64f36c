package control

import "time"

// StatusVersion is the version of the Status JSON; it changes only when a
// field changes meaning or goes away (new fields may appear at any time).
const StatusVersion = 1

// Status is a snapshot of one mount: what GET /v1/status answers and what
// `ferry status --json` prints, one object per line. The JSON field names
// are part of ferry's stable interface (README.md, "Control").
type Status struct {
	Version    int       `json:"version"`    // StatusVersion
	Mountpoint string    `json:"mountpoint"` // absolute
	CacheDir   string    `json:"cache_dir"`  // absolute
	PID        int       `json:"pid"`        // of the process serving the mount
	Time       time.Time `json:"time"`       // when the snapshot was taken
	Totals     Totals    `json:"totals"`
	Cache      Cache     `json:"cache"`
	// FUSEReads counts the read requests this process served (reads the
	// kernel serves itself with passthrough never get here).
	FUSEReads int64      `json:"fuse_reads"`
	Transfers []Transfer `json:"transfers"` // manifest order; empty with Query.NoFiles
	Uploads   []Upload   `json:"uploads"`   // outbox files, queue order
}

// Totals sum the transfers and uploads of a mount.
type Totals struct {
	Files      int     `json:"files"`
	Size       int64   `json:"size"`        // bytes of the files whose size is known
	Local      int64   `json:"local"`       // bytes held locally
	Rate       float64 `json:"rate"`        // bytes per second, all transfers
	ETASeconds int64   `json:"eta_seconds"` // -1: unknown (nothing moving); 0: all local
	Remote     int     `json:"remote"`      // files by state
	Partial    int     `json:"partial"`
	Complete   int     `json:"complete"`
	Failed     int     `json:"failed"`
	Paused     int     `json:"paused"`
	Pinned     int     `json:"pinned"`
	Retrying   int     `json:"retrying"` // not failed, with a last error
	Fetched    int64   `json:"fetched"`  // bytes received from origins since the mount

	Uploads     int   `json:"uploads"`      // outbox files in the queue
	UploadSize  int64 `json:"upload_size"`  // their bytes
	UploadSent  int64 `json:"upload_sent"`  // bytes the servers have taken
	UploadsDone int   `json:"uploads_sent"` // in state "sent" (with --outbox-keep)
	UploadsFail int   `json:"uploads_failed"`
}

// Transfer is one manifest file.
type Transfer struct {
	Path       string  `json:"path"`  // mount-relative, "/"-separated
	URL        string  `json:"url"`   // the manifest's URL
	State      string  `json:"state"` // remote, partial, complete, failed (user.ferry.state)
	Local      int64   `json:"local"` // bytes held locally
	Size       int64   `json:"size"`  // -1: not known yet
	Rate       float64 `json:"rate"`  // bytes per second over the last seconds
	ETASeconds int64   `json:"eta_seconds"`
	Priority   string  `json:"priority"` // foreground, high, normal, low
	Pinned     bool    `json:"pinned"`   // ferry pin or the manifest: kept local, filled first
	Paused     bool    `json:"paused"`   // ferry pause, cancel or evict: no background fill
	Open       int     `json:"open"`     // open handles
	Restarts   int     `json:"restarts"` // times the remote changed and the file was refetched
	Fetched    int64   `json:"fetched"`  // bytes received since the mount
	Error      string  `json:"error,omitempty"`
}

// Upload is one file of the outbox.
type Upload struct {
	Path  string `json:"path"`  // mount-relative (outbox dir included)
	URL   string `json:"url"`   // where it goes
	State string `json:"state"` // writing, queued, uploading, sent, failed
	Sent  int64  `json:"sent"`  // bytes the server has taken in the current or last attempt
	Size  int64  `json:"size"`
	Error string `json:"error,omitempty"`
}

// Cache is the cache directory's totals.
type Cache struct {
	LocalBytes   int64 `json:"local_bytes"`
	Limit        int64 `json:"limit"` // most bytes of blocks it may hold now
	PinnedBytes  int64 `json:"pinned_bytes"`
	EvictedBytes int64 `json:"evicted_bytes"` // since the mount
	DiskFull     bool  `json:"disk_full"`
}

// Query narrows a status request.
type Query struct {
	// Paths keeps only these mount-relative paths and what lies below
	// them; empty: everything.
	Paths []string
	// Active keeps only transfers that are not complete, and uploads that
	// are not sent.
	Active bool
	// NoFiles leaves Transfers and Uploads empty (totals only).
	NoFiles bool
}

// Op is a run-time action on files (`ferry pause` and the others).
type Op string

// The operations of POST /v1/files/OP.
const (
	OpPause    Op = "pause"    // hold the background transfer; the running request finishes
	OpResume   Op = "resume"   // continue it; retry a failed file or upload
	OpCancel   Op = "cancel"   // stop the background transfer at once, keep what is local
	OpPriority Op = "priority" // set Request.Priority
	OpPin      Op = "pin"      // fetch whole now and never evict (Unpin: undo)
	OpEvict    Op = "evict"    // drop the local copy; hold the background transfer
)

// Ops lists every Op, in the order `ferry help` shows them.
var Ops = []Op{OpPause, OpResume, OpCancel, OpPriority, OpPin, OpEvict}

// Request is the body of POST /v1/files/OP.
type Request struct {
	Paths    []string `json:"paths"`              // mount-relative; "" or "." is the whole mount
	Priority string   `json:"priority,omitempty"` // OpPriority: foreground, high, normal, low
	Unpin    bool     `json:"unpin,omitempty"`    // OpPin: remove the pin instead
	// Wait makes OpPin return only once the files are complete (or
	// failed); without it the fill runs on in the mount.
	Wait bool `json:"wait,omitempty"`
}

// Result is the outcome for one requested path.
type Result struct {
	Path  string `json:"path"`
	Files int    `json:"files"` // how many files the path named (a directory names many)
	Error string `json:"error,omitempty"`
}

// Response is the body of the answer to POST /v1/files/OP.
type Response struct {
	Results []Result `json:"results"`
}

// errorBody is the body of every 4xx and 5xx answer.
type errorBody struct {
	Error string `json:"error"`
}
