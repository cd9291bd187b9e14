//go:build race

package serving

// raceEnabled is true when tests run with -race, which makes sync.Pool
// drop items at random and so changes allocation counts.
const raceEnabled = true
