package fetcher

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bandwidth is a limit on background transfer, constant or varying by the
// time of day. The zero value means no limit.
type Bandwidth struct {
	slots []slot // sorted by minute; empty: unlimited
}

// slot is a rate in force from a minute of the day on.
type slot struct {
	minute int   // minutes after midnight, local time
	rate   int64 // bytes per second; 0: unlimited
}

// ParseBandwidth reads a --bwlimit value: a rate ("10M", "512K", "off"), or
// a time table of "HH:MM,RATE" entries separated by spaces
// ("08:00,1M 18:00,off"): each rate holds from its time until the next
// entry's, the last one wrapping past midnight to the first. Rates are bytes
// per second with optional binary suffixes K, M, G (also KiB, MiB, GiB).
func ParseBandwidth(s string) (Bandwidth, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Bandwidth{}, nil
	}
	fields := strings.Fields(s)
	if len(fields) == 1 && !strings.Contains(s, ",") {
		r, err := parseRate(s)
		if err != nil {
			return Bandwidth{}, err
		}
		return Bandwidth{slots: []slot{{0, r}}}, nil
	}
	var b Bandwidth
	seen := map[int]bool{}
	for _, f := range fields {
		at, rate, ok := strings.Cut(f, ",")
		if !ok {
			return Bandwidth{}, fmt.Errorf("fetcher: bandwidth entry %q: want HH:MM,RATE", f)
		}
		t, err := time.Parse("15:04", at)
		if err != nil {
			return Bandwidth{}, fmt.Errorf("fetcher: bandwidth entry %q: time %q is not HH:MM", f, at)
		}
		r, err := parseRate(rate)
		if err != nil {
			return Bandwidth{}, err
		}
		m := t.Hour()*60 + t.Minute()
		if seen[m] {
			return Bandwidth{}, fmt.Errorf("fetcher: bandwidth entry %q: time %s given twice", f, at)
		}
		seen[m] = true
		b.slots = append(b.slots, slot{m, r})
	}
	sort.Slice(b.slots, func(i, j int) bool { return b.slots[i].minute < b.slots[j].minute })
	return b, nil
}

// parseRate reads "off", "0" or a byte count with an optional suffix.
func parseRate(s string) (int64, error) {
	if s == "off" || s == "0" {
		return 0, nil
	}
	num := strings.TrimRight(s, "KMGiBkmgb")
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "i"))
	unit = strings.TrimSuffix(unit, "I")
	mult := map[string]int64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || n <= 0 || n*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("fetcher: bandwidth %q: want a rate like 512K, 10M or 1.5G (bytes per second), or off", s)
	}
	return int64(n * float64(mult)), nil
}

// RateAt is the limit in force at t in bytes per second; 0 means none.
func (b Bandwidth) RateAt(t time.Time) int64 {
	if len(b.slots) == 0 {
		return 0
	}
	m := t.Hour()*60 + t.Minute()
	cur := b.slots[len(b.slots)-1] // before the first entry: yesterday's last
	for _, s := range b.slots {
		if s.minute > m {
			break
		}
		cur = s
	}
	return cur.rate
}

// String formats the table back.
func (b Bandwidth) String() string {
	if len(b.slots) == 0 {
		return "off"
	}
	var parts []string
	for _, s := range b.slots {
		r := "off"
		if s.rate > 0 {
			r = strconv.FormatInt(s.rate, 10)
		}
		parts = append(parts, fmt.Sprintf("%02d:%02d,%s", s.minute/60, s.minute%60, r))
	}
	return strings.Join(parts, " ")
}

// limiter is a token bucket whose rate follows a Bandwidth table. It is
// shared by every background transfer.
type limiter struct {
	bw  Bandwidth
	now func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// wait blocks until n bytes may be transferred, or ctx ends.
func (l *limiter) wait(ctx context.Context, n int64) error {
	for {
		l.mu.Lock()
		now := l.now()
		rate := l.bw.RateAt(now)
		if rate == 0 {
			l.tokens, l.last = 0, now
			l.mu.Unlock()
			return nil
		}
		burst := float64(max(rate, n))
		if !l.last.IsZero() {
			l.tokens = min(burst, l.tokens+now.Sub(l.last).Seconds()*float64(rate))
		}
		l.last = now
		if l.tokens >= float64(n) {
			l.tokens -= float64(n)
			l.mu.Unlock()
			return nil
		}
		// Sleep until enough tokens, but at most a second: the table may
		// change the rate meanwhile.
		d := min(time.Duration((float64(n)-l.tokens)/float64(rate)*float64(time.Second)), time.Second)
		l.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
