package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ferry/fs"
	"ferry/origin"
)

// crashFile is a generated object of the torture test.
type crashFile struct {
	path string
	size int64
	seed uint64
}

func (f crashFile) bytes(off, n int64) []byte {
	p := make([]byte, n)
	origin.GeneratedBytes(f.seed, off, p)
	return p
}

// TestE2EKill9Torture kills a real `ferry mount --daemon` with SIGKILL at
// random moments while it fills several files in the background from a
// bandwidth-capped origin (and while three readers read random ranges
// through the mount), then mounts the same cache directory again, many times.
//
// It proves, for kill -9 (the page cache survives, the process does not):
//   - every read through the mount, in every life, returns the source's
//     bytes (a read cut by the kill may fail, never return other bytes);
//   - every restart finds the unclean stop and checks the blocks committed
//     last, and none of them is corrupt (no block is marked present before
//     its bytes are written);
//   - the work done before each kill is kept: the origin sends less than
//     1.05 times the data in all;
//   - at the end every file reads whole and right, and nothing is left
//     mounted.
func TestE2EKill9Torture(t *testing.T) {
	requireFUSE(t)
	const kills = 34
	const bandwidth = 2 << 20
	files := []crashFile{
		{"a.bin", 22<<20 + 12345, 101},
		{"dir/b.bin", 20 << 20, 102},
		{"dir/c.bin", 21<<20 - 7, 103},
		{"d.bin", 23<<20 + 1, 104},
		{"e/f/g.bin", 22 << 20, 105},
		{"h.bin", 20<<20 + 999, 106},
	}
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	var total int64
	sizes := map[string]int64{}
	for _, f := range files {
		srv.PutGenerated(f.path, f.size, f.seed)
		sizes[f.path] = f.size
		total += f.size
	}
	// Filling 128 MiB takes ~64 s at this rate, more than the lives of the
	// daemon add up to (each about 1 s plus the delay before the kill): the
	// kills land while files fill. The rest is fetched at the end.
	srv.SetFaults("", origin.Faults{TotalBytesPerSec: bandwidth})
	dir := t.TempDir()
	man, mnt, cacheDir := filepath.Join(dir, "m.json"), filepath.Join(dir, "mnt"), filepath.Join(dir, "cache")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	writeManifest(t, man, base, sizes)
	args := []string{"--cache-dir", cacheDir, "--block-size", "64K", "--max-conns", "3"}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	var reads, failedReads atomic.Int64
	midFill := 0 // kills before the origin had sent every byte once
	for round := range kills {
		start, sentBefore := time.Now(), srv.TotalBytesSent()
		pid := mountDaemon(t, "", man, mnt, args...)
		live := time.Now()
		var killed atomic.Bool
		stop := make(chan struct{})
		var readers sync.WaitGroup
		for g := range 3 {
			readers.Go(func() {
				rng := rand.New(rand.NewPCG(seed, uint64(round*3+g)))
				readRandomly(t, mnt, files, rng, &killed, stop, &reads, &failedReads)
			})
		}
		// Most kills land mid-fill; some right after the mount went live.
		delay := time.Duration(rng.Int64N(int64(time.Second)))
		if rng.IntN(5) == 0 {
			delay /= 20
		}
		time.Sleep(delay)
		killed.Store(true)
		if srv.TotalBytesSent() < total {
			midFill++
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ws := waitExit(t, pid)
		close(stop)
		readers.Wait()
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: the daemon ended with %v before the kill\n%s", round, ws, logTail(cacheDir))
		}
		detachDeadMount(t, mnt)
		t.Logf("round %d: mount took %v, killed after %v; origin sent %d bytes", round,
			live.Sub(start).Round(time.Millisecond), delay, srv.TotalBytesSent()-sentBefore)
		if t.Failed() {
			t.Fatalf("round %d failed\n%s", round, logTail(cacheDir))
		}
	}
	t.Logf("%d kills (%d mid-fill); %d reads checked (%d cut by a kill); origin sent %d bytes for %d (%.3fx) before the last mount",
		kills, midFill, reads.Load(), failedReads.Load(), srv.TotalBytesSent(), total, float64(srv.TotalBytesSent())/float64(total))
	if midFill < 30 {
		t.Errorf("only %d kills landed while files were filling, want at least 30", midFill)
	}

	// The last life: no cap, read everything, then a clean unmount.
	srv.ClearFaults()
	pid := mountDaemon(t, "", man, mnt, args...)
	for _, f := range files {
		got := fileSHA256(t, filepath.Join(mnt, f.path))
		if want := sha256.Sum256(f.bytes(0, f.size)); got != want {
			t.Errorf("%s: sha256 %x, want %x", f.path, got, want)
		}
	}
	if r := ferry(t, "unmount", mnt); r.code != 0 {
		t.Fatalf("ferry unmount: exit %d: %s", r.code, r.stderr)
	}
	if ws := waitExit(t, pid); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("daemon ended with %v", ws)
	}
	assertNotMounted(t, mnt)

	sent := srv.TotalBytesSent()
	t.Logf("origin sent %d bytes for %d bytes of files (%.3fx)", sent, total, float64(sent)/float64(total))
	// Each kill loses what arrived since the last durable commit: at the
	// origin's 2 MiB/s, about 200 KiB per kill when a commit takes 100 ms
	// (1.02-1.03x on a quiet machine), twice that when other test suites
	// slow the disk's syncs (1.066x seen). Losing the durable work of a
	// life (about 2 MiB each) would go far past 1.10x.
	if sent > total*110/100 {
		t.Errorf("origin sent %d bytes for %d bytes of files: more than 1.10x, work done before the kills was lost", sent, total)
	}
	checkRecoveryLog(t, cacheDir, kills)
}

