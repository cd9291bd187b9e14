//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package retrieval

import "syscall"

// peek tells what the socket fd holds to read, without reading it or
// waiting.
func peek(fd uintptr) peekResult {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case n > 0:
		return peekData
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		return peekNone
	}
	return peekClosed // the end of the stream, or an error such as a reset
}
