//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package retrieval

import "syscall"

// peek reports whether the socket fd holds bytes to read, without reading
// them or waiting.
func peek(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == nil && n > 0
}
