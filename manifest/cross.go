package manifest

import (
	"fmt"
	"math"
	"strings"
)

// crossCheck applies the rules across entries as files arrive one by one:
// unique paths, no file that is also a directory, and an outbox directory
// that no file uses. Each problem is reported against the entry that arrives
// second, so problems come out in line order.
//
// Memory: one map entry per file, whose key shares the path string kept in
// File, and one per directory.
type crossCheck struct {
	files map[string]entry    // file path → where it is listed
	dirs  map[string]dirEntry // directory implied by a file's path → that file

	outbox     string // the outbox dir, valid if hasOutbox
	outboxLine int
	hasOutbox  bool
}

type entry struct{ idx, line int32 }

type dirEntry struct {
	path string // the file that implies the directory
	entry
}

func newCrossCheck() *crossCheck {
	return &crossCheck{files: make(map[string]entry), dirs: make(map[string]dirEntry)}
}

func clamp32(n int) int32 {
	return int32(min(max(n, 0), math.MaxInt32))
}

// where names files[idx] and its line for a message.
func (e entry) where() string {
	if e.line == 0 {
		return fmt.Sprintf("files[%d]", e.idx)
	}
	return fmt.Sprintf("files[%d] on line %d", e.idx, e.line)
}

// outboxWhere names the outbox's line for a message.
func (c *crossCheck) outboxWhere() string {
	if c.outboxLine == 0 {
		return ""
	}
	return fmt.Sprintf(" (line %d)", c.outboxLine)
}

// addFile records files[idx] with path p (already checked by checkPath) and
// returns a message if it breaks a rule.
func (c *crossCheck) addFile(p string, idx, line int) string {
	if prev, ok := c.files[p]; ok {
		return fmt.Sprintf("%q is listed twice (first as %s; want each path once)", p, prev.where())
	}
	if d, ok := c.dirs[p]; ok {
		return fmt.Sprintf("%q is a file here, but %s has the path %q, which makes it a directory (want a path that is not also a directory)", p, d.where(), d.path)
	}
	if c.hasOutbox {
		if p == c.outbox {
			return fmt.Sprintf("%q is the outbox directory%s (want files outside the outbox)", p, c.outboxWhere())
		}
		if strings.HasPrefix(p, c.outbox+"/") {
			return fmt.Sprintf("%q is inside the outbox directory %q%s (want files outside the outbox)", p, c.outbox, c.outboxWhere())
		}
		if strings.HasPrefix(c.outbox, p+"/") {
			return fmt.Sprintf("%q is a file, but the outbox directory %q%s is inside it (want a path that is not also a directory)", p, c.outbox, c.outboxWhere())
		}
	}
	e := entry{clamp32(idx), clamp32(line)}
	// Record the directories of p, longest first. A directory already known
	// has all its parents known and checked.
	for dir := p; ; {
		i := strings.LastIndexByte(dir, '/')
		if i < 0 {
			break
		}
		dir = dir[:i]
		if _, ok := c.dirs[dir]; ok {
			break
		}
		if f, ok := c.files[dir]; ok {
			return fmt.Sprintf("%q is inside %q, which is a file (%s; want a path that is not also a directory)", p, dir, f.where())
		}
		c.dirs[dir] = dirEntry{p, e}
	}
	c.files[p] = e
	return ""
}

// setOutbox records the outbox directory dir (already checked by checkPath)
// and returns a message if a file already recorded conflicts with it.
func (c *crossCheck) setOutbox(dir string, line int) string {
	c.outbox, c.outboxLine, c.hasOutbox = dir, line, true
	if f, ok := c.files[dir]; ok {
		return fmt.Sprintf("%q is also the path of a file, %s (want a directory that no file uses)", dir, f.where())
	}
	if d, ok := c.dirs[dir]; ok {
		return fmt.Sprintf("%q holds %q of %s (want a directory that no file uses)", dir, d.path, d.where())
	}
	for p := dir; ; {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return ""
		}
		p = p[:i]
		if f, ok := c.files[p]; ok {
			return fmt.Sprintf("%q is inside %q, which is a file (%s; want a directory that no file uses)", dir, p, f.where())
		}
	}
}
