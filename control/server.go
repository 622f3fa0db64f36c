package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is what the server controls; *fs.Mounted implements it. Its methods
// are called concurrently.
type Mount interface {
	// Status returns a snapshot of the mount's transfers and uploads.
	Status(q Query) Status
	// Apply runs op on each path of req (mount-relative, cleaned, "" for
	// the whole mount) and returns one Result per path, in order. It
	// returns once the action took effect; for OpPin with Wait, once the
	// files are complete, failed, or ctx ended.
	Apply(ctx context.Context, op Op, req Request) []Result
}

// Options configure Listen.
type Options struct {
	Logger *slog.Logger // nil discards
}

// Server serves a Mount's control API on a unix socket. Must call Close.
type Server struct {
	path   string
	m      Mount
	log    *slog.Logger
	l      *net.UnixListener
	srv    *http.Server
	ctx    context.Context // request contexts derive from it; cancelled by Close
	cancel context.CancelFunc
	served chan struct{} // closed when Serve returned

	// mu guards closed; handlers counts the handlers running. A handler
	// starts only while closed is false, so Close can wait for them all.
	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Listen creates the control socket at path (mode 0600, see listen) and
// serves m on it until Close. Only processes of this process's effective
// user may talk to it: others are disconnected at once.
func Listen(path string, m Mount, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := listen(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{path: path, m: m, log: log, l: l, ctx: ctx, cancel: cancel, served: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("POST /v1/files/{op}", s.handleFiles)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	s.srv = &http.Server{
		Handler:           s.track(mux),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(s.served)
		s.srv.Serve(peerListener{UnixListener: l, uid: os.Geteuid(), log: log})
	}()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops accepting, cancels the requests in flight (a pin waiting for
// its files stops waiting), waits for every handler to return and removes
// the socket. Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		err := s.srv.Close()
		<-s.served
		s.handlers.Wait()
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("control: close: %w", err)
		}
	})
	return s.closeErr
}

// track counts the running handlers and refuses new ones once closing.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			writeError(w, http.StatusServiceUnavailable, "the mount is shutting down")
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	q := Query{Active: isTrue(r.FormValue("active")), NoFiles: r.FormValue("files") == "0"}
	for _, p := range r.URL.Query()["path"] {
		c, err := CleanPath(p)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		q.Paths = append(q.Paths, c)
	}
	writeJSON(w, s.m.Status(q))
}

func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	op := Op(r.PathValue("op"))
	if !slices.Contains(Ops, op) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown operation %q", op))
		return
	}
	var req Request
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return
	}
	if len(req.Paths) == 0 {
		writeError(w, http.StatusBadRequest, "no paths")
		return
	}
	for i, p := range req.Paths {
		c, err := CleanPath(p)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		req.Paths[i] = c
	}
	s.log.Info("control: "+string(op), "paths", req.Paths, "priority", req.Priority, "unpin", req.Unpin, "wait", req.Wait)
	writeJSON(w, Response{Results: s.m.Apply(r.Context(), op, req)})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	WriteMetrics(w, s.m.Status(Query{}))
}

// CleanPath makes p a clean mount-relative path ("" for the whole mount):
// slashes are trimmed and "." segments dropped; ".." is refused.
func CleanPath(p string) (string, error) {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("path %q: \"..\" is not allowed", p)
		}
	}
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	return c, nil
}

func isTrue(v string) bool { return v == "1" || v == "true" }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// peerListener accepts only connections from processes of user uid
// (SO_PEERCRED); the socket's mode already keeps others out, except root.
type peerListener struct {
	*net.UnixListener
	uid int
	log *slog.Logger
}

func (l peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil && int(cred.Uid) == l.uid {
			return c, nil
		}
		if err != nil {
			l.log.Warn("control: refused a connection: cannot tell its user", "err", err)
		} else {
			l.log.Warn("control: refused a connection of another user", "uid", cred.Uid, "pid", cred.Pid)
		}
		c.Close()
	}
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	return cred, err
}
