package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"ferry/manifest"
)

// manifestOptions are the flags of `ferry manifest`.
type manifestOptions struct {
	sha256   bool
	parallel int
	timeout  time.Duration
}

func manifestCommand() *command {
	return &command{
		name:    "manifest",
		args:    "URL... | -",
		summary: "print a manifest for URLs (sizes and dates from HEAD)",
		detail: `Print a manifest (JSON, one file per line) for the URLs, in their order.
Each URL is asked with HEAD: the size comes from Content-Length (or, when the
server refuses HEAD, from a one-byte range request) and the mtime from
Last-Modified. The manifest has no ETag field: the mount pins the ETag the
first response carries. A file's path is the URL's last path segment, made
unique with -2, -3... before the extension. "-" reads more URLs from
standard input, one per line (blank lines and lines starting with # are
skipped). Nothing is printed unless every URL answered.`,
		example: "  ferry manifest https://example.org/a.iso https://example.org/b.iso > m.json\n  ferry manifest --sha256 - < urls.txt > m.json",
		flags: func(f *pflag.FlagSet) func(context.Context, *env, []string) error {
			o := &manifestOptions{}
			f.BoolVar(&o.sha256, "sha256", false, "download every file and write its SHA-256 (and exact size)")
			f.IntVar(&o.parallel, "parallel", 8, "requests at once (1-64)")
			f.DurationVar(&o.timeout, "timeout", 30*time.Second, "limit for one HEAD request; with --sha256, for a download to stall")
			return func(ctx context.Context, e *env, args []string) error {
				if o.parallel < 1 || o.parallel > 64 {
					return usagef("manifest", "--parallel %d: want 1 to 64", o.parallel)
				}
				if o.timeout <= 0 {
					return usagef("manifest", "--timeout %v: must be positive", o.timeout)
				}
				return runManifest(ctx, e, o, args)
			}
		},
	}
}

func runManifest(ctx context.Context, e *env, o *manifestOptions, args []string) error {
	if len(args) == 0 {
		return usagef("manifest", "want at least one URL (or - to read them from standard input)")
	}
	urls, err := manifestURLs(args, os.Stdin)
	if err != nil {
		return err
	}
	files := make([]manifest.File, len(urls))
	errs := make([]error, len(urls))
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableCompression: true,
		MaxIdleConnsPerHost: o.parallel, ResponseHeaderTimeout: o.timeout}}
	defer client.CloseIdleConnections()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.parallel)
	for i, u := range urls {
		g.Go(func() error {
			files[i], errs[i] = describeURL(gctx, client, u, o)
			return nil
		})
	}
	g.Wait()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			fmt.Fprintf(e.stderr, "ferry: %s: %v\n", urls[i], err)
		}
	}
	if failed > 0 {
		return &codedError{code: exitFailure, msg: fmt.Sprintf("%d of %d URL(s) failed; no manifest written", failed, len(urls))}
	}
	uniquePaths(files)
	out, err := manifest.Format(&manifest.Manifest{Files: files})
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	_, err = e.stdout.Write(out)
	return err
}

// manifestURLs returns the URLs of args, "-" replaced by the lines of in.
// Each must be an absolute http or https URL.
func manifestURLs(args []string, in io.Reader) ([]string, error) {
	var out []string
	add := func(s, where string) error {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("manifest", "%s%q is not an http or https URL", where, s)
		}
		out = append(out, s)
		return nil
	}
	stdinRead := false
	for _, a := range args {
		if a != "-" {
			if err := add(a, ""); err != nil {
				return nil, err
			}
			continue
		}
		if stdinRead {
			continue
		}
		stdinRead = true
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(line, fmt.Sprintf("standard input:%d: ", n)); err != nil {
				return nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading URLs from standard input: %w", err)
		}
	}
	if len(out) == 0 {
		return nil, usagef("manifest", "no URLs given")
	}
	return out, nil
}

