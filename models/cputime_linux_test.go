package models

import (
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// cpuLoop runs f in b.Loop and reports the CPU time of the benchmark's
// thread per call as cpu-ns/op besides the wall time. On a machine shared
// with other work the wall time includes the time other processes ran;
// the thread's CPU time does not, so it is the steadier figure.
func cpuLoop(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, n := threadCPU(), 0
	for b.Loop() {
		f()
		n++
	}
	if n > 0 {
		b.ReportMetric(float64(threadCPU()-start)/float64(n), "cpu-ns/op")
	}
}

// threadCPU returns the calling thread's CPU time in nanoseconds.
func threadCPU() int64 {
	const clockThreadCPUTimeID = 3 // CLOCK_THREAD_CPUTIME_ID
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
