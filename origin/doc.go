// Package origin is ferry's own HTTP origin server: a real net/http server on
// 127.0.0.1 that serves in-memory and generated objects with byte ranges,
// accepts uploads, and misbehaves on request. Tests of every ferry package
// use it, and `ferry demo` uses it to serve sample files slowly. Not a
// stable API.
//
// # Use
//
//	s := origin.New(origin.Options{Logger: logger})
//	base := s.StartTest(t) // or s.Start(); defer s.Close()
//	s.PutGenerated("big.bin", 8<<30, 42)
//	s.SetFaults("big.bin", origin.Faults{Status: 503, StatusCount: 2, RetryAfter: "1"})
//	resp, err := http.Get(s.URL("big.bin"))
//
// Object paths are URL paths without the leading slash ("data/big.bin" is
// served at base+"/data/big.bin"). Every method of Server is safe for
// concurrent use.
//
// # What a GET or HEAD gets
//
// Responses carry ETag (strong), Last-Modified, Accept-Ranges: bytes and
// Content-Length. A Range header with one range (bytes=a-b, bytes=a-,
// bytes=-n) gets 206 with Content-Range; several ranges, another unit or a
// malformed value are ignored (200 with the whole body, which RFC 9110
// allows); a range starting at or past the end gets 416 with
// Content-Range: bytes */SIZE. If-Range with a strong ETag or with an HTTP
// date equal to Last-Modified keeps the range; anything else turns the answer
// into 200 with the whole body. If-None-Match on GET/HEAD gives 304 and
// If-Match that does not match gives 412. Unknown paths get 404.
//
// An object is immutable once stored: Put, PutGenerated and a mutation
// replace it with a new version (new ETag, later Last-Modified), and a
// response already in flight keeps sending the version it started with.
//
// # Uploads
//
// PUT stores its body as the object at that path: 201 when new, 204 when it
// replaced one, with the new ETag. If-None-Match: * on an existing object and
// a non-matching If-Match give 412; a Content-Digest (sha-256, RFC 9530,
// computed over the body as sent, before content decoding; a header, or a
// trailer after a chunked body) that does not match gives 400; Content-Encoding gzip and zstd are decoded, other codings
// give 415. Resumable uploads speak tus 1.0 with the creation and termination
// extensions (tus.go).
//
// # Faults
//
// SetFaults sets the faults of one path, or of every path that has no
// setting of its own when the path is "". The knobs are documented on Faults.
// SetDown makes the whole server drop every connection, as a network outage
// does. MutateAfterBytes replaces an object once a number of its bytes went
// out, for tests of an object that changes during a download.
//
// # Counting
//
// Stats counts, per path, the requests, their Range headers, the statuses
// and the body bytes written to (or read from) the connection.
//
// # Goroutines and shutdown
//
// Start starts one goroutine, the http.Server's accept loop, which starts one
// per connection as net/http does. Close stops the listener, closes every
// connection (including ones stalled by a client that does not read), wakes
// every delay and bandwidth wait, and waits until every handler returned. A
// Server used only through Handler has no goroutine of its own; Close then
// wakes its waits and waits for its handlers, but writes blocked on another
// server's connections are that server's business.
package origin
