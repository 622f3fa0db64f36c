package cache

import "testing"

func TestBitmap(t *testing.T) {
	var nilMap *bitmap
	if nilMap.has(0) || nilMap.firstClear(3, 10) != 3 || nilMap.firstSet(0) != -1 {
		t.Fatal("nil bitmap is not empty")
	}
	b := newBitmap(200)
	for _, i := range []int64{0, 1, 63, 64, 130} {
		if !b.set(i) || b.set(i) {
			t.Fatalf("set(%d) twice", i)
		}
	}
	cases := []struct{ first, last, want int64 }{
		{0, 1, -1}, {0, 2, 2}, {63, 64, -1}, {63, 65, 65}, {130, 130, -1},
		{130, 500, 131}, {5, 4, -1}, {-3, 0, -1}, {300, 400, 300},
	}
	for _, c := range cases {
		if got := b.firstClear(c.first, c.last); got != c.want {
			t.Errorf("firstClear(%d, %d) = %d, want %d", c.first, c.last, got, c.want)
		}
	}
	full := newBitmap(128)
	for i := range int64(128) {
		full.set(i)
	}
	if got := full.firstClear(0, 200); got != 128 {
		t.Errorf("firstClear past the capacity = %d, want 128", got)
	}
	if b.firstSet(2) != 63 || b.firstSet(65) != 130 || b.firstSet(131) != -1 {
		t.Error("firstSet wrong")
	}
	g := b.grown(1000)
	if g.capacity() < 1000 || !g.has(130) || g.has(131) {
		t.Error("grown lost bits")
	}
	if !b.clear(64) || b.clear(64) || b.has(64) {
		t.Error("clear wrong")
	}
}
