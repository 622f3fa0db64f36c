// Package uploader sends the files of a ferry outbox to their server and
// keeps the upload queue durable. Not a stable API.
//
// # Model
//
// Whoever owns the outbox directory (package fs) stages each file in a data
// file of its own, named by a sequence number (StagedPath), and tells the
// Uploader what happens to it:
//
//   - Commit when the last writer closed it (or a rename committed it): the
//     content is queued. The record is durable (a synced Pebble write)
//     before Commit returns.
//   - Modify before the first change after a commit: a running upload of the
//     old content is abandoned, and nothing is sent until the next Commit.
//   - Rename and Remove when the file moves or goes away.
//
// The Uploader reads the staged file itself; it never writes it. The record
// of every committed file lives in the cache's Pebble database (Queue), so
// after a crash, kill -9 or reboot New finds every queued or half-sent
// upload and Start resumes it.
//
// # Snapshots
//
// An upload sends the content of one commit and nothing else. Every Modify
// bumps the item's generation; the request body checks the generation after
// it read the last bytes from disk and before it hands them to the
// connection. If the file changed, the body fails instead, so the server
// sees a short body and stores nothing: it never gets a mix of two versions.
// Because Modify runs before the first byte of the change is written, bytes
// read before an unchanged check are bytes of the committed content.
//
// # Protocols
//
// PUT (the default) sends the whole file to Options.URL + the escaped path
// with Content-Length, Content-Digest (sha-256, RFC 9530, over the bytes as
// sent), the manifest's headers, If-None-Match: * unless Overwrite (or
// If-Match with the ETag of this file's own earlier upload), and optionally
// Content-Encoding gzip or zstd (the encoded bytes are staged in TempDir
// first, so their length and digest are known before the request).
//
// A new file written in order (cp, mv) may be streamed: once StreamMinSize
// bytes are written, its owner calls StartStream, and if the writer is
// faster than the last plain PUT was (StreamAuto) the PUT starts while
// the writer still writes, with a chunked body that follows the writes and
// the Content-Digest in a trailer (RFC 9530 allows it there). The body ends
// only after the commit, when every byte sent is committed content; a
// change before that (a write out of order, a truncation, an unlink or
// rename) or after it (Modify) cuts the request, so the server stores
// nothing of it. A stream that fails falls back to a plain PUT at once; a
// server that refuses one with a 4xx other than 412 (411 Length Required,
// say) gets no more. One stream runs at a time, beside the workers.
//
// When the owner does not see the writes (FUSE passthrough: the kernel
// writes the staged file), it asks for a FollowStream instead, which
// follows the file's size, hashes what it sends, and before its body ends
// checks that the bytes it read before the file settled are still the
// file's (follow.go). Such an owner commits with Content.Held while a
// writer it cannot see may still write, and calls Unhold once none can:
// until then nothing is sent and no body ends.
//
// tus 1.0 (Protocol "tus") creates an upload with a POST to the same URL,
// persists its Location in the record, then PATCHes from the offset the
// server reports with HEAD; after a network loss or a restart it resumes from
// that offset. The whole file's SHA-256 travels in Upload-Metadata. tus sends
// the raw bytes: Encoding applies to PUT only.
//
// # Outcomes
//
// A 2xx completes an upload: the record is deleted and OnSent is called, or
// with Keep the record stays in state "sent". 408, 425, 429, 5xx and network
// errors are retried with exponential backoff and jitter (Backoff doubling up
// to MaxBackoff), honouring Retry-After; other 4xx fail the file for good
// (state "failed", with the reason in Status.Err). A 412 to If-None-Match: *
// says the server already has a file of that name.
//
// # Goroutines
//
// Start starts Options.Parallel workers; Close cancels them and waits. An
// upload cut short by Close stays queued (its record says so) and starts
// again, or resumes with tus, at the next Start.
package uploader
