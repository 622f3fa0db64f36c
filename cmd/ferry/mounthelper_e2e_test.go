package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	ferryfs "ferry/fs"
	"ferry/origin"
)

// helperFixture is a manifest of one file on a new origin, a mountpoint and
// a cache directory, for mounts made by mount(8).
type helperFixture struct {
	manifest, mnt, cacheDir string
	want                    []byte // the file's bytes
}

func newHelperFixture(t *testing.T) *helperFixture {
	t.Helper()
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("mount(8) with a helper needs root here")
	}
	requireTool(t, "mount")
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	srv.PutGenerated("data/h.bin", 3<<20+1, 14)
	dir := t.TempDir()
	fx := &helperFixture{manifest: filepath.Join(dir, "m.json"), mnt: filepath.Join(dir, "mnt"), cacheDir: filepath.Join(dir, "cache")}
	writeManifest(t, fx.manifest, base, map[string]int64{"data/h.bin": 3<<20 + 1})
	if err := os.Mkdir(fx.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fx.want = make([]byte, 3<<20+1)
	origin.GeneratedBytes(14, 0, fx.want)
	return fx
}

// runMount runs mount(8) (or umount) with env added to the environment.
func runMount(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

// check verifies the mount made by mount(8): live, served by a daemon
// whose pid the control socket tells, with the options of the line; then
// umount(8) takes it down and the daemon exits 0.
func (fx *helperFixture) check(t *testing.T, wantOpt string) {
	t.Helper()
	if ok, err := ferryfs.IsFerryMount(fx.mnt); err != nil || !ok {
		t.Fatalf("no ferry mount at %s after mount returned (%v)", fx.mnt, err)
	}
	st := statusOf(t, fx.mnt)
	pid := st.PID
	t.Cleanup(func() {
		if ok, _ := ferryfs.IsFerryMount(fx.mnt); ok {
			syscall.Unmount(fx.mnt, syscall.MNT_DETACH)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	})
	if st.CacheDir != fx.cacheDir {
		t.Errorf("cache_dir %q, want %q from the options", st.CacheDir, fx.cacheDir)
	}
	if opts := superOptions(t, fx.mnt); !strings.Contains(opts, wantOpt) {
		t.Errorf("mount options %q lack %q", opts, wantOpt)
	}
	got, err := os.ReadFile(filepath.Join(fx.mnt, "data/h.bin"))
	if err != nil || string(got) != string(fx.want) {
		t.Errorf("reading through the mount: %v", err)
	}
	runMount(t, nil, "umount", fx.mnt)
	if ws := waitExit(t, pid); !ws.Exited() || ws.ExitStatus() != 0 {
		log, _ := os.ReadFile(filepath.Join(fx.cacheDir, "ferry.log"))
		t.Errorf("daemon ended with %v; log:\n%s", ws, log)
	}
	assertNotMounted(t, fx.mnt)
}

// superOptions returns the super options of the mount at dir (mountinfo's
// last field: allow_other and the like).
func superOptions(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == dir {
			opts = fields[len(fields)-1]
		}
	}
	return opts
}

// installLink makes link a symbolic link to target for the rest of the
// test, or skips the test when link exists already (not ours to replace).
// Links outside the test's directories are global: the caller holds
// helperLock.
func installLink(t *testing.T, target, link string) {
	t.Helper()
	if _, err := os.Lstat(link); err == nil {
		t.Skipf("%s exists already: not replacing it", link)
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot install %s: %v", link, err)
	}
	t.Cleanup(func() { os.Remove(link) })
}

// helperLock serializes the tests of every test process that install
// links in /sbin or /usr/local/bin, until the test ends.
func helperLock(t *testing.T) {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "ferry-mount-helper-test.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
}

// mountEnv is the environment mount(8) runs with in the tests: a PATH
// without the test binary (mount(8) gives helpers no PATH anyway).
var mountEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// TestE2EFstabLine: an fstab line of type fuse.ferry, mounted with
// `mount -T FSTAB MOUNTPOINT` through the helper a user installs with
// ln -s $(command -v ferry) /sbin/mount.fuse.ferry, and unmounted with
// umount.
func TestE2EFstabLine(t *testing.T) {
	fx := newHelperFixture(t)
	helperLock(t)
	installLink(t, ferryBinary(t), "/sbin/mount.fuse.ferry")
	fstab := filepath.Join(t.TempDir(), "fstab")
	line := fmt.Sprintf("%s %s fuse.ferry noauto,cache_dir=%s,allow_other,max_conns=4,log_level=debug,x-systemd.automount,_netdev 0 0\n",
		fx.manifest, fx.mnt, fx.cacheDir)
	if err := os.WriteFile(fstab, []byte("# a test fstab\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	runMount(t, mountEnv, "mount", "-T", fstab, fx.mnt)
	fx.check(t, "allow_other")
}

// TestE2EMountThroughMountFuse: without /sbin/mount.fuse.ferry, mount(8)
// runs fuse3's mount.fuse, which runs `ferry` from the default PATH
// (here /usr/local/bin/ferry).
func TestE2EMountThroughMountFuse(t *testing.T) {
	fx := newHelperFixture(t)
	if _, err := os.Stat("/sbin/mount.fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("fuse3's /sbin/mount.fuse is required under CI=true: %v", err)
		}
		t.Skipf("skipping: no /sbin/mount.fuse (fuse3): %v", err)
	}
	helperLock(t)
	if _, err := os.Lstat("/sbin/mount.fuse.ferry"); err == nil {
		t.Skip("/sbin/mount.fuse.ferry exists: mount(8) would not take the mount.fuse path")
	}
	installLink(t, ferryBinary(t), "/usr/local/bin/ferry")
	runMount(t, mountEnv, "mount", "-t", "fuse.ferry",
		"-o", "cache_dir="+fx.cacheDir+",no_background,read_timeout=30s,nosuid,nodev", fx.manifest, fx.mnt)
	fx.check(t, "rw")
}
