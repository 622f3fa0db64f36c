package fs

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// maxResolvers bounds the size look-ups (HEAD requests) running at once
// when Options.MaxConns does not say.
const maxResolvers = 8

// resolveSizes asks the fetcher for the size of every file whose manifest
// entry has none, a few at a time, before the mount goes live: a file's size
// must be right in its first stat. The first failure names the file, its
// URL and its manifest line.
func resolveSizes(ctx context.Context, files []prepared, maxConns int) error {
	limit := maxConns
	if limit <= 0 {
		limit = maxResolvers
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for i := range files {
		f := &files[i]
		if f.r.size >= 0 {
			continue
		}
		g.Go(func() error {
			size, err := f.r.fetch.Size(ctx)
			if err != nil {
				return fmt.Errorf("fs: manifest line %d: %s (%s): size: %w", f.mf.Line, f.mf.Path, f.mf.URL, err)
			}
			f.r.size = size
			return nil
		})
	}
	return g.Wait()
}
