package fetcher

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"
)

// maxWarmHosts bounds the origins Warm connects to.
const maxWarmHosts = 4

// Warm opens a connection to the origin of each URL (at most maxWarmHosts
// distinct hosts) in the background, with a HEAD request, so that the
// first read of a file does not also pay for the TCP and TLS handshakes.
// The answer does not matter (a 401 or 404 warms the connection as well);
// failures are logged at debug level and change nothing. Close waits for
// these requests.
func (f *Fetcher) Warm(urls []string) {
	seen := make(map[string]bool)
	for _, raw := range urls {
		if len(seen) == maxWarmHosts {
			break
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		key := u.Scheme + "://" + u.Host
		if seen[key] {
			continue
		}
		seen[key] = true
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return
		}
		f.wg.Add(1)
		f.warming.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.wg.Done()
			defer f.warming.Done()
			f.warm(raw)
		}()
	}
}

func (f *Fetcher) warm(raw string) {
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, raw, nil)
	if err != nil {
		return
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		f.log.Debug("fetcher: warming a connection failed", "url", raw, "err", err)
		return
	}
	// Drained and closed, the connection goes back to the idle pool.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
