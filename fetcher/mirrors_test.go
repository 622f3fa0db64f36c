package fetcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"ferry/origin"
)

// mirrorFixture serves the same path from the main origin and two mirrors:
// one good, one with other bytes of the same size.
func mirrorFixture(t *testing.T, opts Options, size int64) (*fixture, *origin.Server, *origin.Server, Spec) {
	fx := newFixture(t, opts)
	good, bad := origin.New(origin.Options{}), origin.New(origin.Options{})
	good.StartTest(t)
	bad.StartTest(t)
	fx.origin.PutGenerated("m.bin", size, 21)
	good.PutGenerated("m.bin", size, 21)
	bad.PutGenerated("m.bin", size, 99)
	spec := Spec{Path: "m.bin", URL: fx.origin.URL("m.bin"), Size: size,
		Mirrors: []string{bad.URL("m.bin"), good.URL("m.bin")}}
	return fx, good, bad, spec
}

func TestMirrorWithWrongBytesIsDroppedByBlockDigests(t *testing.T) {
	const size = 16 * testBS
	fx, good, bad, spec := mirrorFixture(t, Options{Background: true, ChunkSize: testBS}, size)
	for i := int64(0); i < size/testBS; i++ {
		spec.BlockHashes = append(spec.BlockHashes, sha256.Sum256(want(21, i*testBS, testBS)))
	}
	spec.BlockHashSize = testBS
	fx.origin.SetDown(true) // the main URL is out: only mirrors can help
	st := newMemStore(testBS)
	fl := fx.f.Add(spec, st)
	fx.f.Start()
	waitState(t, fl, StateComplete)
	got, _ := st.bytes(0, size)
	if !bytes.Equal(got, want(21, 0, size)) {
		t.Fatal("file differs from the object")
	}
	if good.Stats("m.bin").BytesSent == 0 {
		t.Fatal("the good mirror served nothing")
	}
	// Requests already in flight when its first answer was checked may
	// still reach it; none after.
	if n := bad.Stats("m.bin").Requests; n > int64(fx.f.lowLimit()) {
		t.Fatalf("the bad mirror was asked %d times; it should be dropped after its first answer", n)
	}
}

func TestMirrorWithWrongBytesIsCaughtByFileDigest(t *testing.T) {
	const size = 16 * testBS
	fx, _, _, spec := mirrorFixture(t, Options{Background: true, ChunkSize: testBS}, size)
	sum := sha256.Sum256(want(21, 0, size))
	spec.SHA256 = hexString(sum[:])
	st := newMemStore(testBS)
	fl := fx.f.Add(spec, st)
	fx.f.Start()
	// Background fill spreads over all three sources; the bad mirror's
	// blocks make the digest fail once, and the refetch uses the main URL.
	waitState(t, fl, StateComplete)
	for fl.Info().State != StateComplete || !fl.verifiedForTest() {
		if s, err := fl.State(); s == StateFailed {
			t.Fatalf("failed: %v", err)
		}
		if err := fl.Ensure(context.Background(), 0, size); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := st.bytes(0, size)
	if !bytes.Equal(got, want(21, 0, size)) {
		t.Fatal("file differs from the object")
	}
}
