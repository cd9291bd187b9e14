package testenv

import (
	"testing"
	"time"
)

// ReportCPU reports the CPU time the process used per op since start (a
// CPUTime reading) as cpu-ns/op: unlike ns/op it holds on a busy machine,
// and it counts the work of the goroutines an op sets off.
func ReportCPU(b *testing.B, start time.Duration) {
	if start > 0 {
		b.ReportMetric(float64(CPUTime()-start)/float64(b.N), "cpu-ns/op")
	}
}
