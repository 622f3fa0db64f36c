package uploader

import (
	"os"
	"testing"
	"time"
)

// growFile appends data to the staged file at path, as a writer the
// Uploader's owner does not see would.
func growFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}

// startFollow creates an empty staged file for seq and follows it.
func (fx *fixture) startFollow(seq uint64, path string) (*Stream, string) {
	fx.t.Helper()
	staged := StagedPath(fx.staged, seq)
	if err := os.WriteFile(staged, nil, 0o600); err != nil {
		fx.t.Fatal(err)
	}
	st := fx.u.FollowStream(seq, path)
	if st == nil {
		fx.t.Fatal("FollowStream: no stream")
	}
	return st, staged
}

// waitNoStream waits until no stream runs.
func (fx *fixture) waitNoStream() {
	fx.t.Helper()
	waitFor(fx.t, "the stream to end", func() bool {
		fx.u.mu.Lock()
		defer fx.u.mu.Unlock()
		return !fx.u.streaming
	})
}

// TestFollowStreamSendsWhileWriting: a followed file streams by default
// (no plain PUT was timed), follows the file's size, and ends only after
// the commit and Unhold, whole, with its digest (the origin checks the
// trailer).
func TestFollowStreamSendsWhileWriting(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	data := gen(1, 9<<20+17)
	st, staged := fx.startFollow(1, "f.bin")
	growFile(t, staged, data[:5<<20])
	waitFor(t, "5 MiB at the server", func() bool {
		return fx.origin.Stats("up/f.bin").BytesReceived >= 5<<20
	})
	growFile(t, staged, data[5<<20:])
	c := Content{Path: "f.bin", Size: int64(len(data)), MTime: time.Now(), Mode: 0o644, Stream: st, Held: true}
	if err := fx.u.Commit(1, c); err != nil {
		t.Fatal(err)
	}
	if _, ok := fx.content("f.bin"); ok {
		t.Fatal("the server has the file before Unhold")
	}
	fx.u.Unhold(1)
	fx.waitSent("f.bin")
	if got, _ := fx.content("f.bin"); sum(got) != sum(data) {
		t.Fatalf("the server has %d bytes that differ", len(got))
	}
	if s := fx.origin.Stats("up/f.bin"); s.Puts != 1 || s.Statuses[201] != 1 {
		t.Errorf("PUTs %d, statuses %v: want one streamed PUT", s.Puts, s.Statuses)
	}
	fx.waitNoStream()
}

// TestFollowStreamChangedBytes: bytes sent before the file settled change
// (same size, nothing tells the Uploader). The stream reads them again
// before its end, finds the change and is cut; a plain PUT sends the final
// content, stored once.
func TestFollowStreamChangedBytes(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	data := gen(2, 6<<20)
	st, staged := fx.startFollow(1, "c.bin")
	growFile(t, staged, data)
	waitFor(t, "all of it at the server", func() bool {
		return fx.origin.Stats("up/c.bin").BytesReceived >= int64(len(data))
	})
	f, err := os.OpenFile(staged, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := gen(3, 100)
	if _, err := f.WriteAt(patch, 3<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	copy(data[3<<20:], patch)
	c := Content{Path: "c.bin", Size: int64(len(data)), MTime: time.Now(), Mode: 0o644, Stream: st, Held: true}
	if err := fx.u.Commit(1, c); err != nil {
		t.Fatal(err)
	}
	fx.u.Unhold(1)
	fx.waitSent("c.bin")
	if got, _ := fx.content("c.bin"); sum(got) != sum(data) {
		t.Fatal("the server has other bytes than the final content")
	}
	if s := fx.origin.Stats("up/c.bin"); s.Puts != 2 || s.Statuses[201] != 1 {
		t.Errorf("PUTs %d, statuses %v: want the stream cut and one plain PUT", s.Puts, s.Statuses)
	}
	fx.waitNoStream()
}

// TestFollowStreamTooSmall: a followed file committed below StreamMinSize
// never starts a request; it goes with one plain PUT.
func TestFollowStreamTooSmall(t *testing.T) {
	fx := newFixture(t, Options{StreamIdle: 5 * time.Minute})
	fx.u.Start()
	data := gen(4, 1<<20)
	st, staged := fx.startFollow(1, "s.bin")
	growFile(t, staged, data)
	if st.Running() {
		t.Fatal("a stream runs for a file below StreamMinSize")
	}
	c := Content{Path: "s.bin", Size: int64(len(data)), MTime: time.Now(), Mode: 0o644, Stream: st}
	fx.commitSent(c)
	if got, _ := fx.content("s.bin"); sum(got) != sum(data) {
		t.Fatal("the server has other bytes")
	}
	if s := fx.origin.Stats("up/s.bin"); s.Puts != 1 {
		t.Errorf("%d PUTs, want one plain PUT", s.Puts)
	}
	fx.u.SetStreams(StreamNever)
	if fx.u.FollowStream(2, "n.bin") != nil {
		t.Error("a stream with streams off")
	}
}

// TestHeldCommitWaitsForUnhold: a held commit is not handed to a worker, a
// rename meanwhile neither; Unhold sends it.
func TestHeldCommitWaitsForUnhold(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.u.Start()
	data := gen(5, 300000)
	c := fx.stage(1, "h.bin", data)
	c.Held = true
	if err := fx.u.Commit(1, c); err != nil {
		t.Fatal(err)
	}
	waiting := func(when string) {
		t.Helper()
		fx.u.mu.Lock()
		defer fx.u.mu.Unlock()
		it := fx.u.items[1]
		if it == nil || !it.held || it.state != StateQueued {
			t.Fatalf("%s: %+v, want held and queued", when, it)
		}
		for _, e := range fx.u.ready {
			if e.it == it && !e.stale() {
				t.Fatalf("%s: a worker may take the held file", when)
			}
		}
	}
	waiting("after the commit")
	if err := fx.u.Rename(1, "g.bin"); err != nil {
		t.Fatal(err)
	}
	waiting("after a rename")
	if st, _ := fx.u.Status(1); st.State != StateQueued {
		t.Errorf("state %s, want queued", st.State)
	}
	fx.u.Unhold(1)
	fx.waitSent("g.bin")
	if got, _ := fx.content("g.bin"); sum(got) != sum(data) {
		t.Fatal("the server has other bytes")
	}
	if s := fx.origin.Stats("up/h.bin"); s.Puts != 0 {
		t.Errorf("%d PUTs under the old name", s.Puts)
	}
}
