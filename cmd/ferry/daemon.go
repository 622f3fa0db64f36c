package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// readyFDEnv names the descriptor on which a daemon child reports: one line,
// "ready" once the mount is live, or "error CODE MESSAGE" when it failed.
const readyFDEnv = "FERRY_DAEMON_READY_FD"

// daemonReadyFD returns the report pipe when this process is a daemon child.
func daemonReadyFD() (*os.File, bool) {
	v := os.Getenv(readyFDEnv)
	if v == "" {
		return nil, false
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, false
	}
	return os.NewFile(uintptr(fd), "ferry-ready"), true
}

// runDaemonChild runs serve, reporting "ready" on pipe when serve calls
// ready, or the error that ended serve before that.
func runDaemonChild(ctx context.Context, pipe *os.File, serve func(ready func()) error) error {
	reported := false
	err := serve(func() {
		fmt.Fprintln(pipe, "ready")
		pipe.Close()
		reported = true
		// Do not keep the directory ferry was started in busy.
		os.Chdir("/")
	})
	if !reported {
		if err == nil {
			err = errors.New("mount ended before it was live")
		}
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		fmt.Fprintf(pipe, "error %d %s\n", classify(err), msg)
		pipe.Close()
	}
	return err
}

// startDaemon starts this program again, detached (new session, standard
// input from /dev/null, output to CACHE_DIR/ferry.log), with the same
// arguments, and waits for its report. It returns nil only once the child
// said the mount is live; a signal meanwhile is passed on to the child.
func startDaemon(ctx context.Context, e *env, cacheDir, mountpoint string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return fmt.Errorf("daemon: cache directory: %w", err)
	}
	logPath := filepath.Join(cacheDir, "ferry.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon: log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, e.args...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
		line <- strings.TrimSuffix(s, "\n")
	}()
	var report string
	select {
	case report = <-line:
	case <-ctx.Done():
		// The child has its own session: pass the signal on.
		cmd.Process.Signal(syscall.SIGTERM)
		report = <-line
		if report == "ready" {
			cmd.Wait() // it unmounts on the signal
			return fmt.Errorf("daemon: interrupted")
		}
	}
	switch {
	case report == "ready":
		fmt.Fprintf(e.stderr, "ferry: mounted at %s (pid %d, log %s)\n", mountpoint, cmd.Process.Pid, logPath)
		return cmd.Process.Release()
	case strings.HasPrefix(report, "error "):
		cmd.Wait()
		codeStr, msg, _ := strings.Cut(strings.TrimPrefix(report, "error "), " ")
		code, err := strconv.Atoi(codeStr)
		if err != nil || code <= 0 {
			code = exitFailure
		}
		return &codedError{code: code, msg: msg}
	}
	werr := cmd.Wait()
	return fmt.Errorf("daemon: the mount process ended before the mount was live (%v); see %s", werr, logPath)
}
