package origin

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

func TestStats(t *testing.T) {
	h := newHarness(t)
	h.s.PutGenerated("a", 1000, 1)
	h.s.Put("b", []byte("bb"))
	ranges := []string{"bytes=0-9", "bytes=-5", "bytes=500-"}
	for _, r := range ranges {
		resp, _ := h.get("a", "Range", r)
		wantStatus(t, resp, 206)
	}
	h.get("a")
	if _, _, err := h.do(http.MethodHead, "a", nil); err != nil {
		t.Fatal(err)
	}
	h.get("b")

	st := h.s.Stats("a")
	want := Stats{Requests: 5, RangeRequests: 3, HeadRequests: 1, BytesSent: 10 + 5 + 500 + 1000,
		Ranges: ranges, Statuses: map[int]int64{206: 3, 200: 2}}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("stats\n%+v\nwant\n%+v", st, want)
	}
	if got := h.s.TotalBytesSent(); got != 1515+2 {
		t.Fatalf("TotalBytesSent %d", got)
	}
	// Stats is a copy.
	st.Ranges[0] = "changed"
	st.Statuses[206] = 0
	if again := h.s.Stats("a"); again.Ranges[0] != ranges[0] || again.Statuses[206] != 3 {
		t.Fatal("Stats shares its slices or maps")
	}

	h.s.ResetStats()
	if st := h.s.Stats("a"); st.Requests != 0 || st.BytesSent != 0 || len(st.Ranges) != 0 || len(st.Statuses) != 0 {
		t.Fatalf("after ResetStats: %+v", st)
	}
	if h.s.TotalBytesSent() != 0 {
		t.Fatal("TotalBytesSent after ResetStats")
	}
	if st := h.s.Stats("never"); st.Requests != 0 || st.Statuses == nil {
		t.Fatalf("unseen path: %+v", st)
	}
}

func TestStatsKeepLastRanges(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/p", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*maxRanges + 12345
	for i := range n {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", i))
		s.countRequest("p", req)
	}
	st := s.Stats("p")
	if st.RangeRequests != n || len(st.Ranges) != maxRanges {
		t.Fatalf("%d range requests, %d kept", st.RangeRequests, len(st.Ranges))
	}
	want := make([]string, 0, maxRanges)
	for i := n - maxRanges; i < n; i++ {
		want = append(want, fmt.Sprintf("bytes=%d-", i))
	}
	if !slices.Equal(st.Ranges, want) {
		t.Fatalf("kept %q ... %q", st.Ranges[0], st.Ranges[len(st.Ranges)-1])
	}
}
