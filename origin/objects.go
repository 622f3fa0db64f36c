package origin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

// ObjectInfo describes the current version of an object.
type ObjectInfo struct {
	Size         int64
	ETag         string    // strong and quoted, as sent in the ETag header
	LastModified time.Time // UTC, whole seconds, as sent in Last-Modified
	Version      uint64    // server-wide counter; larger is newer
	Generated    bool      // stored by PutGenerated
	Seed         uint64    // the seed, when Generated
}

// object is one immutable version of an object. Responses hold a pointer to
// the version they started with.
type object struct {
	info ObjectInfo
	data []byte // nil when generated
}

// read returns the n bytes at off, in buf when they must be produced.
// The result may alias the object's data and must not be modified.
func (o *object) read(off int64, buf []byte) []byte {
	if !o.info.Generated {
		return o.data[off : off+int64(len(buf))]
	}
	GeneratedBytes(o.info.Seed, off, buf)
	return buf
}

func (o *object) lastModified() string {
	return o.info.LastModified.Format(http.TimeFormat)
}

// mutation is a pending MutateAfterBytes.
type mutation struct {
	left int64   // content bytes still to send before the swap
	next *object // unstored; see dataObject
}

// Put stores a copy of data as the object at path, replacing any previous
// version. The new version gets a new ETag and a Last-Modified later than
// the previous version's (second resolution, so it may lie in the future
// when versions follow each other within a second).
func (s *Server) Put(path string, data []byte) {
	s.store(path, dataObject(data))
}

// PutGenerated stores a generated object of size bytes at path: its content
// is GeneratedBytes(seed, ...), produced on the fly for each response, so
// the size costs no memory.
func (s *Server) PutGenerated(path string, size int64, seed uint64) {
	size = max(size, 0)
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(size))
	sum := sha256.Sum256(key[:])
	s.store(path, &object{info: ObjectInfo{Size: size, Generated: true, Seed: seed,
		ETag: hex.EncodeToString(sum[:8])}})
}

// Remove deletes the object at path; later requests get 404. Pending
// mutations of the path are dropped.
func (s *Server) Remove(path string) {
	path = cleanPath(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects, path)
	delete(s.mutations, path)
}

// Object returns the current version of the object at path.
func (s *Server) Object(path string) (ObjectInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[cleanPath(path)]
	if !ok {
		return ObjectInfo{}, false
	}
	return o.info, true
}

// Content returns a copy of the current content of the object at path. For
// a generated object it produces all of it, so mind the size.
func (s *Server) Content(path string) ([]byte, bool) {
	s.mu.Lock()
	o, ok := s.objects[cleanPath(path)]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	out := make([]byte, o.info.Size)
	copy(out, o.read(0, out))
	return out, true
}

// MutateAfterBytes replaces the object at path with newData (a new version,
// as Put) once n more content bytes of that path have been sent, counted
// over all responses from this call on. The response that crosses n keeps
// sending the old version to its end; the swap happens at the end of the
// write that crosses n, so within one write buffer (64 KiB) of n. n <= 0
// replaces at once. A later call replaces a pending mutation.
func (s *Server) MutateAfterBytes(path string, n int64, newData []byte) {
	if n <= 0 {
		s.Put(path, newData)
		return
	}
	m := &mutation{left: n, next: dataObject(newData)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutations[cleanPath(path)] = m
}

// dataObject makes an unstored version holding a copy of data; ETag holds
// the content hash until store completes it.
func dataObject(data []byte) *object {
	sum := sha256.Sum256(data)
	return &object{
		info: ObjectInfo{Size: int64(len(data)), ETag: hex.EncodeToString(sum[:8])},
		data: append([]byte(nil), data...),
	}
}

// store makes o the current version at path.
func (s *Server) store(path string, o *object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeLocked(cleanPath(path), o)
}

// storeLocked numbers o, stamps it and makes it current. o.info.ETag holds
// the content hash on entry.
func (s *Server) storeLocked(path string, o *object) {
	s.version++
	o.info.Version = s.version
	o.info.ETag = fmt.Sprintf(`"v%d-%s"`, s.version, o.info.ETag)
	lm := time.Now().UTC().Truncate(time.Second)
	if prev, ok := s.lastMod[path]; ok && !lm.After(prev) {
		lm = prev.Add(time.Second)
	}
	s.lastMod[path] = lm
	o.info.LastModified = lm
	s.objects[path] = o
}

// lookup returns the current version at path, or nil.
func (s *Server) lookup(path string) *object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[path]
}
