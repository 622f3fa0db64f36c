// Package fs serves a ferry manifest as a read-only FUSE file system: every
// manifest entry is a regular file whose bytes are fetched on demand through
// the fetcher into the cache, and directories are implied by the paths. Not a
// stable API.
//
// # Structure
//
// Mount wires the pieces together: it opens the cache, registers every
// manifest file with the fetcher (through an adapter from *cache.File to
// fetcher.Store), resolves sizes the manifest leaves open, builds the tree in
// the root's OnAdd with persistent inodes and mounts it. Close takes it down
// in the reverse order: unmount, fetcher, cache.
//
// # Reads
//
// A Read never returns bytes that are not local: it first waits in
// fetcher.File.Ensure for the blocks covering the request (at demand
// priority), then copies them out of the cache. The request context is the
// FUSE request's, so an interrupted caller stops waiting and gets EINTR while
// the shared download goes on. Reads that continue where the previous one on
// the same handle ended ask the fetcher to read ahead with a window that
// doubles from two blocks up to 16 MiB.
//
// Bytes once served are final for the version of the remote object, so opens
// return FOPEN_KEEP_CACHE. A file that is complete when opened is handed to
// the kernel with FUSE passthrough (when the kernel offers it and no handle
// in caching mode is open on the same inode: the kernel refuses to mix the
// two modes on one inode), and its reads no longer reach this process.
//
// # Outbox
//
// The manifest's outbox is the one writable directory (outbox*.go): each
// file is staged in the cache directory and committed to the uploader when
// its last writer closes it. Where the kernel offers FUSE passthrough,
// outbox files are opened in passthrough too, so the kernel writes the
// staged file itself; ferry then sees no write and treats an open for
// writing as the change, asks the staged file for its size, and holds a
// commit until the last such writer was released (uploader.Content.Held).
//
// # Errors
//
// Every errno comes from toErrno, which maps known errors and logs the rest
// before answering EIO.
//
// # Deadlocks
//
// Code in the process that serves the mount must not exec binaries from the
// mount nor mmap its files (see go-fuse's fs package documentation).
package fs
