package origin

import "testing"

// StartTest starts s like Start, registers Close with t.Cleanup, and fails
// the test when the server cannot start. It returns the base URL.
func (s *Server) StartTest(t testing.TB) string {
	t.Helper()
	base, err := s.Start()
	if err != nil {
		t.Fatalf("origin: start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("origin: close: %v", err)
		}
	})
	return base
}
