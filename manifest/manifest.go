// Package manifest parses and validates ferry manifests. Not a stable API.
package manifest

// Priority is a file's background transfer priority (BITS' four levels).
type Priority int

const (
	Low Priority = iota
	Normal
	High
	Foreground
)
