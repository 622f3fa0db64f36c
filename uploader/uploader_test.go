package uploader

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"ferry/cache"
	"ferry/origin"
)

func TestPutSendsEveryFileOnce(t *testing.T) {
	fx := newFixture(t, Options{})
	files := map[string][]byte{
		"empty":           nil,
		"a.txt":           []byte("hello"),
		"dir/sub/b.bin":   gen(1, 3<<20+5),
		"sp ace/ü?#%.bin": gen(2, 70000),
	}
	seq := uint64(1)
	for p, data := range files {
		fx.commit(seq, p, data)
		seq++
	}
	fx.u.Start()
	for p, data := range files {
		if st, err := fx.waitDone(p, 1); st != "sent" || err != nil {
			t.Fatalf("%s: %s, %v", p, st, err)
		}
		got, ok := fx.content(p)
		if !ok || sum(got) != sum(data) {
			t.Errorf("%s: the origin has %d bytes (ok %v), want %d identical", p, len(got), ok, len(data))
		}
		if st := fx.origin.Stats("up/" + p); st.Puts != 1 {
			t.Errorf("%s: %d PUTs", p, st.Puts)
		}
	}
	// Sent files leave the queue, durably.
	if n := len(fx.u.Entries()); n != 0 {
		t.Errorf("%d entries left", n)
	}
	fx.mu.Lock()
	if len(fx.sent) != len(files) {
		t.Errorf("OnSent called %d times", len(fx.sent))
	}
	fx.mu.Unlock()
	recs, err := fx.cache.OutboxRecords()
	if err != nil || len(recs) != 0 {
		t.Errorf("records left: %v, %v", recs, err)
	}
}

func TestPutRetriesTransientFailures(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.origin.SetFaults("up/503", origin.Faults{Status: 503, StatusCount: 2, RetryAfter: "0"})
	fx.origin.SetFaults("up/500", origin.Faults{Status: 500, StatusCount: 2})
	fx.origin.SetFaults("up/reset", origin.Faults{ResetAfter: 100000, ResetCount: 2})
	fx.origin.SetFaults("up/down", origin.Faults{Down: true})
	data := gen(3, 1<<20)
	for i, p := range []string{"503", "500", "reset", "down"} {
		fx.commit(uint64(i+1), p, data)
	}
	fx.u.Start()
	for _, p := range []string{"503", "500", "reset"} {
		if st, err := fx.waitDone(p, 1); st != "sent" || err != nil {
			t.Fatalf("%s: %s, %v", p, st, err)
		}
		if got, _ := fx.content(p); !bytes.Equal(got, data) {
			t.Errorf("%s: content differs", p)
		}
		if st := fx.origin.Stats("up/" + p); st.Puts != 3 {
			t.Errorf("%s: %d PUTs, want 3 (two failures)", p, st.Puts)
		}
	}
	// A network that stays down keeps the file queued, with the reason.
	waitFor(t, "retries of down", func() bool { return fx.origin.Stats("up/down").Requests >= 3 })
	st, _ := fx.u.Status(4)
	if st.State != StateQueued && st.State != StateUploading || st.Err == "" {
		t.Errorf("down: status %+v", st)
	}
	fx.origin.ClearFaults()
	if st, err := fx.waitDone("down", 1); st != "sent" || err != nil {
		t.Fatalf("down: %s, %v", st, err)
	}
}

func TestExistingFileIsNotOverwritten(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.origin.Put("up/taken", []byte("theirs"))
	fx.commit(1, "taken", []byte("ours"))
	fx.u.Start()
	st, err := fx.waitDone("taken", 1)
	if st != "failed" || err == nil || !strings.Contains(err.Error(), "already has") ||
		!strings.Contains(err.Error(), "overwrite") {
		t.Fatalf("state %s, err %v; want failed saying the server has it", st, err)
	}
	if got, _ := fx.content("taken"); string(got) != "theirs" {
		t.Errorf("remote content %q", got)
	}
	s, ok := fx.u.Status(1)
	if !ok || s.State != StateFailed || !strings.Contains(s.Err, "already has") {
		t.Errorf("status %+v", s)
	}
	if fx.origin.Stats("up/taken").Puts != 1 {
		t.Error("a 412 was retried")
	}
	// The failure is durable.
	fx.close()
	fx.open()
	if es := fx.u.Entries(); len(es) != 1 || es[0].State != StateFailed {
		t.Errorf("entries after reopen: %+v", es)
	}
}

func TestOverwriteReplaces(t *testing.T) {
	fx := newFixture(t, Options{Overwrite: true})
	fx.origin.Put("up/taken", []byte("theirs"))
	fx.commit(1, "taken", []byte("ours"))
	fx.u.Start()
	if st, err := fx.waitDone("taken", 1); st != "sent" || err != nil {
		t.Fatalf("%s, %v", st, err)
	}
	if got, _ := fx.content("taken"); string(got) != "ours" {
		t.Errorf("remote content %q", got)
	}
}

