package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Logger gets one Debug record per request and the http.Server's own
	// error log at Debug. Nil discards.
	Logger *slog.Logger
	// MaxUploadSize caps a PUT body after content decoding; a larger body
	// gets 413. Zero means 1 GiB.
	MaxUploadSize int64
}

// Server is an HTTP origin with in-memory objects, per-path statistics and
// fault injection. It is safe for concurrent use. Create it with New, start
// it with Start or StartTest (or mount Handler elsewhere) and stop it with
// Close.
type Server struct {
	log       *slog.Logger
	maxUpload int64

	// ctx is cancelled by Close. Every wait inside a handler (latency,
	// bandwidth) selects on it, so Close never waits for a timer.
	ctx    context.Context
	cancel context.CancelFunc

	// down makes the listener drop every new connection (SetDown).
	down atomic.Bool
	// totalSent is the sum of BytesSent over all paths since ResetStats.
	totalSent atomic.Int64

	// handlers counts ServeHTTP calls in flight. Add is only called with mu
	// held and closed false, so Close's Wait never races a new Add.
	handlers sync.WaitGroup

	// mu guards every field below. It is held only for map and counter
	// updates, never during I/O or a wait.
	mu        sync.Mutex
	objects   map[string]*object
	lastMod   map[string]time.Time // newest Last-Modified per path; outlives Remove
	version   uint64               // bumped by every stored version
	stats     map[string]*pathStats
	faults    map[string]*faultRule // "" applies to paths without their own
	mutations map[string]*mutation
	tus       tusState              // tus uploads (tus.go); has its own lock
	conns     map[net.Conn]struct{} // connections net/http owns (not hijacked)
	started   bool
	closed    bool
	baseURL   string
	hs        *http.Server
	serveDone chan struct{} // closed when the accept loop returned
}

// New returns a Server that is not started yet.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxUpload := opts.MaxUploadSize
	if maxUpload <= 0 {
		maxUpload = 1 << 30
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		log:       log,
		maxUpload: maxUpload,
		ctx:       ctx,
		cancel:    cancel,
		objects:   make(map[string]*object),
		lastMod:   make(map[string]time.Time),
		stats:     make(map[string]*pathStats),
		faults:    make(map[string]*faultRule),
		mutations: make(map[string]*mutation),
		conns:     make(map[net.Conn]struct{}),
	}
}

// Start listens on 127.0.0.1 with a free port and serves in a goroutine
// until Close. It returns the base URL, "http://127.0.0.1:PORT". A Server
// starts at most once.
func (s *Server) Start() (baseURL string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("origin: Start after Close")
	}
	if s.started {
		return "", errors.New("origin: already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("origin: listen: %w", err)
	}
	s.started = true
	s.baseURL = "http://" + ln.Addr().String()
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: time.Minute,
		ConnState:         s.trackConn,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.serveDone = make(chan struct{})
	go func() {
		defer close(s.serveDone)
		// Serve returns ErrServerClosed after Close; nothing to report.
		_ = s.hs.Serve(&downListener{Listener: ln, s: s})
	}()
	s.log.Debug("origin: listening", "url", s.baseURL)
	return s.baseURL, nil
}

// Handler returns the server's handler, to mount it in another http.Server.
// The object path is the request's URL path without its leading slash; use
// http.StripPrefix to mount it under a prefix.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// Close stops the listener, closes every connection, wakes every wait and
// waits until every handler returned. Pending responses are cut off. Close
// is idempotent; the Server cannot be started again.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	hs, done := s.hs, s.serveDone
	s.mu.Unlock()

	var err error
	if hs != nil {
		// Close shuts the listener and every connection net/http still
		// owns, which unblocks writes to clients that stopped reading.
		// Hijacked connections are closed by the handler that took them.
		// It comes before cancel so that no woken handler can still answer.
		err = hs.Close()
		<-done
	}
	s.cancel()
	s.handlers.Wait()
	if err != nil {
		return fmt.Errorf("origin: close: %w", err)
	}
	return nil
}

// URL returns the address of the object at path: the base URL, a slash, and
// the path with each segment escaped. Before Start it returns the path part
// alone.
func (s *Server) URL(path string) string {
	s.mu.Lock()
	base := s.baseURL
	s.mu.Unlock()
	segs := strings.Split(cleanPath(path), "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return base + "/" + strings.Join(segs, "/")
}

// SetDown makes the server behave as if the network were gone (true) or
// back (false). While down, every connection is closed with a reset as soon
// as it is accepted, and turning it on also resets every open connection,
// idle or busy.
func (s *Server) SetDown(down bool) {
	s.down.Store(down)
	if !down {
		return
	}
	s.mu.Lock()
	open := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		resetConn(c)
	}
	s.log.Debug("origin: down", "reset", len(open))
}

// trackConn keeps the set of connections net/http owns, for SetDown.
func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
	}
}

// serveHTTP admits the request unless the server is closed, then dispatches
// by method; tus requests (tus.go) go to serveTus.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Header().Set("Connection", "close")
		http.Error(w, "origin: closed", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	ex := s.newExchange(ctx, w, r)
	defer ex.logDone()
	s.countRequest(ex.path, r)

	switch {
	case isTus(r):
		s.serveTus(ex)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.serveGet(ex)
	case r.Method == http.MethodPut:
		s.servePut(ex)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, OPTIONS, POST, PATCH")
		ex.textError(http.StatusMethodNotAllowed, "origin: method not allowed")
	}
}

// cleanPath turns a URL path or a caller's path into an object path.
func cleanPath(p string) string {
	return strings.TrimPrefix(p, "/")
}

// downListener drops connections at accept time while the server is down.
type downListener struct {
	net.Listener
	s *Server
}

func (l *downListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.s.down.Load() {
			return c, nil
		}
		resetConn(c)
	}
}
