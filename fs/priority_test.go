package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"ferry/fetcher"
	"ferry/manifest"
	"ferry/origin"
)

// TestLowFileFinishesWhileAnotherProcessReads runs two processes that read
// random cold blocks of one file nonstop through the mount (the reader of
// BenchmarkDemandLatency), and checks that a `low` file still completes in
// the background while they read: the floor of background fill. Two
// readers, so that the reads never pause long enough for background fill
// to go on without its floor; each reads 2,048 blocks of its own, 5 s or
// more with the origin's latency, and stops (without the floor, the low
// file completed only after they had).
func TestLowFileFinishesWhileAnotherProcessReads(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{
		{path: "hot.bin", size: 256 << 20, seed: 1, declare: true}, // seed 1: the reader checks the bytes
		{path: "low.bin", size: 4 << 20, seed: 2, declare: true},
	})
	files[0].Priority = manifest.High
	files[1].Priority = manifest.Low
	// Every read waits for the origin a little, so reads never stop
	// while the low file fills.
	srv.SetFaults("hot.bin", origin.Faults{Latency: 2 * time.Millisecond})
	m := testMount(t, files, Options{Background: true, MaxConns: 2})
	var hot, low *fetcher.File
	for _, fl := range m.fetcher.Files() {
		switch fl.Path() {
		case "hot.bin":
			hot = fl
		case "low.bin":
			low = fl
		}
	}
	hot.Pause() // only the reads fetch it
	low.Pause()
	exited := make(chan struct{}, 2)
	var waitErr [2]error
	var cmds [2]*exec.Cmd
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLatencyBenchReader$")
		cmd.Env = append(os.Environ(), "FERRY_LATENCY_READER="+filepath.Join(m.Dir(), "hot.bin"),
			"FERRY_LATENCY_READS=2048", "FERRY_LATENCY_FROM="+strconv.Itoa(i*2048))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
		go func() {
			waitErr[i] = cmd.Wait()
			exited <- struct{}{}
		}()
	}
	t.Cleanup(func() {
		for _, cmd := range cmds {
			cmd.Process.Kill()
		}
		<-exited
		<-exited
	})
	stillReading := func() {
		if len(exited) > 0 {
			t.Fatal("a reader stopped before the low file completed")
		}
	}
	waitFor(t, "the readers to read", func() bool {
		stillReading()
		return hot.Info().Fetched >= 1<<20
	})
	low.Resume()
	waitFor(t, "the low file to complete", func() bool {
		stillReading()
		st, _ := low.State()
		return st == fetcher.StateComplete
	})
	stillReading()
}
