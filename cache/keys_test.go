package cache

import (
	"bytes"
	"testing"
)

func TestKeyFamiliesDoNotCollide(t *testing.T) {
	for i, a := range families {
		for j, b := range families {
			if i != j && bytes.HasPrefix(b, a) {
				t.Errorf("family %q is a prefix of family %q", a, b)
			}
		}
	}
	for _, k := range [][]byte{keyOpenMarker, keyLocalBytes, keyClock} {
		if !bytes.HasPrefix(k, prefixMeta) {
			t.Errorf("meta key %q lacks the prefix %q", k, prefixMeta)
		}
	}
}

func TestBlockKeysSortByFileThenIndex(t *testing.T) {
	keys := [][]byte{blockKey(1, 0), blockKey(1, 1), blockKey(1, 256), blockKey(2, 0), blockKey(256, 0)}
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			t.Fatalf("%x sorts after %x", keys[i-1], keys[i])
		}
	}
	lo, hi := blockSpan(1)
	for _, k := range keys {
		in := bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0
		if id := k[2+7]; in != (id == 1 && k[2] == 0) {
			t.Errorf("key %x in span of file 1: %v", k, in)
		}
	}
	idx, err := parseBlockKey(blockKey(7, 1<<40), 7)
	if err != nil || idx != 1<<40 {
		t.Fatalf("parseBlockKey = %d, %v", idx, err)
	}
	if _, err := parseBlockKey(blockKey(7, 1), 8); err == nil {
		t.Fatal("parseBlockKey accepted another file's key")
	}
	st := blockState{length: 1 << 20, crc: 0xdeadbeef, gen: 42, clock: 1<<40 + 3}
	if got, err := decodeBlockState(st.encode()); err != nil || got != st {
		t.Fatalf("block state round trip: %+v, %v", got, err)
	}
	bad := st.encode()
	bad[0] = 9
	if _, err := decodeBlockState(bad); err == nil {
		t.Fatal("unknown codec accepted")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{ID: 5, Path: "dir/ü.bin", URL: "https://x/y?z=1", BlockSize: 1 << 20, DeclaredSize: -1,
		Pinned: true, Remote: Remote{Size: 123, ETag: `W/"e"`, LastModified: "Tue, 01 Jan 2030 00:00:00 GMT"},
		Generation: 7, Restarts: 2, KeepLocal: true}
	enc := encodeRecord(&r)
	got, err := decodeRecord(5, enc)
	if err != nil || got != r {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for n := range len(enc) {
		if _, err := decodeRecord(5, enc[:n]); err == nil {
			t.Fatalf("truncated record of %d bytes decoded", n)
		}
	}
	if _, err := decodeRecord(5, append(enc, 0)); err == nil {
		t.Fatal("record with a trailing byte decoded")
	}
	v := append([]byte(nil), enc...)
	v[0] = recordVersion + 1
	if _, err := decodeRecord(5, v); err == nil {
		t.Fatal("record of an unknown version decoded")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(&Record{Path: "a", URL: "u", BlockSize: 4096, DeclaredSize: -1, Generation: 1}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(1, b)
		if err != nil {
			return
		}
		if again, err := decodeRecord(1, encodeRecord(&r)); err != nil || again != r {
			t.Fatalf("re-encoded record differs: %+v vs %+v (%v)", again, r, err)
		}
	})
}

func TestLRUKeysSortByClock(t *testing.T) {
	keys := [][]byte{lruKey(0, 9, 9), lruKey(1, 1, 0), lruKey(1, 1, 1), lruKey(1, 2, 0), lruKey(256, 0, 0)}
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			t.Fatalf("%x sorts after %x", keys[i-1], keys[i])
		}
	}
	lo, hi := lruSpan()
	for _, k := range keys {
		if bytes.Compare(k, lo) < 0 || bytes.Compare(k, hi) >= 0 {
			t.Fatalf("%x outside the LRU span", k)
		}
	}
	clock, id, idx, err := parseLRUKey(lruKey(7, 8, 1<<40))
	if err != nil || clock != 7 || id != 8 || idx != 1<<40 {
		t.Fatalf("parseLRUKey = %d %d %d %v", clock, id, idx, err)
	}
	if _, _, _, err := parseLRUKey(blockKey(1, 2)); err == nil {
		t.Fatal("parseLRUKey accepted a block key")
	}
}
