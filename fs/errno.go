package fs

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"syscall"

	"ferry/cache"
	"ferry/fetcher"
)

// toErrno translates err into the errno a FUSE operation answers. Known
// errors map to specific errnos; anything else is logged with op and path
// before EIO, so an operator can see why a read failed.
func toErrno(log *slog.Logger, op, path string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, context.Canceled):
		// The caller was interrupted (go-fuse cancels the request
		// context); fs/api.go "Interrupts" asks for EINTR.
		return syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, fetcher.ErrTimeout):
		log.Warn("fs: read timed out", "op", op, "path", path, "err", err)
		return syscall.EIO
	case errors.Is(err, fetcher.ErrClosed), errors.Is(err, cache.ErrClosed):
		// Shutting down: the mount is going away.
		log.Debug("fs: operation during shutdown", "op", op, "path", path, "err", err)
		return syscall.EIO
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.As(err, &errno):
		return errno
	}
	log.Error("fs: operation failed", "op", op, "path", path, "err", err)
	return syscall.EIO
}

// quietHandler passes records on at Debug level: repeated failures of one
// file are logged once at their own level, then quietly.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}