func TestPermanentStatusFails(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.origin.SetFaults("up/forbidden", origin.Faults{Status: 403})
	fx.commit(1, "forbidden", []byte("x"))
	fx.u.Start()
	st, err := fx.waitDone("forbidden", 1)
	if st != "failed" || err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("%s, %v", st, err)
	}
	if n := fx.origin.Stats("up/forbidden").Requests; n != 1 {
		t.Errorf("%d requests for a 403", n)
	}
	// Retry queues it again.
	fx.origin.ClearFaults()
	if ok, err := fx.u.Retry(1); !ok || err != nil {
		t.Fatalf("Retry: %v, %v", ok, err)
	}
	if st, err := fx.waitDone("forbidden", 2); st != "sent" || err != nil {
		t.Fatalf("after Retry: %s, %v", st, err)
	}
}

func TestEncodings(t *testing.T) {
	for _, enc := range []string{"gzip", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			fx := newFixture(t, Options{Encoding: enc})
			data := bytes.Repeat([]byte("compressible "), 100000)
			fx.commit(1, "c.txt", data)
			fx.u.Start()
			if st, err := fx.waitDone("c.txt", 1); st != "sent" || err != nil {
				t.Fatalf("%s, %v", st, err)
			}
			if got, _ := fx.content("c.txt"); !bytes.Equal(got, data) {
				t.Error("content differs")
			}
			if st := fx.origin.Stats("up/c.txt"); st.BytesReceived >= int64(len(data))/4 {
				t.Errorf("%d bytes on the wire for %d compressible bytes", st.BytesReceived, len(data))
			}
			ents, _ := os.ReadDir(fx.dir + "/outbox-tmp")
			if len(ents) != 0 {
				t.Errorf("encoded copies left: %v", ents)
			}
		})
	}
}

func TestKeepKeepsSentFiles(t *testing.T) {
	fx := newFixture(t, Options{Keep: true})
	fx.commit(1, "k", []byte("kept"))
	fx.u.Start()
	if st, err := fx.waitDone("k", 1); st != "sent" || err != nil {
		t.Fatalf("%s, %v", st, err)
	}
	if s, ok := fx.u.Status(1); !ok || s.State != StateSent || s.Sent != 4 {
		t.Errorf("status %+v %v", s, ok)
	}
	fx.mu.Lock()
	if len(fx.sent) != 0 {
		t.Error("OnSent called with Keep")
	}
	fx.mu.Unlock()
	fx.close()
	fx.open()
	if es := fx.u.Entries(); len(es) != 1 || es[0].State != StateSent || es[0].Path != "k" {
		t.Errorf("entries after reopen: %+v", es)
	}
	// Changed and committed again: uploaded again, replacing our own
	// earlier upload (If-Match with its ETag) although Overwrite is off.
	if ok, err := fx.u.Modify(1); !ok || err != nil {
		t.Fatalf("Modify: %v %v", ok, err)
	}
	fx.commit(1, "k", []byte("kept, v2"))
	fx.u.Start()
	if st, err := fx.waitDone("k", 2); st != "sent" || err != nil {
		t.Fatalf("second upload: %s, %v", st, err)
	}
	if got, _ := fx.content("k"); string(got) != "kept, v2" {
		t.Errorf("remote %q", got)
	}
}

func TestRewriteDuringUploadSendsOnlyTheFinalContent(t *testing.T) {
	for _, proto := range []string{"put", "tus"} {
		t.Run(proto, func(t *testing.T) {
			fx := newFixture(t, Options{Protocol: proto})
			// Slow enough that the rewrite lands mid-upload.
			fx.origin.SetFaults("up/r.bin", origin.Faults{BytesPerSec: 2 << 20})
			v1, v2 := gen(10, 4<<20), gen(11, 3<<20)
			fx.commit(1, "r.bin", v1)
			fx.u.Start()
			waitFor(t, "the upload to be under way", func() bool {
				s, _ := fx.u.Status(1)
				return s.State == StateUploading && s.Sent > 256<<10
			})
			if ok, err := fx.u.Modify(1); !ok || err != nil {
				t.Fatalf("Modify: %v, %v", ok, err)
			}
			if s, _ := fx.u.Status(1); s.State != StateWriting {
				t.Errorf("state after Modify: %s", s.State)
			}
			fx.origin.ClearFaults()
			fx.commit(1, "r.bin", v2)
			if st, err := fx.waitDone("r.bin", 1); st != "sent" || err != nil {
				t.Fatalf("%s, %v", st, err)
			}
			if got, _ := fx.content("r.bin"); !bytes.Equal(got, v2) {
				t.Fatalf("the origin has %d bytes, not the final content", len(got))
			}
			fx.mu.Lock()
			defer fx.mu.Unlock()
			if !slices.Equal(fx.done["r.bin"], []string{"sent"}) {
				t.Errorf("outcomes %v", fx.done["r.bin"])
			}
		})
	}
}

