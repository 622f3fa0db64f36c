// Package control serves and calls the run-time control API of a ferry
// mount: JSON over HTTP on a unix socket in the cache directory. Every
// `ferry` command that looks at or changes a running mount goes through it;
// nothing parses logs. Not a stable API (the JSON and the metric names are:
// see README.md, "Control").
//
// # Finding a mount's socket
//
// The socket is CACHE_DIR/control.sock (SocketName). The mount's root
// directory answers the extended attribute user.ferry.control (XattrName)
// with the socket's absolute path, so a command needs only a path inside the
// mount: it finds the mountpoint in /proc/self/mountinfo (type fuse.ferry),
// reads the attribute (SocketOf), checks the socket and connects (Dial). A
// mount whose process died answers ENOTCONN, which SocketOf reports as
// ErrNotRunning.
//
// # Who may talk to it
//
// The socket is created with mode 0600 (bound in a private directory, then
// moved into place, so there is no moment when others could connect), and
// the server drops connections whose peer (SO_PEERCRED) is another user.
// Dial refuses a socket that another user owns (ErrForeign) before it
// connects.
//
// # Endpoints
//
//	GET  /v1/status[?path=P...][&active=1][&files=0]   Status
//	POST /v1/files/{pause,resume,cancel,priority,pin,evict}   Request -> Response
//	GET  /metrics                                      Prometheus text format
//
// Errors are answered with a 4xx or 5xx status and {"error": "..."}.
//
// # Goroutines
//
// Listen starts one goroutine (the HTTP accept loop, which starts one per
// connection); Close cancels the requests in flight, waits for every
// handler and removes the socket.
package control
