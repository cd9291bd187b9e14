//go:build race

package models

// raceEnabled is true when tests run with -race, which makes sync.Pool
// drop items at random and so changes allocation counts.
const raceEnabled = true
