package fetcher

import (
	"context"
	"testing"
	"time"

	"ferry/manifest"
)

func TestParseBandwidth(t *testing.T) {
	day := func(h, m int) time.Time { return time.Date(2026, 1, 2, h, m, 0, 0, time.Local) }
	cases := []struct {
		in   string
		at   time.Time
		want int64
	}{
		{"", day(12, 0), 0},
		{"off", day(12, 0), 0},
		{"10M", day(3, 0), 10 << 20},
		{"512K", day(3, 0), 512 << 10},
		{"1.5MiB", day(3, 0), 3 << 19},
		{"2048", day(3, 0), 2048},
		{"08:00,1M 18:00,off", day(7, 59), 0},
		{"08:00,1M 18:00,off", day(8, 0), 1 << 20},
		{"08:00,1M 18:00,off", day(17, 59), 1 << 20},
		{"08:00,1M 18:00,off", day(18, 0), 0},
		{"18:00,512K 08:00,off", day(2, 0), 512 << 10}, // wraps past midnight
	}
	for _, c := range cases {
		b, err := ParseBandwidth(c.in)
		if err != nil {
			t.Fatalf("ParseBandwidth(%q): %v", c.in, err)
		}
		if got := b.RateAt(c.at); got != c.want {
			t.Errorf("ParseBandwidth(%q).RateAt(%s) = %d, want %d", c.in, c.at.Format("15:04"), got, c.want)
		}
	}
	for _, bad := range []string{"fast", "-1M", "10X", "25:00,1M", "08:00", "08:00,1M 08:00,2M", "08:00,zz"} {
		if _, err := ParseBandwidth(bad); err == nil {
			t.Errorf("ParseBandwidth(%q) accepted", bad)
		}
	}
}

func TestBandwidthLimitsBackgroundOnly(t *testing.T) {
	const rate = 128 << 10
	bw, _ := ParseBandwidth("128K")
	fx := newFixture(t, Options{Background: true, Bandwidth: bw, ChunkSize: testBS})
	bg, bgStore := fx.add("bg.bin", 64*testBS, 1, manifest.Normal)
	rd, _ := fx.add("read.bin", 64*testBS, 2, manifest.Normal)
	start := time.Now()
	fx.f.Start()
	// A read of 4 MiB is not throttled: at 128 KiB/s it would take 32 s.
	if err := rd.Ensure(context.Background(), 0, 64*testBS); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	elapsed := time.Since(start).Seconds()
	// Background fill, though, stays within the rate (plus one burst of a
	// block and one block per parallel worker in flight).
	limit := int64(elapsed*rate) + int64(fx.f.lowLimit()+2)*testBS
	if got := bgStore.LocalBytes(); got > limit {
		t.Fatalf("background fetched %d bytes in %.2fs, above the %d B/s limit (bound %d)", got, elapsed, rate, limit)
	}
	if s, _ := bg.State(); s == StateComplete {
		t.Fatal("throttled background file completed")
	}
}
