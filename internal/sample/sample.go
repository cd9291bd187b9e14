// Package sample draws a share of events at random, at a share that may
// change while it is drawn from: the feature log's and the shadows'
// samples, which SIGHUP changes.
package sample

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
)

// Rate is a share of events, 0 to 1. Its methods are safe for concurrent
// use; the zero Rate draws nothing.
type Rate struct{ p atomic.Pointer[rate] }

type rate struct {
	share float64
	limit uint64 // Limit(share)
}

// NewRate returns a Rate of share.
func NewRate(share float64) *Rate {
	r := new(Rate)
	r.Set(share)
	return r
}

// Set changes the share, from the next draw on. A share over 1 draws
// every event; one of 0 or less, or NaN, none.
func (r *Rate) Set(share float64) { r.p.Store(&rate{share: share, limit: Limit(share)}) }

// Share returns the share as it was last set.
func (r *Rate) Share() float64 {
	if p := r.p.Load(); p != nil {
		return p.share
	}
	return 0
}

// Draw reports whether the next event is drawn. It is cheap enough to call
// for every request.
func (r *Rate) Draw() bool {
	p := r.p.Load()
	return p != nil && (p.limit == math.MaxUint64 || p.limit > 0 && rand.Uint64() < p.limit)
}

// Limit is the uint64 below which a uniformly random uint64 falls with
// probability share: math.MaxUint64 (every one) from a share of 1, 0 (none)
// for a share of 0 or less, or NaN.
func Limit(share float64) uint64 {
	switch {
	case share >= 1:
		return math.MaxUint64
	case share > 0:
		return uint64(share * (1 << 63) * 2) // exact: scaled by a power of 2, below 2^64
	}
	return 0
}
