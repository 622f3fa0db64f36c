// Package manifest parses, validates and writes ferry manifests. Not a stable
// API.
//
// A manifest lists the files a mount shows, each with the URL its bytes come
// from, and optionally an outbox directory whose files are uploaded. Parse
// reads one from an io.Reader, Open from a file (plain, gzip or zstd), and
// Format writes one back. The package does no I/O beyond reading the
// manifest, and keeps no global state.
//
// # Format
//
// A manifest is one JSON object in UTF-8 (a leading byte order mark is
// ignored), optionally compressed with gzip (".json.gz") or zstd
// (".json.zst"):
//
//	{
//	  "files": [
//	    {"path": "data/big.bin", "url": "https://origin.example/big.bin",
//	     "size": 1073741824, "sha256": "…", "mtime": "2026-01-02T03:04:05Z",
//	     "priority": "high", "mirrors": ["https://mirror.example/big.bin"],
//	     "headers": {"Authorization": "Bearer ${ORIGIN_TOKEN}"}}
//	  ],
//	  "outbox": {"dir": "outbox", "url": "https://upload.example/incoming/"}
//	}
//
// The top-level object has the key "files" (required; an array, which may be
// empty) and the key "outbox" (optional). Keys are case-sensitive, and a key
// that is not listed here is an error, so typos are caught. A key may appear
// only once per object. An optional key whose value is null counts as left
// out. Nothing but white space may follow the top-level object.
//
// Each element of "files" is an object with these keys:
//
//   - "path" (required): where the file appears in the mount. Relative,
//     "/"-separated, with no empty, "." or ".." segments (so no leading or
//     trailing "/" and no "//"), no NUL byte, at most 255 bytes per segment
//     and 4096 bytes in all. Any other byte is allowed, "\" included.
//     Directories are implied by the paths. Paths are unique, and no path is
//     also a directory of another ("a" and "a/b" conflict).
//   - "url" (required): an absolute http or https URL with a host and
//     without a #fragment; a ?query is allowed.
//   - "size": an integer from 0 to 2^62, in bytes. Without it the size is
//     unknown (File.Size is -1) and the fetcher finds it out.
//   - "sha256": the SHA-256 of the whole file as 64 hex digits, either case
//     (stored in lowercase).
//   - "mtime": the modification time in RFC 3339, like
//     "2026-01-02T03:04:05.5+01:00" (stored in UTC). Without it the mtime
//     is the zero time.
//   - "priority": "foreground", "high", "normal" (the default) or "low".
//   - "pin": true keeps the file local and never evicts it.
//   - "mirrors": an array of URLs with the same rules as "url".
//   - "headers": an object of HTTP header names and string values sent with
//     every request for the file. Names are HTTP tokens; Range, If-Range,
//     Host, Content-Length, Transfer-Encoding and Connection are set by ferry
//     and may not be given; no two names may differ only in case. In a value,
//     ${NAME} is replaced with the environment variable NAME (a letter or
//     "_" followed by letters, digits and "_") when the manifest is parsed;
//     a variable that is not set is an error naming it. "$$" and a "$" that
//     is not followed by "{" stay as written. After expansion a value may
//     not contain control characters other than tab.
//   - "block_sha256": per-block digests, as
//     {"block_size": 1048576, "hashes": ["<64 hex digits>", ...]}. The block
//     size is a power of two from 1 to 2^30; block i covers bytes
//     [i*block_size, (i+1)*block_size) and the last block may be short.
//     When "size" is given there must be exactly ceil(size/block_size)
//     hashes.
//
// The "outbox" object has these keys:
//
//   - "dir" (required): the outbox directory in the mount, with the same
//     rules as a file path. No file may be the directory, be inside it, or
//     contain it.
//   - "url" (required): the base URL uploads go to, http or https, without
//     a ?query or #fragment. A "/" is appended if it does not end with one.
//     A file at DIR/x/y is uploaded to URL + "x/y".
//   - "protocol": "put" (the default: one HTTP PUT per file) or "tus".
//   - "overwrite": true allows replacing an object that already exists.
//   - "encoding": "gzip" or "zstd" to compress uploads, or "" (the default).
//   - "headers": as for files.
//
// # Errors
//
// A problem with the content is reported as an *Error that names the
// manifest, the line of the offending value, the field and what is accepted:
//
//	manifest.json:12: files[3].path: "../x" leaves the mount (want a relative path without "." or ".." segments)
//
// Indexes in field names count from 0. Parse stops at the first problem. A
// problem across entries (a duplicate path, say) is reported on the line of
// the later entry and names the line of the earlier one.
//
// # Memory and speed
//
// Parse streams. It reads the top-level object and the "files" array with
// encoding/json's token API, decodes one entry at a time into a reused
// buffer, and walks that entry's bytes itself, which gives the exact offset,
// and so the line, of every value. It keeps the decoded entries, one entry's
// JSON text, a map of paths and one of directories; files with equal headers
// share one map. On a 2-core machine an entry takes about 3.5 µs and 300
// bytes of heap, so a million files parse in about 4 s (BenchmarkParse).
package manifest
