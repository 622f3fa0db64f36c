package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"ferry/fetcher"
	"ferry/fs"
	"ferry/manifest"
)

// mountOptions are the flags of `ferry mount`.
type mountOptions struct {
	cacheDir     string
	blockSize    string
	maxConns     int
	readTimeout  time.Duration
	noBackground bool
	daemon       bool
	logLevel     string
	logFormat    string
	allowOther   bool
	outboxKeep   bool
	cacheMaxSize string
	cacheMinFree string
	bwlimit      string
	perHost      int
	onComplete   string
}

// AddFlags registers the flags; their names are part of the contract
// (SPEC.md).
func (o *mountOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.cacheDir, "cache-dir", "", "cache directory (default $XDG_CACHE_HOME/ferry/NAME, NAME derived from the manifest's absolute path)")
	f.StringVar(&o.blockSize, "block-size", "64K", "block size of new cache records: a power of two from 64K to 64M (K, M, G and KiB, MiB, GiB are powers of 1024)")
	f.IntVar(&o.maxConns, "max-conns", 8, "HTTP connections to origins, in all (1-256)")
	f.DurationVar(&o.readTimeout, "read-timeout", 0, "how long a read waits for missing bytes before failing with EIO, e.g. 30s (0: no limit)")
	f.BoolVar(&o.noBackground, "no-background", false, "fetch only what is read; no background fill")
	f.BoolVar(&o.daemon, "daemon", false, "run in the background; return once the mount is live (logs go to CACHE_DIR/ferry.log)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text (key=value lines) or json (one object per line); a repeating warning is logged at most 10 times a minute")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users access the mount (non-root needs user_allow_other in /etc/fuse.conf)")
	f.BoolVar(&o.outboxKeep, "outbox-keep", false, "keep outbox files once sent (user.ferry.state \"sent\") instead of removing them")
	f.StringVar(&o.cacheMaxSize, "cache-max-size", "0", "most bytes of remote data the cache keeps, e.g. 20G; least recently used blocks are evicted, pinned files never (0: no limit but the disk's)")
	f.StringVar(&o.bwlimit, "bwlimit", "", "limit background fill (never reads a program waits on), in bytes per second: 10M, or a time table like \"08:00,1M 18:00,off\"")
	f.IntVar(&o.perHost, "max-conns-per-host", 0, "connections to any one origin host (0: --max-conns)")
	f.StringVar(&o.onComplete, "on-complete", "", "shell command run for each file that completes or fails, downloads and uploads; it gets FERRY_EVENT, FERRY_PATH, FERRY_STATE, FERRY_SIZE, FERRY_URL, FERRY_ERROR in its environment")
	f.StringVar(&o.cacheMinFree, "cache-min-free", "0", "free space the cache leaves on its file system, e.g. 1G; blocks are evicted rather than take it (0: none)")
}

// validated is a checked mountOptions.
type validated struct {
	blockSize    int64
	level        slog.Level
	cacheMaxSize int64
	cacheMinFree int64
	bandwidth    fetcher.Bandwidth
}

func (o *mountOptions) validate() (validated, error) {
	var v validated
	bs, err := parseSize(o.blockSize)
	if err != nil {
		return v, usagef("mount", "--block-size: %v", err)
	}
	if bs < 64<<10 || bs > 64<<20 || bs&(bs-1) != 0 {
		return v, usagef("mount", "--block-size %s: want a power of two from 64K to 64M", o.blockSize)
	}
	v.blockSize = bs
	if o.maxConns < 1 || o.maxConns > 256 {
		return v, usagef("mount", "--max-conns %d: want 1 to 256", o.maxConns)
	}
	if o.readTimeout < 0 {
		return v, usagef("mount", "--read-timeout %v: must not be negative", o.readTimeout)
	}
	if v.level, err = parseLevel(o.logLevel); err != nil {
		return v, usagef("mount", "--log-level: %v", err)
	}
	if _, err := newLogger(io.Discard, v.level, o.logFormat); err != nil {
		return v, usagef("mount", "--log-format: %v", err)
	}
	if v.cacheMaxSize, err = parseSize(o.cacheMaxSize); err != nil {
		return v, usagef("mount", "--cache-max-size: %v", err)
	}
	if v.cacheMaxSize != 0 && v.cacheMaxSize < 2*v.blockSize {
		return v, usagef("mount", "--cache-max-size %s: want 0 (no limit) or at least two blocks (--block-size %s)", o.cacheMaxSize, o.blockSize)
	}
	if v.cacheMinFree, err = parseSize(o.cacheMinFree); err != nil {
		return v, usagef("mount", "--cache-min-free: %v", err)
	}
	if v.bandwidth, err = fetcher.ParseBandwidth(o.bwlimit); err != nil {
		return v, usagef("mount", "--bwlimit: %v", err)
	}
	if o.perHost < 0 || o.perHost > o.maxConns {
		return v, usagef("mount", "--max-conns-per-host %d: want 0 to --max-conns (%d)", o.perHost, o.maxConns)
	}
	return v, nil
}

func mountCommand() *command {
	return &command{
		name:    "mount",
		args:    "MANIFEST MOUNTPOINT",
		summary: "mount a manifest (foreground, or --daemon)",
		detail: `Mount the files of MANIFEST (JSON, optionally .gz or .zst) read-only at
MOUNTPOINT. Files are fetched on demand, and in the background unless
--no-background. ferry stays in the foreground until the mount is unmounted
(ferry unmount, umount, fusermount3 -u) or it gets SIGINT or SIGTERM; then it
unmounts and exits 0. With --daemon it returns as soon as the mount is live.
'mount -t fuse.ferry MANIFEST MOUNTPOINT -o cache_dir=DIR,...' and fstab
lines of type fuse.ferry do the same (options are these flags, with _ for -;
see the README, "Mounting at boot").`,
		example: "  ferry mount --daemon --max-conns 16 data.json /mnt/data",
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			o := &mountOptions{}
			o.AddFlags(f)
			return func(ctx context.Context, e *env, args []string) error {
				return runMountCommand(ctx, e, o, args)
			}
		},
	}
}

