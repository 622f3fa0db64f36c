package main

import (
	"os"
	"runtime"
)

// minProcs is the fewest Ps (GOMAXPROCS) a mount runs with. A goroutine in
// a blocking system call (a create, pwrite or fsync in the cache, a read of
// /dev/fuse) keeps its P until the runtime's monitor takes it back, and
// that monitor sleeps up to 10 ms once the process was idle. With as many
// Ps as CPUs (2 here), the first read after a quiet spell could wait that
// long for a P: the HTTP request of the read of the last 4 KiB right after
// mount took 5.7-14 ms in 5 of 12 runs with 2 Ps and at most 0.7 ms in 12
// runs with 8. In bench/run.sh's figure 4 (12 rounds each, alternating),
// 2 Ps gave a median of 1.1 ms with 4 rounds over 5 ms (up to 16.5), 8 Ps
// a median of 0.99 ms and at most 3.8; figure 5 did not change (0.42 and
// 0.39 s).
const minProcs = 8

// raiseProcs sets GOMAXPROCS to minProcs when it is lower, unless the
// environment sets it.
func raiseProcs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
}
