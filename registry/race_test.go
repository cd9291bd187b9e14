//go:build race

package registry

// raceEnabled is true when tests run with -race, whose instrumented
// allocation and copies change what can and cannot be preempted.
const raceEnabled = true
