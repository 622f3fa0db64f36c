package retry

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoffGrowsWithinBounds(t *testing.T) {
	base, top := 100*time.Millisecond, 2*time.Second
	for n := 1; n <= 12; n++ {
		want := base
		for i := 1; i < n && want < top; i++ {
			want *= 2
		}
		want = min(want, top)
		for range 50 {
			if d := Backoff(n, base, top); d < want/2 || d > want {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":         0,
		"0":        0,
		"7":        7 * time.Second,
		"-3":       0,
		"soon":     0,
		"99999999": MaxRetryAfter,
		now.Add(90 * time.Second).Format(http.TimeFormat):  90 * time.Second,
		now.Add(-90 * time.Second).Format(http.TimeFormat): 0,
	}
	for in, want := range cases {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
