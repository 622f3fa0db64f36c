package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"ferry/internal/testutil"
	"ferry/origin"
)

// TestKilledReaderLeavesNothingWaiting kills (SIGKILL) a process blocked in
// a read of bytes that never arrive. The process dies at once; the read the
// kernel sent for it (dd's read reaches ferry as readahead, which the
// kernel does not interrupt) ends too once ferry sees the process gone:
// nothing waits on for the bytes (leak check), and the mount goes on
// serving.
func TestKilledReaderLeavesNothingWaiting(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{
		{path: "slow.bin", size: 1 << 20, seed: 4, declare: true},
		{path: "ok.bin", size: 1 << 16, seed: 5, declare: true},
	})
	srv.SetFaults("slow.bin", origin.Faults{Latency: time.Hour})
	m := testMount(t, files, Options{})
	waiting := func() []string { return testutil.Leaked("ferry/fetcher.(*File).ensure") }
	cmd := exec.Command("dd", "if="+filepath.Join(m.Dir(), "slow.bin"), "of=/dev/null", "bs=4k", "count=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	waitFor(t, "the read to wait in the mount", func() bool { return len(waiting()) > 0 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	waitFor(t, "the killed read to return", func() bool { return len(waiting()) == 0 })
	data, err := os.ReadFile(filepath.Join(m.Dir(), "ok.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRange(5, 0, data); err != nil {
		t.Fatal(err)
	}
}
