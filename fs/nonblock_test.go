package fs

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"ferry/origin"
)

func TestNonblockingReadGetsEAGAIN(t *testing.T) {
	srv, base := testOrigin(t)
	files := serve(srv, base, []genFile{{path: "nb.bin", size: 4 << 20, seed: 3, declare: true}})
	srv.SetFaults("nb.bin", origin.Faults{Latency: 200 * time.Millisecond})
	m := testMount(t, files, Options{})
	fd, err := syscall.Open(filepath.Join(m.Dir(), "nb.bin"), syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	buf := make([]byte, 4096)
	const off = 2 << 20
	if _, err := syscall.Pread(fd, buf, off); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("pread of remote bytes on an O_NONBLOCK handle = %v, want EAGAIN", err)
	}
	// The bytes were asked for: they arrive without a blocking read.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := syscall.Pread(fd, buf, off)
		if err == nil {
			if n != len(buf) {
				t.Fatalf("read %d bytes", n)
			}
			if err := checkRange(3, off, buf); err != nil {
				t.Fatal(err)
			}
			return
		}
		if !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			t.Fatalf("pread = %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
