package origin

import (
	"context"
	"net"
	"time"
)

// maxDrain bounds how long drainThenReset waits for a peer that does not
// read before it resets anyway.
const maxDrain = 2 * time.Second

// resetConn closes c so that the peer sees a reset rather than an orderly
// end of stream. Data still queued in the kernel is dropped.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		// Linger 0 makes Close send RST instead of FIN.
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// drainThenReset resets c once the peer has acknowledged every byte written
// to it, so a reading client gets exactly the bytes the handler sent before
// the reset. It gives up waiting after maxDrain or when ctx ends.
func drainThenReset(ctx context.Context, c net.Conn) {
	deadline := time.Now().Add(maxDrain)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for unsentBytes(c) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			resetConn(c)
			return
		case <-tick.C:
		}
	}
	resetConn(c)
}
