package fs

import (
	"context"
	"strconv"
	"syscall"

	"ferry/fetcher"
)

// Extended attributes every file carries (SPEC.md).
const (
	xattrState    = "user.ferry.state"
	xattrProgress = "user.ferry.progress"
	xattrURL      = "user.ferry.url"
)

// xattrList is the Listxattr answer: the names, each NUL-terminated.
var xattrList = xattrState + "\x00" + xattrProgress + "\x00" + xattrURL + "\x00"

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	var val string
	switch attr {
	case xattrState:
		val = string(n.state())
	case xattrProgress:
		val = strconv.FormatInt(n.store.LocalBytes(), 10) + "/" + strconv.FormatInt(n.size, 10)
	case xattrURL:
		val = n.url
	default:
		return 0, syscall.ENODATA
	}
	return copyXattr(dest, val)
}

func (n *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return copyXattr(dest, xattrList)
}

// copyXattr answers a getxattr or listxattr: the value's size and ERANGE
// when dest is too small (go-fuse turns that into the size answer when the
// caller asked with size 0).
func copyXattr(dest []byte, val string) (uint32, syscall.Errno) {
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

// state combines the fetcher's view (failed) with the cache's (which blocks
// are local): a restarted mount knows what is local before the fetcher did
// anything.
func (n *fileNode) state() fetcher.State {
	// The fetcher's word: a file with a digest is complete only once the
	// digest matched, though all its blocks may be local before.
	st, _ := n.fetch.State()
	return st
}
