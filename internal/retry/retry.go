// Package retry holds the timing rules that every transfer of ferry shares,
// downloads and uploads alike: the delay before the next attempt and the
// reading of a server's Retry-After. Not a stable API.
package retry

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// MaxRetryAfter caps what a server may ask for with Retry-After.
const MaxRetryAfter = time.Hour

// Backoff is the delay before attempt n+1 after n failures in a row:
// base doubled per failure up to max, with jitter over its upper half (so
// that many transfers that failed together do not retry together).
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// ParseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// It returns 0 when the value is absent or malformed, and at most
// MaxRetryAfter.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return min(time.Duration(secs)*time.Second, MaxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter)
	}
	return 0
}