func TestTusResumesAfterReset(t *testing.T) {
	fx := newFixture(t, Options{Protocol: "tus"})
	data := gen(20, 8<<20)
	fx.origin.SetFaults("up/t.bin", origin.Faults{ResetAfter: 3 << 20, ResetCount: 2})
	fx.commit(1, "t.bin", data)
	fx.u.Start()
	if st, err := fx.waitDone("t.bin", 1); st != "sent" || err != nil {
		t.Fatalf("%s, %v", st, err)
	}
	if got, _ := fx.content("t.bin"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	st := fx.origin.Stats("up/t.bin")
	if st.BytesReceived > int64(len(data))*11/10 || st.Resets != 2 {
		t.Errorf("received %d bytes for %d with %d resets: not resumed", st.BytesReceived, len(data), st.Resets)
	}
}

func TestTusExistingFileIsNotOverwritten(t *testing.T) {
	fx := newFixture(t, Options{Protocol: "tus"})
	fx.origin.Put("up/taken", []byte("theirs"))
	fx.commit(1, "taken", []byte("ours"))
	fx.commit(2, "empty", nil)
	fx.u.Start()
	if st, err := fx.waitDone("taken", 1); st != "failed" || err == nil || !strings.Contains(err.Error(), "already has") {
		t.Fatalf("%s, %v", st, err)
	}
	if st, err := fx.waitDone("empty", 1); st != "sent" || err != nil {
		t.Fatalf("empty: %s, %v", st, err)
	}
	if got, ok := fx.content("empty"); !ok || len(got) != 0 {
		t.Errorf("empty: %q %v", got, ok)
	}
}

func TestRestartResumesTheQueue(t *testing.T) {
	for _, proto := range []string{"put", "tus"} {
		t.Run(proto, func(t *testing.T) {
			fx := newFixture(t, Options{Protocol: proto})
			big := gen(30, 6<<20)
			fx.origin.SetFaults("up/big", origin.Faults{BytesPerSec: 4 << 20})
			fx.commit(1, "big", big)
			fx.commit(2, "small", []byte("s"))
			fx.u.Start()
			waitFor(t, "big under way", func() bool {
				s, _ := fx.u.Status(1)
				return s.Sent > 1<<20
			})
			fx.close() // the upload is cut short: stays queued
			if _, ok := fx.content("big"); ok {
				t.Fatal("stored a cut upload")
			}
			fx.origin.ClearFaults()
			fx.open()
			es := fx.u.Entries()
			if len(es) == 0 || es[0].Path != "big" || es[0].State != StateQueued {
				t.Fatalf("entries after restart: %+v", es)
			}
			fx.u.Start()
			for _, p := range []string{"big", "small"} {
				if st, err := fx.waitDone(p, 1); st != "sent" || err != nil {
					t.Fatalf("%s: %s, %v", p, st, err)
				}
			}
			if got, _ := fx.content("big"); !bytes.Equal(got, big) {
				t.Fatal("content differs")
			}
			recv := fx.origin.Stats("up/big").BytesReceived
			if proto == "tus" && recv > int64(len(big))*11/10 {
				t.Errorf("tus: received %d bytes for %d: not resumed", recv, len(big))
			}
		})
	}
}

func TestRemoveAbandonsTheUpload(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.origin.SetFaults("up/gone", origin.Faults{BytesPerSec: 1 << 20})
	fx.commit(1, "gone", gen(40, 4<<20))
	fx.u.Start()
	waitFor(t, "the upload to be under way", func() bool {
		s, _ := fx.u.Status(1)
		return s.Sent > 0
	})
	if err := fx.u.Remove(1); err != nil {
		t.Fatal(err)
	}
	if _, ok := fx.u.Status(1); ok {
		t.Error("status after Remove")
	}
	fx.close()
	if _, ok := fx.origin.Object("up/gone"); ok {
		t.Error("a removed file was stored")
	}
	fx.open()
	if es := fx.u.Entries(); len(es) != 0 {
		t.Errorf("entries after Remove and reopen: %+v", es)
	}
}

func TestRenameUploadsUnderTheNewName(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.origin.SetFaults("up/.tmp", origin.Faults{BytesPerSec: 1 << 20})
	data := gen(41, 2<<20)
	fx.commit(1, ".tmp", data)
	fx.u.Start()
	waitFor(t, "the upload to be under way", func() bool {
		s, _ := fx.u.Status(1)
		return s.Sent > 0
	})
	if err := fx.u.Rename(1, "final"); err != nil {
		t.Fatal(err)
	}
	if st, err := fx.waitDone("final", 1); st != "sent" || err != nil {
		t.Fatalf("%s, %v", st, err)
	}
	if got, _ := fx.content("final"); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	if _, ok := fx.origin.Object("up/.tmp"); ok {
		t.Error("the old name was stored")
	}
}

func TestDroppedAtStart(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.commit(1, "open", []byte("v1"))
	if _, err := fx.u.Modify(1); err != nil {
		t.Fatal(err)
	}
	if err := fx.cache.PutOutbox(cache.OutboxRecord{Seq: 2, Path: "../escape", State: cache.OutboxQueued}, true); err != nil {
		t.Fatal(err)
	}
	fx.close()
	fx.open()
	if es := fx.u.Entries(); len(es) != 0 {
		t.Errorf("a file that was being changed survived a restart: %+v", es)
	}
}

func TestVerifyAfterUncleanStop(t *testing.T) {
	fx := newFixture(t, Options{})
	for i, p := range []string{"lost", "kept"} {
		data := []byte("committed bytes")
		c := fx.stage(uint64(i+1), p, data)
		s := sum(data)
		c.SHA256 = s[:]
		if err := fx.u.Commit(uint64(i+1), c); err != nil {
			t.Fatal(err)
		}
	}
	fx.close()
	// A power loss kept the size but not the bytes.
	if err := os.WriteFile(StagedPath(fx.staged, 1), []byte("COMMITTED BYTES"), 0o600); err != nil {
		t.Fatal(err)
	}
	fx.opts.Verify = true
	fx.open()
	fx.u.Start()
	if st, err := fx.waitDone("lost", 1); st != "failed" || !errors.Is(err, errVerify) {
		t.Fatalf("lost: %s, %v", st, err)
	}
	if st, err := fx.waitDone("kept", 1); st != "sent" || err != nil {
		t.Fatalf("kept: %s, %v", st, err)
	}
	if _, ok := fx.content("lost"); ok {
		t.Error("damaged data was uploaded")
	}
}

func TestBadPathsAreRefused(t *testing.T) {
	fx := newFixture(t, Options{})
	for _, p := range []string{"", "/abs", "a/../b", "..", "a//b", "./a", "a/"} {
		if err := fx.u.Commit(1, fx.stage(1, "x", nil)); err != nil {
			t.Fatal(err)
		}
		if err := fx.u.Commit(2, Content{Path: p}); err == nil {
			t.Errorf("Commit accepted %q", p)
		}
		if err := fx.u.Rename(1, p); err == nil {
			t.Errorf("Rename accepted %q", p)
		}
	}
	if got := escapePath("a b/c?d#e/%"); got != "a%20b/c%3Fd%23e/%25" {
		t.Errorf("escapePath = %q", got)
	}
}

func TestUnsure412CountsOurOwnUpload(t *testing.T) {
	fx := newFixture(t, Options{})
	data := []byte("ours, already there")
	fx.commit(1, "mine", data)
	// As if an attempt of the last run stored it but the answer was lost:
	// the record counts an attempt, the server has the same bytes.
	recs, _ := fx.cache.OutboxRecords()
	recs[0].Attempts = 1
	s := sum(data)
	recs[0].SHA256 = s[:]
	if err := fx.cache.PutOutbox(recs[0], true); err != nil {
		t.Fatal(err)
	}
	fx.close()
	fx.origin.Put("up/mine", data)
	fx.origin.Put("up/theirs", []byte("other bytes"))
	fx.open()
	fx.commit(2, "theirs", []byte("our bytes"))
	fx.u.Start()
	if st, err := fx.waitDone("mine", 1); st != "sent" || err != nil {
		t.Fatalf("mine: %s, %v", st, err)
	}
	if st, _ := fx.waitDone("theirs", 1); st != "failed" {
		t.Fatalf("theirs: %s", st)
	}
}

func TestCloseIsIdempotentAndStopsCalls(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.u.Start()
	if err := fx.u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fx.u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fx.u.Commit(1, fx.stage(1, "late", nil)); !errors.Is(err, errClosed) {
		t.Errorf("Commit after Close: %v", err)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	c, err := cache.Open(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, o := range []Options{
		{URL: "http://h/no-slash", StagedDir: "/x"},
		{URL: "ftp://h/", StagedDir: "/x"},
		{URL: "http://h/", StagedDir: "/x", Protocol: "ftp"},
		{URL: "http://h/", StagedDir: "/x", Encoding: "br"},
		{URL: "http://h/"},
		{URL: "http://h/", StagedDir: "/x", Encoding: "gzip"},
	} {
		if u, err := New(c, o); err == nil {
			u.Close()
			t.Errorf("New accepted %+v", o)
		}
	}
}