// readRandomly reads random ranges of random files through the mount until
// stop is closed, and checks every byte that a read returned. A read may
// fail only once killed is set (the daemon is gone).
func readRandomly(t *testing.T, mnt string, files []crashFile, rng *rand.Rand, killed *atomic.Bool, stop <-chan struct{},
	reads, failedReads *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		f := files[rng.IntN(len(files))]
		off := rng.Int64N(f.size)
		n := min(1+rng.Int64N(64<<10), f.size-off)
		buf := make([]byte, n)
		got, err := preadOnce(filepath.Join(mnt, f.path), buf, off)
		if err != nil {
			if !killed.Load() {
				t.Errorf("%s: read of %d bytes at %d while the daemon was alive: %v", f.path, n, off, err)
				return
			}
			failedReads.Add(1)
			return // the mount is dead
		}
		reads.Add(1)
		if want := f.bytes(off, int64(got)); !bytes.Equal(buf[:got], want) {
			t.Errorf("%s: read of %d bytes at %d returned other bytes than the source", f.path, got, off)
			return
		}
		if int64(got) != n && !killed.Load() {
			t.Errorf("%s: short read of %d of %d bytes at %d", f.path, got, n, off)
			return
		}
	}
}

// preadOnce opens path, reads len(buf) bytes at off and closes it.
func preadOnce(path string, buf []byte, off int64) (int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	n, err := fh.ReadAt(buf, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// fileSHA256 hashes a whole file read through the mount.
func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{fh}, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// detachDeadMount removes the mount a killed daemon left behind ("Transport
// endpoint is not connected"): umount -l, through fusermount3 when not root.
func detachDeadMount(t *testing.T, mnt string) {
	t.Helper()
	err := syscall.Unmount(mnt, syscall.MNT_DETACH)
	if err != nil && os.Geteuid() != 0 {
		out, ferr := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput()
		if ferr != nil {
			err = fmt.Errorf("%v; fusermount3: %v: %s", err, ferr, out)
		} else {
			err = nil
		}
	}
	if err != nil {
		t.Fatalf("detaching the dead mount %s: %v", mnt, err)
	}
	if ok, err := fs.IsFerryMount(mnt); err != nil || ok {
		t.Fatalf("%s still mounted after detaching it (%v)", mnt, err)
	}
}

var recoveryRE = regexp.MustCompile(`cache: checked the blocks committed just before an unclean stop.* blocks=(\d+) .*dropped=(\d+)`)

// checkRecoveryLog checks the daemon log: one check of recent blocks per
// unclean stop, none of which found a corrupt block (kill -9 leaves the page
// cache intact, so a dropped block would be one marked present before its
// bytes were written), and no panic or data race in any life.
func checkRecoveryLog(t *testing.T, cacheDir string, kills int) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(cacheDir, "ferry.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"panic:", "WARNING: DATA RACE", "fatal error:"} {
		if bytes.Contains(log, []byte(bad)) {
			t.Errorf("daemon log contains %q\n%s", bad, logTail(cacheDir))
		}
	}
	ms := recoveryRE.FindAllSubmatch(log, -1)
	if len(ms) != kills {
		t.Errorf("%d checks of recent blocks in the log, want one per kill (%d)", len(ms), kills)
	}
	checked := 0
	for _, m := range ms {
		n, _ := strconv.Atoi(string(m[1]))
		checked += n
		if string(m[2]) != "0" {
			t.Errorf("a check after kill -9 dropped %s blocks: %s", m[2], m[0])
		}
	}
	t.Logf("restarts checked %d recently committed blocks in all", checked)
}

// logTail returns the end of the daemon log, for failure messages.
func logTail(cacheDir string) string {
	log, _ := os.ReadFile(filepath.Join(cacheDir, "ferry.log"))
	if len(log) > 8<<10 {
		log = log[len(log)-8<<10:]
	}
	return string(log)
}
