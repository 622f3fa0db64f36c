package cache

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestOutboxRecordsPersistInOrder(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	sum := sha256.Sum256([]byte("x"))
	recs := []OutboxRecord{
		{Seq: 300, Path: "b/c.bin", State: OutboxQueued, Size: 1 << 40, SHA256: sum[:], MTime: -5,
			Mode: 0o644, Attempts: 3, TusURL: "http://h/u?id=1", ETag: `"e"`, Err: "HTTP 503"},
		{Seq: 2, Path: "a", State: OutboxSent, MTime: 1_700_000_000_000_000_000},
		{Seq: 1 << 60, Path: "ü/ö", State: OutboxFailed, Err: "exists"},
		{Seq: 7, Path: "open", State: OutboxOpen, Size: 9},
	}
	for _, r := range recs {
		if err := c.PutOutbox(r, r.Seq == 2); err != nil {
			t.Fatal(err)
		}
	}
	// Replace one, delete one, delete an absent one.
	recs[1].State, recs[1].ETag = OutboxQueued, `"x"`
	if err := c.PutOutbox(recs[1], true); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteOutbox(7); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteOutbox(12345); err != nil {
		t.Fatal(err)
	}
	mustClose(t, c)

	c = openTest(t, dir, Options{})
	got, err := c.OutboxRecords()
	if err != nil {
		t.Fatal(err)
	}
	want := []OutboxRecord{recs[1], recs[0], recs[2]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("records after reopen:\n got %+v\nwant %+v", got, want)
	}
	// Outbox records are not file records: the file count is unchanged.
	if st := c.Stats(); st.Files != 0 {
		t.Errorf("Stats().Files = %d with only outbox records", st.Files)
	}
}

func TestOutboxRejectsBadRecords(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	if err := c.PutOutbox(OutboxRecord{Seq: 0, Path: "a", State: OutboxQueued}, false); err == nil {
		t.Error("sequence 0 accepted")
	}
	if err := c.PutOutbox(OutboxRecord{Seq: 1, Path: "a", State: 9}, false); err == nil {
		t.Error("state 9 accepted")
	}
	good := encodeOutboxRecord(&OutboxRecord{Seq: 1, Path: "a", State: OutboxQueued, SHA256: make([]byte, 32)})
	if _, err := decodeOutboxRecord(1, good); err != nil {
		t.Fatalf("good record: %v", err)
	}
	for name, b := range map[string][]byte{
		"truncated":   good[:len(good)-1],
		"trailing":    append(bytes.Clone(good), 0),
		"version":     append([]byte{9}, good[1:]...),
		"short sum":   encodeOutboxRecord(&OutboxRecord{Seq: 1, Path: "a", State: OutboxQueued, SHA256: make([]byte, 5)}),
		"bad state":   encodeOutboxRecord(&OutboxRecord{Seq: 1, Path: "a", State: 0}),
		"empty value": nil,
	} {
		if _, err := decodeOutboxRecord(1, b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestOutboxKeys(t *testing.T) {
	lo, hi := outboxSpan()
	for _, seq := range []uint64{1, 255, 256, 1 << 63} {
		k := outboxKey(seq)
		if bytes.Compare(k, lo) < 0 || bytes.Compare(k, hi) >= 0 {
			t.Errorf("key %x outside the outbox span", k)
		}
		if got, err := parseOutboxKey(k); err != nil || got != seq {
			t.Errorf("parseOutboxKey(%x) = %d, %v", k, got, err)
		}
	}
	if bytes.Compare(outboxKey(255), outboxKey(256)) >= 0 {
		t.Error("outbox keys do not sort by sequence")
	}
	for _, k := range [][]byte{pathKey("o"), fileKey(1), blockKey(1, 1), keyNextID, metaKey("open")} {
		if bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 {
			t.Errorf("key %x of another family inside the outbox span", k)
		}
	}
	if _, err := parseOutboxKey([]byte("o/short")); err == nil {
		t.Error("short key parsed")
	}
}

func TestOutboxDirIsPrivate(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, Options{})
	if err := os.MkdirAll(filepath.Join(dir, "outbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "outbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := c.OutboxDir()
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(dir, "outbox") {
		t.Errorf("OutboxDir = %s", got)
	}
	fi, err := os.Stat(got)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("outbox dir mode %v, %v; want 0700", fi.Mode(), err)
	}
}

func TestOutboxAfterClose(t *testing.T) {
	c := openTest(t, t.TempDir(), Options{})
	mustClose(t, c)
	if _, err := c.OutboxRecords(); err != ErrClosed {
		t.Errorf("OutboxRecords after Close: %v", err)
	}
	if err := c.PutOutbox(OutboxRecord{Seq: 1, State: OutboxQueued}, true); err != ErrClosed {
		t.Errorf("PutOutbox after Close: %v", err)
	}
	if err := c.DeleteOutbox(1); err != ErrClosed {
		t.Errorf("DeleteOutbox after Close: %v", err)
	}
}
