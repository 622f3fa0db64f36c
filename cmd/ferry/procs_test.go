package main

import (
	"runtime"
	"testing"
)

// TestRaiseProcs: a mount runs with at least minProcs Ps, unless
// GOMAXPROCS is set in the environment.
func TestRaiseProcs(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(1)
	raiseProcs()
	if got := runtime.GOMAXPROCS(0); got != minProcs {
		t.Errorf("from 1 P: GOMAXPROCS %d after raiseProcs, want %d", got, minProcs)
	}
	runtime.GOMAXPROCS(minProcs + 4)
	raiseProcs()
	if got := runtime.GOMAXPROCS(0); got != minProcs+4 {
		t.Errorf("from %d Ps: GOMAXPROCS %d after raiseProcs, want it unchanged", minProcs+4, got)
	}

	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	raiseProcs()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("with GOMAXPROCS=1 in the environment: %d Ps after raiseProcs, want 1", got)
	}
}
