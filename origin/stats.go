package origin

import (
	"maps"
	"net/http"
	"slices"
)

// maxRanges is how many Range header values Stats keeps per path.
const maxRanges = 10000

// Stats counts what happened on one path since the server started or
// ResetStats. It is a copy; later requests do not change it.
type Stats struct {
	Requests      int64 // requests of any method
	RangeRequests int64 // GET and HEAD requests that carried a Range header
	HeadRequests  int64
	Puts          int64
	// BytesSent counts response body bytes the connection accepted
	// (content, error pages and filler), not headers.
	BytesSent int64
	// BytesReceived counts PUT body bytes read from the connection, as sent
	// (before Content-Encoding is decoded).
	BytesReceived int64
	// Ranges holds the Range header values of the requests in arrival order,
	// the last 10000 at most.
	Ranges []string
	// Statuses counts responses by status code. Code 0 counts requests that
	// got no response at all (Down, or a PUT reset before its answer).
	Statuses map[int]int64
	// Resets counts connections the server cut on purpose: Down, ResetAfter
	// and ShortBody.
	Resets int64
}

// pathStats is the live form of Stats, guarded by Server.mu.
type pathStats struct {
	Stats
}

// Stats returns the counters of path ("" is not a total; see TotalBytesSent).
func (s *Server) Stats(path string) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.stats[cleanPath(path)]
	if !ok {
		return Stats{Statuses: map[int]int64{}}
	}
	out := ps.Stats
	out.Ranges = slices.Clone(ps.Ranges)
	if len(out.Ranges) > maxRanges {
		out.Ranges = out.Ranges[len(out.Ranges)-maxRanges:]
	}
	out.Statuses = maps.Clone(ps.Statuses)
	return out
}

// TotalBytesSent returns the response body bytes sent on all paths since the
// server started or ResetStats.
func (s *Server) TotalBytesSent() int64 {
	return s.totalSent.Load()
}

// ResetStats zeroes every counter.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.stats {
		ps.Stats = Stats{Statuses: map[int]int64{}}
	}
	s.totalSent.Store(0)
}

// statsLocked returns the live counters of path, creating them.
func (s *Server) statsLocked(path string) *pathStats {
	ps, ok := s.stats[path]
	if !ok {
		ps = &pathStats{Stats{Statuses: map[int]int64{}}}
		s.stats[path] = ps
	}
	return ps
}

// countRequest counts an arriving request.
func (s *Server) countRequest(path string, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.statsLocked(path)
	ps.Requests++
	switch r.Method {
	case http.MethodHead:
		ps.HeadRequests++
	case http.MethodPut:
		ps.Puts++
	}
	if rng := r.Header.Get("Range"); rng != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		ps.RangeRequests++
		// Trim in bulk so appends stay amortized O(1).
		if len(ps.Ranges) >= 2*maxRanges {
			ps.Ranges = append(ps.Ranges[:0], ps.Ranges[len(ps.Ranges)-maxRanges+1:]...)
		}
		ps.Ranges = append(ps.Ranges, rng)
	}
}

// countStatus counts a response status (0: none) and, when cut, a reset.
func (s *Server) countStatus(path string, code int, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.statsLocked(path)
	ps.Statuses[code]++
	if reset {
		ps.Resets++
	}
}

// countReset counts a connection cut after its status was counted.
func (s *Server) countReset(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statsLocked(path).Resets++
}

// countSent counts n body bytes sent on path. When content is true they are
// object content and advance a pending MutateAfterBytes.
func (s *Server) countSent(path string, n int64, content bool) {
	if n <= 0 {
		return
	}
	s.totalSent.Add(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statsLocked(path).BytesSent += n
	if !content {
		return
	}
	if m, ok := s.mutations[path]; ok {
		m.left -= n
		if m.left <= 0 {
			delete(s.mutations, path)
			s.storeLocked(path, m.next)
		}
	}
}

// uncountSent takes back n bytes counted by countSent that were not sent.
// A mutation they triggered stays done.
func (s *Server) uncountSent(path string, n int64) {
	s.totalSent.Add(-n)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statsLocked(path).BytesSent -= n
}

// countReceived counts n PUT body bytes read on path.
func (s *Server) countReceived(path string, n int64) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statsLocked(path).BytesReceived += n
}
