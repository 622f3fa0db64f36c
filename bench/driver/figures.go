package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	gib       = 1 << 30
	mib       = 1 << 20
	bigSize   = gib
	smallN    = 1000
	millionN  = 1_000_000
	randIOs   = 2000
	randBlock = 4096
)

// The metrics (rows of the report).
const (
	mCold       = "cold"
	mColdOrigin = "cold-origin"
	mWarmFirst  = "warm-first"
	mWarm       = "warm"
	mIOPS       = "iops"
	mP50        = "p50"
	mP99        = "p99"
	mRandOrigin = "rand-origin"
	mTail       = "tail"
	mSmall      = "small"
	mRSS        = "rss"
	mFill       = "fill"
	mFillSync   = "fill-sync"
	mMount      = "mount"
	mFind       = "find"
	mMillionRSS = "million-rss"
	mMillionHWM = "million-hwm"
)

// dd reads path whole with 1 MiB reads in a child process and returns
// GiB/s.
func (r *runner) dd(path string) (float64, error) {
	took, _, _, err := r.command(r.cfg.stepTimeout, "dd", "if="+path, "of=/dev/null", "bs=1M")
	if err != nil {
		return 0, err
	}
	return bigSize / gib / took.Seconds(), nil
}

// figSequential measures figures 1, 2 and 6 for a mounting tool: a cold
// read of big.bin on a fresh mount, its peak RSS, a first re-read, and a
// warm re-read after it. The first read of pages just written costs more on
// this VM, whoever reads: right after ferry's cold read, the first read of
// its data file took 53.7-55.3 ms read directly and 57.4-62.9 ms through
// the mount, the next ones 48.1-52.7 ms either way (3 mounts each order).
// So figure 2 is the second re-read, and ferry's data file is read directly
// between the two, both after the first touch.
func (r *runner) figSequential(tool string, round int) {
	m, err := r.mountTool(tool, dsBig, true, true)
	if err != nil {
		r.res.fail(tool, err, mCold, mWarmFirst, mWarm, mRSS)
		return
	}
	stopped := false
	defer func() {
		if !stopped {
			r.stop(m)
		}
	}()
	path := filepath.Join(m.dir, "big.bin")
	v, err := r.dd(path)
	if err != nil {
		r.res.fail(tool, err, mCold, mWarmFirst, mWarm, mRSS)
		return
	}
	r.res.add(mCold, tool, v)
	if hwm, err := status(m.cmd.Process.Pid, "VmHWM"); err == nil {
		r.res.add(mRSS, tool, hwm)
	} else {
		r.res.fail(tool, err, mRSS)
	}
	if v, err := r.dd(path); err == nil {
		r.res.add(mWarmFirst, tool, v)
	} else {
		r.res.fail(tool, err, mWarmFirst)
	}
	if tool == toolFerry {
		if df, err := ferryDataFile(m.cache); err != nil {
			r.res.fail(toolDirect, err, mWarm)
		} else if v, err := r.dd(df); err != nil {
			r.res.fail(toolDirect, err, mWarm)
		} else {
			r.res.add(mWarm, toolDirect, v)
		}
	}
	if v, err := r.dd(path); err == nil {
		r.res.add(mWarm, tool, v)
	} else {
		r.res.fail(tool, err, mWarm)
	}
	if round == 1 {
		if _, _, _, err := r.command(r.cfg.stepTimeout, "cmp", path, filepath.Join(r.cfg.data, "big.bin")); err != nil {
			r.res.wrong(tool, "big.bin differs from the origin's: "+err.Error())
		}
	}
	// nginx logs a request when it ends: count once the mount is gone.
	r.stop(m)
	stopped = true
	r.res.add(mColdOrigin, tool, float64(r.originBytes())/mib)
}

// curlSequential is figure 1 (and the curl column of 6) for plain curl.
func (r *runner) curlSequential() {
	took, _, ps, err := r.command(r.cfg.stepTimeout, "curl", "-sS", "-o", "/dev/null", r.cfg.base+"/big.bin")
	if err != nil {
		r.res.fail(toolCurl, err, mCold, mRSS)
		return
	}
	r.res.add(mCold, toolCurl, bigSize/gib/took.Seconds())
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		r.res.add(mRSS, toolCurl, float64(ru.Maxrss)/1024)
	}
}

// fioResult is the part of fio's JSON output we read.
type fioResult struct {
	Jobs []struct {
		Read struct {
			IOPS float64 `json:"iops"`
			Clat struct {
				Percentile map[string]float64 `json:"percentile"`
			} `json:"clat_ns"`
		} `json:"read"`
	} `json:"jobs"`
}

