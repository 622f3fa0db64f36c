package origin

import (
	"net"
	"syscall"
	"unsafe"
)

// unsentBytes returns how many bytes written to c the peer has not
// acknowledged yet (SIOCOUTQ, which has the value of TIOCOUTQ), or 0 when
// that cannot be told.
func unsentBytes(c net.Conn) int {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var n int32
	var errno syscall.Errno
	ctlErr := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if ctlErr != nil || errno != 0 {
		return 0
	}
	return int(n)
}
