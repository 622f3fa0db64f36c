// Command fusebound is the go-fuse bound of ferry's benchmark: a minimal
// read-only go-fuse file system that serves files from memory, mounted with
// the same options as ferry (1 MiB requests, 1 MiB readahead raised in the
// kernel, kept page cache). What it reaches is the most a go-fuse file
// system can reach on this machine. Not a stable API.
//
//	fusebound -data DIR MOUNTPOINT        serve DIR's regular files, read whole into memory
//	fusebound -manifest M.json MOUNTPOINT serve the tree of a ferry manifest; files read as zeros
//
// It prints "ready" on stdout once the mount is live and the readahead is
// raised, and unmounts on SIGINT or SIGTERM (or when unmounted from outside).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	data := flag.String("data", "", "serve the regular files under this directory")
	manifest := flag.String("manifest", "", "serve the tree of this ferry manifest (contents are zeros)")
	splice := flag.Bool("splice", false, "leave go-fuse's splice path on (ferry's setting in fs/mount.go; see bench/README.md)")
	flag.Parse()
	if flag.NArg() != 1 || (*data == "") == (*manifest == "") {
		fmt.Fprintln(os.Stderr, "usage: fusebound (-data DIR | -manifest FILE) MOUNTPOINT")
		exit(2)
	}
	if err := run(*data, *manifest, flag.Arg(0), *splice); err != nil {
		fmt.Fprintln(os.Stderr, "fusebound:", err)
		exit(1)
	}
}

// exit ends the program with code; see bench/gen for why not os.Exit.
func exit(code int) { syscall.Exit(code) }

func run(data, manifest, mountpoint string, splice bool) error {
	var files []entry
	var err error
	if data != "" {
		files, err = loadDir(data)
	} else {
		files, err = loadManifest(manifest)
	}
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	root := &rootNode{files: files}
	entryTimeout, attrTimeout := time.Hour, time.Second
	server, err := gofs.Mount(dir, root, &gofs.Options{
		MountOptions: fuse.MountOptions{
			// The options ferry mounts with (fs/mount.go).
			DirectMount:          true,
			FsName:               "fusebound",
			Name:                 "fusebound",
			MaxWrite:             1 << 20,
			MaxReadAhead:         1 << 20,
			IgnoreSecurityLabels: true,
			// Bytes from memory gain nothing from splice, and with
			// 1 MiB requests go-fuse's splice attempt fails on every
			// read (the pipe cannot grow past pipe-max-size, 1 MiB),
			// logging a line each time before it falls back to writev.
			DisableSplice: !splice,
		},
		EntryTimeout:    &entryTimeout,
		NegativeTimeout: &entryTimeout,
		AttrTimeout:     &attrTimeout,
	})
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := raiseReadahead(dir); err != nil {
		fmt.Fprintln(os.Stderr, "fusebound: readahead not raised:", err)
	}
	fmt.Println("ready")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		server.Wait()
		close(done)
	}()
	select {
	case <-sigs:
		if err := server.Unmount(); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		<-done
	case <-done:
	}
	return nil
}

// entry is one file of the tree: its bytes, or a size of zeros.
type entry struct {
	path string
	data []byte // nil: zeros
	size int64
}

// rootNode builds the whole tree when mounted.
type rootNode struct {
	gofs.Inode
	files []entry
}

var _ = (gofs.NodeOnAdder)((*rootNode)(nil))

func (r *rootNode) OnAdd(ctx context.Context) {
	for _, e := range r.files {
		parent := &r.Inode
		segs := strings.Split(e.path, "/")
		for _, seg := range segs[:len(segs)-1] {
			child := parent.GetChild(seg)
			if child == nil {
				child = parent.NewPersistentInode(ctx, &gofs.Inode{}, gofs.StableAttr{Mode: syscall.S_IFDIR})
				parent.AddChild(seg, child, false)
			}
			parent = child
		}
		f := &fileNode{data: e.data, size: e.size}
		parent.AddChild(segs[len(segs)-1], parent.NewPersistentInode(ctx, f, gofs.StableAttr{}), false)
	}
	r.files = nil
}

// fileNode serves one file from memory.
type fileNode struct {
	gofs.Inode
	data []byte
	size int64
}

var (
	_ = (gofs.NodeGetattrer)((*fileNode)(nil))
	_ = (gofs.NodeOpener)((*fileNode)(nil))
	_ = (gofs.NodeReader)((*fileNode)(nil))
)

func (f *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(f.size)
	out.Blocks = uint64((f.size + 511) / 512)
	out.Blksize = 1 << 20
	out.Nlink = 1
	return 0
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

// zeros backs the files of a manifest tree.
var zeros = make([]byte, 1<<20)

func (f *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= f.size {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), f.size)
	if f.data == nil {
		return fuse.ReadResultData(zeros[:min(end-off, int64(len(zeros)))]), 0
	}
	return fuse.ReadResultData(f.data[off:end]), 0
}

// raiseReadahead sets read_ahead_kb of the mount at dir to 1024, as ferry
// does: the kernel keeps 128 KiB otherwise.
func raiseReadahead(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) > 4 && fs[4] == dir {
			return os.WriteFile("/sys/class/bdi/"+fs[2]+"/read_ahead_kb", []byte("1024"), 0)
		}
	}
	return fmt.Errorf("%s not in mountinfo", dir)
}