// figRandom is figure 3: fio's cold random 4 KiB reads of big.bin on a
// fresh mount (ferry without background fill: every read is cold).
func (r *runner) figRandom(tool string) {
	m, err := r.mountTool(tool, dsBig, false, false)
	if err != nil {
		r.res.fail(tool, err, mIOPS, mP50, mP99)
		return
	}
	stopped := false
	defer func() {
		if !stopped {
			r.stop(m)
		}
	}()
	_, out, _, err := r.command(r.cfg.stepTimeout, "fio", "--name=rand", "--filename="+filepath.Join(m.dir, "big.bin"),
		"--readonly", "--rw=randread", "--bs=4k", "--size=1G", fmt.Sprintf("--number_ios=%d", randIOs),
		"--direct=0", "--ioengine=psync", "--numjobs=1", "--randrepeat=1",
		"--percentile_list=50:99", "--output-format=json")
	if err != nil {
		r.res.fail(tool, err, mIOPS, mP50, mP99)
		return
	}
	var fr fioResult
	// fio may print warnings before its JSON.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &fr); err != nil || len(fr.Jobs) != 1 {
		r.res.fail(tool, fmt.Errorf("fio output: %v", err), mIOPS, mP50, mP99)
		return
	}
	rd := fr.Jobs[0].Read
	r.res.add(mIOPS, tool, rd.IOPS)
	r.res.add(mP50, tool, rd.Clat.Percentile["50.000000"]/1e6)
	r.res.add(mP99, tool, rd.Clat.Percentile["99.000000"]/1e6)
	r.stop(m) // nginx logs a request when it ends
	stopped = true
	r.res.add(mRandOrigin, tool, float64(r.originBytes())/mib)
}

// curlRandom is figure 3 for curl: the same number of random 4 KiB range
// requests by one curl process on a kept-alive connection.
func (r *runner) curlRandom(round int) {
	var cfg strings.Builder
	rng := rand.New(rand.NewPCG(uint64(round), 7))
	for i := range randIOs {
		if i > 0 {
			cfg.WriteString("next\n") // options apply to one URL each
		}
		off := rng.Int64N(bigSize/randBlock) * randBlock
		fmt.Fprintf(&cfg, "url = \"%s/big.bin\"\nrange = \"%d-%d\"\noutput = \"/dev/null\"\nwrite-out = \"%%{time_total}\\n\"\n",
			r.cfg.base, off, off+randBlock-1)
	}
	path := filepath.Join(r.cfg.work, "curl-random.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		r.res.fail(toolCurl, err, mIOPS, mP50, mP99)
		return
	}
	took, out, _, err := r.command(r.cfg.stepTimeout, "curl", "-sS", "-K", path)
	if err != nil {
		r.res.fail(toolCurl, err, mIOPS, mP50, mP99)
		return
	}
	var lat []float64
	for _, f := range strings.Fields(string(out)) {
		if v, err := strconv.ParseFloat(f, 64); err == nil {
			lat = append(lat, v*1000)
		}
	}
	if len(lat) != randIOs {
		r.res.fail(toolCurl, fmt.Errorf("curl printed %d times, want %d", len(lat), randIOs), mIOPS, mP50, mP99)
		return
	}
	sort.Float64s(lat)
	r.res.add(mIOPS, toolCurl, randIOs/took.Seconds())
	r.res.add(mP50, toolCurl, lat[len(lat)/2])
	r.res.add(mP99, toolCurl, lat[len(lat)*99/100])
}

// figTail is figure 4: open, read the last 4 KiB of big.bin, close, on a
// fresh mount.
func (r *runner) figTail(tool string) {
	m, err := r.mountTool(tool, dsBig, false, false)
	if err != nil {
		r.res.fail(tool, err, mTail)
		return
	}
	defer r.stop(m)
	var took time.Duration
	err = r.timed(r.cfg.stepTimeout, func() error {
		buf := make([]byte, randBlock)
		start := time.Now()
		f, err := os.Open(filepath.Join(m.dir, "big.bin"))
		if err != nil {
			return err
		}
		n, err := f.ReadAt(buf, bigSize-randBlock)
		f.Close()
		took = time.Since(start)
		if n != randBlock {
			return fmt.Errorf("read %d bytes: %v", n, err)
		}
		return nil
	})
	if err != nil {
		r.res.fail(tool, err, mTail)
		return
	}
	r.res.add(mTail, tool, took.Seconds()*1000)
}

// curlTail is figure 4 for curl: one range request from a new process
// (curl's time_total: connect, request, answer).
func (r *runner) curlTail() {
	_, out, _, err := r.command(r.cfg.stepTimeout, "curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}",
		"-r", fmt.Sprintf("%d-%d", bigSize-randBlock, bigSize-1), r.cfg.base+"/big.bin")
	if err != nil {
		r.res.fail(toolCurl, err, mTail)
		return
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		r.res.fail(toolCurl, err, mTail)
		return
	}
	r.res.add(mTail, toolCurl, v*1000)
}