func runMountCommand(ctx context.Context, e *env, o *mountOptions, args []string) error {
	if len(args) != 2 {
		return usagef("mount", "want MANIFEST and MOUNTPOINT, got %d argument(s)", len(args))
	}
	v, err := o.validate()
	if err != nil {
		return err
	}
	manifestPath, mountpoint := args[0], args[1]
	cacheDir := o.cacheDir
	if cacheDir == "" {
		if cacheDir, err = defaultCacheDir(manifestPath); err != nil {
			return err
		}
	}
	// A daemon leaves its working directory once the mount is live.
	if cacheDir, err = filepath.Abs(cacheDir); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	if o.daemon {
		if fd, ok := daemonReadyFD(); ok {
			return runDaemonChild(ctx, fd, func(ready func()) error {
				return mountForeground(ctx, e.stderr, o, v, cacheDir, manifestPath, mountpoint, ready)
			})
		}
		return startDaemon(ctx, e, cacheDir, mountpoint)
	}
	return mountForeground(ctx, e.stderr, o, v, cacheDir, manifestPath, mountpoint, func() {})
}

// mountForeground mounts, calls ready once the mount is live, and serves
// until the mount is unmounted from outside or ctx ends (a signal); then it
// unmounts and closes everything.
func mountForeground(ctx context.Context, logw io.Writer, o *mountOptions, v validated,
	cacheDir, manifestPath, mountpoint string, ready func()) error {
	raiseProcs()
	log, err := newLogger(logw, v.level, o.logFormat)
	if err != nil {
		return usagef("mount", "--log-format: %v", err)
	}
	m, err := manifest.Open(manifestPath, os.LookupEnv)
	if err != nil {
		return &manifestError{err}
	}
	var hooks *hookRunner
	var onDownload func(fetcher.Info)
	var onUpload func(path, state string, err error)
	if o.onComplete != "" {
		abs, err := filepath.Abs(mountpoint)
		if err != nil {
			return fmt.Errorf("mountpoint: %w", err)
		}
		hooks = newHookRunner(o.onComplete, abs, log)
		defer hooks.close()
		onDownload = func(i fetcher.Info) {
			hooks.send(hookEvent{kind: "download", path: i.Path, state: string(i.State), size: i.Size, url: i.URL, err: i.Err})
		}
		onUpload = func(path, state string, err error) {
			hooks.send(hookEvent{kind: "upload", path: path, state: state, size: -1, err: err})
		}
	}
	mnt, err := fs.MountContext(ctx, mountpoint, m, fs.Options{
		OnDownloadDone:  onDownload,
		OnUploadDone:    onUpload,
		Bandwidth:       v.bandwidth,
		MaxConnsPerHost: o.perHost,
		CacheDir:        cacheDir,
		BlockSize:       v.blockSize,
		MaxConns:        o.maxConns,
		Background:      !o.noBackground,
		ReadTimeout:     o.readTimeout,
		AllowOther:      o.allowOther,
		OutboxKeep:      o.outboxKeep,
		Logger:          log,
		Debug:           v.level < slog.LevelDebug,
		// Capacity of the cache (cache/space.go).
		CacheMaxSize: v.cacheMaxSize,
		CacheMinFree: v.cacheMinFree,
	})
	if err != nil {
		return err
	}
	ready()
	unmounted := make(chan struct{})
	go func() {
		mnt.Wait()
		close(unmounted)
	}()
	select {
	case <-ctx.Done():
		log.Info("ferry: signal received, unmounting", "mountpoint", mnt.Dir())
	case <-unmounted:
		log.Info("ferry: unmounted", "mountpoint", mnt.Dir())
	}
	err = mnt.Close()
	<-unmounted
	return err
}

// defaultCacheDir is $XDG_CACHE_HOME/ferry/NAME (or ~/.cache/ferry/NAME),
// where NAME is the manifest's base name and a digest of its absolute path,
// so two manifests never share a cache and one manifest always finds its own.
func defaultCacheDir(manifestPath string) (string, error) {
	abs, err := filepath.Abs(manifestPath)
	if err != nil {
		return "", fmt.Errorf("manifest path: %w", err)
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory: set --cache-dir or $XDG_CACHE_HOME (%w)", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "ferry", cacheName(abs)), nil
}

// cacheName is "NAME-DIGEST": the manifest's base name without extensions,
// and 12 hex digits of the SHA-256 of its absolute path.
func cacheName(absManifest string) string {
	name := filepath.Base(absManifest)
	for _, ext := range []string{".gz", ".zst", ".json"} {
		name = strings.TrimSuffix(name, ext)
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r < ' ' {
			return '_'
		}
		return r
	}, name)
	if name == "" || name == "." || name == ".." {
		name = "manifest"
	}
	sum := sha256.Sum256([]byte(absManifest))
	return name + "-" + hex.EncodeToString(sum[:6])
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "trace":
		// debug plus every FUSE request
		return slog.LevelDebug - 4, nil
	}
	return 0, errors.New("want debug, info, warn or error (trace also logs every FUSE request)")
}
