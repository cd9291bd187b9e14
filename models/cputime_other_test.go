//go:build !linux

package models

import "testing"

// cpuLoop runs f in b.Loop; thread CPU time is reported on Linux only.
func cpuLoop(b *testing.B, f func()) {
	for b.Loop() {
		f()
	}
}