// describeURL asks the server about one URL: size and mtime from HEAD (a
// one-byte ranged GET when HEAD is refused), or everything from a GET
// with --sha256.
func describeURL(ctx context.Context, c *http.Client, u string, o *manifestOptions) (manifest.File, error) {
	f := manifest.File{Path: baseName(u), URL: u, Size: -1, Priority: manifest.Normal}
	if o.sha256 {
		return f, hashURL(ctx, c, &f, o.timeout)
	}
	hctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	resp, err := request(hctx, c, http.MethodHead, u, "")
	if err != nil {
		return f, err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		f.Size = resp.ContentLength
	case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented:
		if resp, err = request(hctx, c, http.MethodGet, u, "bytes=0-0"); err != nil {
			return f, err
		}
		resp.Body.Close()
		if f.Size, err = sizeFromRange(resp); err != nil {
			return f, err
		}
	default:
		return f, fmt.Errorf("HEAD: %s", resp.Status)
	}
	f.MTime = lastModified(resp)
	return f, nil
}

func request(ctx context.Context, c *http.Client, method, u, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "ferry")
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	return c.Do(req)
}

// sizeFromRange reads the total of a 206's Content-Range "bytes 0-0/SIZE"
// (or takes a 200's length).
func sizeFromRange(resp *http.Response) (int64, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.ContentLength, nil
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		_, total, ok := strings.Cut(cr, "/")
		if n, err := strconv.ParseInt(total, 10, 64); ok && err == nil && n >= 0 {
			return n, nil
		}
		return -1, fmt.Errorf("GET: Content-Range %q names no size", cr)
	}
	return -1, fmt.Errorf("HEAD refused and GET: %s", resp.Status)
}

// hashURL downloads u whole and fills f's size, SHA-256 and mtime. A body
// that sends nothing for stall fails.
func hashURL(ctx context.Context, c *http.Client, f *manifest.File, stall time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := request(ctx, c, http.MethodGet, f.URL, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}
	watchdog := time.AfterFunc(stall, cancel)
	defer watchdog.Stop()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 {
			watchdog.Reset(stall)
			h.Write(buf[:k])
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("GET: after %d bytes: %w", n, err)
		}
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("GET: %d bytes received of %d", n, resp.ContentLength)
	}
	f.Size, f.SHA256, f.MTime = n, hex.EncodeToString(h.Sum(nil)), lastModified(resp)
	return nil
}

func lastModified(resp *http.Response) time.Time {
	t, err := http.ParseTime(resp.Header.Get("Last-Modified"))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// baseName is the URL's last path segment, usable as a manifest path: the
// host name when the path has none, "_" for "." and "..", control
// characters replaced.
func baseName(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "file"
	}
	// The last segment as escaped, then unescaped: "a%2Fb" is one
	// segment, whose "/" is replaced below.
	name := path.Base(path.Clean("/" + pu.EscapedPath()))
	if un, err := url.PathUnescape(name); err == nil {
		name = un
	}
	if name == "/" || name == "." || name == "" {
		name = pu.Hostname()
	}
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	if name == "." || name == ".." || name == "" {
		name = "_" + name
	}
	return name
}

// uniquePaths makes the paths of files unique, in order: a later "a.bin"
// becomes "a-2.bin", then "a-3.bin".
func uniquePaths(files []manifest.File) {
	used := map[string]bool{}
	for i := range files {
		p := files[i].Path
		if used[p] {
			stem, ext := splitExt(p)
			for n := 2; used[p]; n++ {
				p = stem + "-" + strconv.Itoa(n) + ext
			}
		}
		used[p] = true
		files[i].Path = p
	}
}

// splitExt splits "data.tar.gz" into "data" and ".tar.gz" (a leading dot
// is part of the stem).
func splitExt(p string) (stem, ext string) {
	if i := strings.Index(p[1:], "."); i >= 0 {
		return p[:i+1], p[i+1:]
	}
	return p, ""
}
