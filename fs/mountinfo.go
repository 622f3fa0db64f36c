package fs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	dev        string // major:minor
	mountpoint string
	fstype     string
	source     string
}

// findMount returns the last (topmost) entry of /proc/self/mountinfo
// mounted at dir, which must be absolute and clean.
func findMount(dir string) (mountEntry, bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false, fmt.Errorf("fs: %w", err)
	}
	defer f.Close()
	var found mountEntry
	ok := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		e, good := parseMountinfoLine(sc.Text())
		if good && e.mountpoint == dir {
			found, ok = e, true
		}
	}
	if err := sc.Err(); err != nil {
		return mountEntry{}, false, fmt.Errorf("fs: reading mountinfo: %w", err)
	}
	return found, ok, nil
}

// parseMountinfoLine parses "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS" (proc(5)).
func parseMountinfoLine(line string) (mountEntry, bool) {
	fields := strings.Fields(line)
	if len(fields) < 10 {
		return mountEntry{}, false
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(fields) {
		return mountEntry{}, false
	}
	return mountEntry{
		dev:        fields[2],
		mountpoint: unescapeMountinfo(fields[4]),
		fstype:     fields[sep+1],
		source:     unescapeMountinfo(fields[sep+2]),
	}, true
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) that the
// kernel writes for space, tab, newline and backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// IsFerryMount reports whether dir is the mountpoint of a ferry mount (a
// FUSE mount named "ferry") in this process's mount namespace.
func IsFerryMount(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, fmt.Errorf("fs: %w", err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	e, ok, err := findMount(abs)
	if err != nil || !ok {
		return false, err
	}
	return e.fstype == "fuse."+fsName, nil
}

// Unmount unmounts the ferry mount at dir, as `ferry unmount` does: with
// umount(2) as root, with fusermount3 -u otherwise. The process serving the
// mount then closes its cache and exits.
func Unmount(dir string) error {
	ok, err := IsFerryMount(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("fs: %s is not a ferry mount", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("fs: %w", err)
	}
	err = syscall.Unmount(abs, 0)
	if errors.Is(err, syscall.EPERM) && os.Geteuid() != 0 {
		out, ferr := exec.Command("fusermount3", "-u", abs).CombinedOutput()
		if ferr != nil {
			return fmt.Errorf("fs: unmount %s: fusermount3: %v: %s", abs, ferr, bytes.TrimSpace(out))
		}
		return nil
	}
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("fs: unmount %s: busy: a process has a file open or its working directory in the mount (umount -l detaches it anyway)", abs)
	}
	if err != nil {
		return fmt.Errorf("fs: unmount %s: %w", abs, err)
	}
	return nil
}
