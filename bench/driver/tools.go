package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The data sets, as paths relative to a mount's root (every tool shows the
// same layout).
const (
	dsBig     = "big"     // big.bin, 1 GiB
	dsSmall   = "small"   // small/f0000 ... small/f0999, 64 KiB each
	dsMillion = "million" // tree/dNN/dNN/fNN.bin, 1,000,000 entries
)

// The mounting tools and the non-mount baselines (columns of the report).
const (
	toolFerry  = "ferry"
	toolBound  = "fusebound"
	toolRclone = "rclone"
	toolCurl   = "curl"   // the origin over HTTP, no file system
	toolDirect = "direct" // ferry's cached data file read directly
)

// mountTool mounts data set ds with tool on a fresh cache directory, after
// dropping the page cache (so the mount starts cold and its background
// work starts with the measurement) and the count of origin bytes.
// background is ferry's background fill (the other tools have none);
// prime primes memory (primeMemory) for the figures that write a lot of it.
func (r *runner) mountTool(tool, ds string, background, prime bool) (*mount, error) {
	if tool == toolRclone && ds == dsMillion {
		return nil, errSkipped
	}
	if err := r.dropCaches(); err != nil {
		return nil, err
	}
	if prime {
		if err := r.primeMemory(); err != nil {
			return nil, err
		}
	}
	r.originBytes()
	dir := filepath.Join(r.cfg.work, "mnt-"+tool)
	r.mu.Lock()
	r.seq++
	cache := filepath.Join(r.cfg.work, fmt.Sprintf("cache-%s-%03d", tool, r.seq))
	r.mu.Unlock()
	var m *mount
	var err error
	switch tool {
	case toolFerry:
		args := []string{r.cfg.ferry, "mount", "--cache-dir", cache}
		if !background {
			args = append(args, "--no-background")
		}
		args = append(args, filepath.Join(r.cfg.manifests, ds+".json"), dir)
		m, err = r.startMount(tool, dir, cache, true, args...)
	case toolRclone:
		m, err = r.startMount(tool, dir, cache, false, "rclone", "mount", ":http:", dir,
			"--http-url", r.cfg.base+"/", "--vfs-cache-mode", "full", "--cache-dir", cache,
			"--read-only", "--config", "/dev/null")
	case toolBound:
		src := []string{"-data", r.cfg.data}
		if ds == dsMillion {
			src = []string{"-manifest", filepath.Join(r.cfg.manifests, ds+".json")}
		}
		args := append([]string{r.cfg.fusebound}, src...)
		m, err = r.startMount(tool, dir, "", true, append(args, dir)...)
	default:
		return nil, fmt.Errorf("unknown tool %q", tool)
	}
	if m != nil && ds == dsSmall {
		// ext4 without a journal skips inodes deleted in the last 5-30 s
		// when it allocates one, each a look at the inode table: removing
		// 1,000 files just before the next round's 1,000 creates made
		// figure 5 take 0.55-0.84 s instead of 0.30-0.44 s. So those
		// cache directories go at the end of the run.
		m.keepCache = true
	}
	return m, err
}

// ferryDataFile is the data file of the one file in a ferry cache
// directory (DIR/data/<16 hex digits>, docs/on-disk-format.md).
func ferryDataFile(cache string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(cache, "data"))
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			return filepath.Join(cache, "data", e.Name()), nil
		}
	}
	return "", fmt.Errorf("no data file in %s/data", cache)
}

// originBytes returns the body bytes nginx sent since the last call (its
// access log has one number per request).
func (r *runner) originBytes() int64 {
	f, err := os.Open(r.cfg.accessLog)
	if err != nil {
		return -1
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < r.logOff {
		return -1
	}
	b := make([]byte, st.Size()-r.logOff)
	n, _ := f.ReadAt(b, r.logOff)
	// Only whole lines: a request may be half logged.
	last := strings.LastIndexByte(string(b[:n]), '\n')
	if last < 0 {
		return 0
	}
	r.logOff += int64(last + 1)
	var sum int64
	for _, line := range strings.Split(string(b[:last]), "\n") {
		if v, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil {
			sum += v
		}
	}
	return sum
}
