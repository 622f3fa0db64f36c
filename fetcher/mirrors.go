package fetcher

import (
	"errors"
	"fmt"
)

// source is one URL a file can be fetched from: the manifest's url (the
// first, the reference for the object's version) or one of its mirrors.
//
// A mirror's answers must agree with the file: the same size as pinned (or
// declared), the same validator throughout the run, real range support, and
// blocks that match the manifest's digests. A mirror that breaks any of
// these is dropped with a warning and not used again until the next mount.
// Only the main URL can show that the object changed; a mirror never resets
// a file.
type source struct {
	url  string
	main bool

	// Guarded by Fetcher.mu.
	seen    Remote // the validator of its first answer in this run
	hasSeen bool
	dropped bool
}

// errDropped reports a mirror dropped for an answer that disagrees with the
// file; the job is retried at once from another source.
var errDropped = errors.New("fetcher: mirror dropped")

func newSources(spec Spec) []*source {
	srcs := []*source{{url: spec.URL, main: true}}
	for _, m := range spec.Mirrors {
		srcs = append(srcs, &source{url: m})
	}
	return srcs
}

// pickSourceLocked chooses where job j fetches from. Streams, and files
// whose version is not pinned yet (unless the size is declared), use the
// main URL while it works; background jobs otherwise spread over the
// healthy sources, and reads use the preferred one (the last that worked).
// Fetcher.mu is held.
func (fl *File) pickSourceLocked(j *job, pinned bool) *source {
	if fl.srcs == nil {
		fl.srcs = newSources(fl.spec)
	}
	var healthy []*source
	for _, s := range fl.srcs {
		if !s.dropped {
			healthy = append(healthy, s)
		}
	}
	if fl.mainOnly {
		return fl.srcs[0]
	}
	if len(healthy) <= 1 || j.stream || (!pinned && fl.spec.Size < 0) {
		if fl.pref != nil && !fl.pref.dropped && (fl.pref.main || pinned || fl.spec.Size >= 0) && !j.stream {
			return fl.pref
		}
		return fl.srcs[0]
	}
	if j.class == classBackground {
		fl.srcNext++
		return healthy[fl.srcNext%len(healthy)]
	}
	if fl.pref != nil && !fl.pref.dropped {
		return fl.pref
	}
	return healthy[0]
}

// failedSourceLocked moves reads to the next healthy source after s failed.
// It reports whether every source has now been tried since the last
// success, that is whether the file should back off. Fetcher.mu is held.
func (fl *File) failedSourceLocked(s *source) bool {
	n := len(fl.srcs)
	start := 0
	for i, x := range fl.srcs {
		if x == s {
			start = i
		}
	}
	for k := 1; k <= n; k++ {
		if c := fl.srcs[(start+k)%n]; !c.dropped {
			fl.pref = c
			break
		}
	}
	fl.srcFailures++
	healthy := 0
	for _, x := range fl.srcs {
		if !x.dropped {
			healthy++
		}
	}
	return fl.srcFailures%max(healthy, 1) == 0
}

// dropLocked stops using mirror s. Fetcher.mu is held.
func (fl *File) dropLocked(s *source, why string) error {
	if !s.dropped {
		s.dropped = true
		fl.f.log.Warn("mirror dropped", "path", fl.spec.Path, "mirror", s.url, "why", why)
	}
	if fl.pref == s {
		fl.pref = fl.srcs[0]
	}
	return fmt.Errorf("%w: %s: %s", errDropped, s.url, why)
}

// acceptMirror checks a mirror's answer against the file: its size, and its
// validator against the one it gave first. It returns errDropped when the
// mirror disagrees.
func (fl *File) acceptMirror(s *source, got Remote, pinned Remote, isPinned bool) error {
	fl.f.mu.Lock()
	defer fl.f.mu.Unlock()
	want := fl.spec.Size
	if isPinned {
		want = pinned.Size
	}
	if got.Size != want {
		return fl.dropLocked(s, fmt.Sprintf("size %d, the file has %d", got.Size, want))
	}
	if s.hasSeen && !sameVersion(s.seen, got) {
		return fl.dropLocked(s, fmt.Sprintf("changed during the transfer: ETag %q, was %q", got.ETag, s.seen.ETag))
	}
	s.seen, s.hasSeen = got, true
	return nil
}
