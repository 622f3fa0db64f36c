package fs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// callerCheck is how often a read that waits for its bytes checks that the
// process it reads for still exists.
const callerCheck = time.Second

// watchCaller returns a context that ends with ctx, or once the process
// that made the request is gone; stop releases it. The kernel interrupts a
// request whose process is killed only while the process itself waits on
// it. A read the kernel makes ahead for a process (readahead) has nobody to
// interrupt: killed, the process stops waiting for the page, but the
// request stays, and would wait for its bytes as long as the origin
// withholds them.
func watchCaller(ctx context.Context) (wctx context.Context, stop func()) {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return ctx, func() {}
	}
	pid := int(fc.Caller.Pid)
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(callerCheck)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if syscall.Kill(pid, 0) == syscall.ESRCH {
					cancel()
					return
				}
			}
		}
	}()
	return wctx, cancel
}
