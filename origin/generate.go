package origin

import "encoding/binary"

// gamma is the increment of the splitmix64 generator.
const gamma = 0x9e3779b97f4a7c15

// mix64 is the splitmix64 output function.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// GeneratedBytes fills p with the bytes at offset off of the content that
// PutGenerated serves for seed. The content is the output of a splitmix64
// generator seeded with seed, little-endian: the 8 bytes at offset 8*i are
// mix64(seed + (i+1)*0x9e3779b97f4a7c15). Any range can be produced on its
// own, so generated objects of any size use no memory. off must not be
// negative.
func GeneratedBytes(seed uint64, off int64, p []byte) {
	if len(p) == 0 || off < 0 {
		return
	}
	word := uint64(off) >> 3
	if skip := int(off & 7); skip != 0 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], mix64(seed+(word+1)*gamma))
		n := copy(p, w[skip:])
		p = p[n:]
		word++
	}
	x := seed + (word+1)*gamma
	n := len(p) &^ 7
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:i+8], mix64(x))
		x += gamma
	}
	if tail := p[n:]; len(tail) > 0 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], mix64(x))
		copy(tail, w[:])
	}
}
