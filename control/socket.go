package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// SocketName is the control socket's name in the cache directory.
const SocketName = "control.sock"

// XattrName is the extended attribute of a mount's root directory whose
// value is the absolute path of its control socket: how a command finds
// the socket from the mountpoint.
const XattrName = "user.ferry.control"

var (
	// ErrNotRunning: the mount is gone, or the process serving it is.
	ErrNotRunning = errors.New("control: the mount is not running")
	// ErrForeign: the control socket belongs to another user.
	ErrForeign = errors.New("control: the control socket belongs to another user")
)

// maxSunPath is the longest path bind(2) and connect(2) take (sun_path
// holds 108 bytes with the terminating NUL).
const maxSunPath = 107

// shortPath calls fn with a path naming the same file as path that fits in
// sun_path: path itself, or /proc/self/fd/N/BASE with N a descriptor of
// path's directory held open while fn runs.
func shortPath(path string, fn func(p string) error) error {
	if len(path) <= maxSunPath {
		return fn(path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	p := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path)
	if len(p) > maxSunPath {
		return fmt.Errorf("control: socket name %q is too long", filepath.Base(path))
	}
	return fn(p)
}

// listen binds a unix socket at path with mode 0600. A socket left there by
// a process that is gone is replaced; one that still answers is not.
func listen(path string) (*net.UnixListener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control: %s exists and is not a socket", path)
		}
		if c, err := dialPath(context.Background(), path); err == nil {
			c.Close()
			return nil, fmt.Errorf("control: %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: removing stale socket: %w", err)
		}
	}
	// Bound in a private directory, made 0600, then moved into place:
	// nobody else can connect at any moment, whatever the umask and the
	// mode of the directory.
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".control-")
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	var l *net.UnixListener
	err = shortPath(tmp, func(p string) error {
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	// The socket is renamed: Server.Close removes it by its final path.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return l, nil
}

// dialPath connects to the unix socket at path.
func dialPath(ctx context.Context, path string) (net.Conn, error) {
	var c net.Conn
	err := shortPath(path, func(p string) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "unix", p)
		return err
	})
	return c, err
}

// checkSocket makes sure path is a socket owned by this process's
// effective user.
func checkSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no control socket at %s", ErrNotRunning, path)
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s is not a socket", path)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("control: cannot tell the owner of %s", path)
	}
	if me := os.Geteuid(); int(sys.Uid) != me {
		return fmt.Errorf("%w: %s is owned by uid %d, not by you (uid %d)", ErrForeign, path, sys.Uid, me)
	}
	return nil
}

// SocketOf returns the control socket of the ferry mount whose root is
// mountpoint, from its user.ferry.control attribute. The attribute is read
// on another goroutine, so that a mount that hangs cannot hang the caller
// past ctx. An error wrapping ErrNotRunning means the process serving the
// mount is gone.
func SocketOf(ctx context.Context, mountpoint string) (string, error) {
	type answer struct {
		val string
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := unix.Getxattr(mountpoint, XattrName, buf)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		ch <- answer{val: string(buf[:n])}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return "", fmt.Errorf("control: %s does not answer: %w", mountpoint, ctx.Err())
	}
	switch {
	case errors.Is(a.err, unix.ENOTCONN):
		return "", fmt.Errorf("%w: its process is gone (umount -l %s or fusermount3 -uz %s removes the mount)", ErrNotRunning, mountpoint, mountpoint)
	case errors.Is(a.err, unix.ENODATA), errors.Is(a.err, unix.ENOTSUP):
		return "", fmt.Errorf("control: %s has no control socket (%s is not set: a ferry without control?)", mountpoint, XattrName)
	case a.err != nil:
		return "", fmt.Errorf("control: reading %s of %s: %w", XattrName, mountpoint, a.err)
	case !filepath.IsAbs(a.val):
		return "", fmt.Errorf("control: %s of %s is %q, not an absolute path", XattrName, mountpoint, a.val)
	}
	return a.val, nil
}