// figSmall is figure 5: cat of the 1,000 small files right after mount.
func (r *runner) figSmall(tool string, round int) {
	m, err := r.mountTool(tool, dsSmall, true, true)
	if err != nil {
		r.res.fail(tool, err, mSmall)
		return
	}
	defer r.stop(m)
	dir := filepath.Join(m.dir, "small")
	took, _, _, err := r.command(r.cfg.stepTimeout, "sh", "-c", `cat "$1"/* > /dev/null`, "sh", dir)
	if err != nil {
		r.res.fail(tool, err, mSmall)
		return
	}
	r.res.add(mSmall, tool, took.Seconds())
	if round == 1 {
		if _, _, _, err := r.command(r.cfg.stepTimeout, "diff", "-rq", dir, filepath.Join(r.cfg.data, "small")); err != nil {
			r.res.wrong(tool, "small files differ from the origin's: "+err.Error())
		}
	}
}

// curlSmall is figure 5 for curl: one process fetching the 1,000 URLs on a
// kept-alive connection.
func (r *runner) curlSmall() {
	var cfg strings.Builder
	for i := range smallN {
		fmt.Fprintf(&cfg, "url = \"%s/small/f%04d\"\noutput = \"/dev/null\"\n", r.cfg.base, i)
	}
	path := filepath.Join(r.cfg.work, "curl-small.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		r.res.fail(toolCurl, err, mSmall)
		return
	}
	took, _, _, err := r.command(r.cfg.stepTimeout, "curl", "-sS", "-K", path)
	if err != nil {
		r.res.fail(toolCurl, err, mSmall)
		return
	}
	r.res.add(mSmall, toolCurl, took.Seconds())
}

// figFill is figure 7 for ferry: from a live mount to a complete big.bin
// by background fill alone, watched through user.ferry.progress.
func (r *runner) figFill() {
	m, err := r.mountTool(toolFerry, dsBig, true, true)
	if err != nil {
		r.res.fail(toolFerry, err, mFill)
		return
	}
	defer r.stop(m)
	path := filepath.Join(m.dir, "big.bin")
	start := time.Now()
	var stop atomic.Bool
	err = r.timed(r.cfg.stepTimeout, func() error {
		buf := make([]byte, 64)
		done := fmt.Sprintf("%d/%d", bigSize, bigSize) // LOCAL/SIZE
		for !stop.Load() {
			n, err := syscall.Getxattr(path, "user.ferry.progress", buf)
			if err != nil {
				return fmt.Errorf("getxattr user.ferry.progress: %w", err)
			}
			if string(buf[:n]) == done {
				return nil
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	})
	stop.Store(true)
	if err != nil {
		r.res.fail(toolFerry, err, mFill)
		return
	}
	r.res.add(mFill, toolFerry, time.Since(start).Seconds())
}

// curlFill is figure 7 for curl: curl -o to a file on the disk that holds
// the cache directories, then the same plus an fsync of the file.
func (r *runner) curlFill() {
	path := filepath.Join(r.cfg.work, "curl-o.bin")
	defer os.Remove(path)
	err := r.dropCaches()
	if err == nil {
		err = r.primeMemory()
	}
	if err != nil {
		r.res.fail(toolCurl, err, mFill)
		return
	}
	took, _, _, err := r.command(r.cfg.stepTimeout, "curl", "-sS", "-o", path, r.cfg.base+"/big.bin")
	if err != nil {
		r.res.fail(toolCurl, err, mFill, mFillSync)
		return
	}
	r.res.add(mFill, toolCurl, took.Seconds())
	synced, _, _, err := r.command(r.cfg.stepTimeout, "sync", path)
	if err != nil {
		r.res.fail(toolCurl, err, mFillSync)
		return
	}
	r.res.add(mFillSync, toolCurl, (took + synced).Seconds())
}

// figMillion is figure 8: mount time, find time and RSS for the manifest
// of 1,000,000 entries (ferry without background fill).
func (r *runner) figMillion(tool string) {
	m, err := r.mountTool(tool, dsMillion, false, false)
	if err != nil {
		r.res.fail(tool, err, mMount, mFind, mMillionRSS, mMillionHWM)
		return
	}
	defer r.stop(m)
	r.res.add(mMount, tool, m.ready.Seconds())
	took, out, _, err := r.command(r.cfg.stepTimeout, "sh", "-c", `find "$1" | wc -l`, "sh", m.dir)
	if err != nil {
		r.res.fail(tool, err, mFind, mMillionRSS, mMillionHWM)
		return
	}
	// The files, tree/ and its 100 + 100*100 directories, and the root.
	if n, want := atoi(out), millionN+1+100+100*100+1; n != want {
		r.res.wrong(tool, fmt.Sprintf("find listed %d entries, want %d", n, want))
	}
	r.res.add(mFind, tool, took.Seconds())
	for metric, field := range map[string]string{mMillionRSS: "VmRSS", mMillionHWM: "VmHWM"} {
		if v, err := status(m.cmd.Process.Pid, field); err == nil {
			r.res.add(metric, tool, v)
		} else {
			r.res.fail(tool, err, metric)
		}
	}
}

func atoi(b []byte) int {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}
