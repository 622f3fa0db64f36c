// Package lint holds tests that enforce the project's mechanical
// conventions: which package may import which, and what production code
// must not call. It has no code of its own. Not a stable API.
package lint
