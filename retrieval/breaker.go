package retrieval

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// BreakerConfig configures the circuit breaker of each node of a store.
//
// A node's breaker opens after Failures reads in a row failed (an error
// from the connection, a deadline passed while waiting for the node, or a
// reply saying the node cannot serve, such as LOADING or CLUSTERDOWN).
// While it is open, Fetch sends the node nothing and the features it holds
// take their defaults at once. After Cooldown one read goes through as a
// probe (half-open); its success closes the breaker, its failure opens it
// for another Cooldown. A node that answered that it cannot serve is
// probed after at most replyCooldown: it answers at once, so a probe costs
// it nothing, and such states end soon (a Redis Cluster master restarted
// answers CLUSTERDOWN for its first two seconds), when a whole Cooldown
// would keep its features at their defaults for longer than it refused.
type BreakerConfig struct {
	// Failures is how many failed reads in a row open the breaker (default
	// 5); -1 turns the breaker off.
	Failures int `yaml:"failures"`
	// Cooldown is how long an open breaker refuses reads (default 5s).
	Cooldown time.Duration `yaml:"cooldown"`
}

// Defaults of BreakerConfig.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 5 * time.Second
)

// replyCooldown is the longest a breaker stays open after a failure that
// was the node's reply (Cooldown when shorter).
const replyCooldown = time.Second

func (c BreakerConfig) check() error {
	if c.Failures < -1 {
		return errors.New("failures: want -1 (off), 0 (the default) or more")
	}
	if c.Cooldown < 0 {
		return errors.New("cooldown: negative")
	}
	return nil
}

// States of a breaker.
const (
	breakerClosed int32 = iota
	breakerOpen
	breakerHalfOpen
)

// breaker is a node's circuit breaker. Closed, it costs an atomic load per
// read.
type breaker struct {
	threshold int // failures in a row that open it; 0 when off
	cooldown  time.Duration

	state atomic.Int32
	fails atomic.Int32 // failures in a row, while closed

	mu    sync.Mutex
	until time.Time // when an open breaker lets a probe through
	opens atomic.Uint64
}

func (b *breaker) init(c BreakerConfig) {
	switch c.Failures {
	case -1:
		b.threshold = 0
	case 0:
		b.threshold = DefaultBreakerFailures
	default:
		b.threshold = c.Failures
	}
	b.cooldown = c.Cooldown
	if b.cooldown == 0 {
		b.cooldown = DefaultBreakerCooldown
	}
}

// allow reports whether a read may go to the node now, and whether that
// read is the probe of a half-open breaker, whose outcome the caller must
// report.
func (b *breaker) allow() (ok, probe bool) {
	if b.state.Load() == breakerClosed {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case breakerClosed:
		return true, false
	case breakerOpen:
		if time.Now().Before(b.until) {
			return false, false
		}
		b.state.Store(breakerHalfOpen)
		return true, true
	}
	return false, false // half-open: the probe is out
}

// isOpen reports whether the breaker refuses reads now; a breaker whose
// cooldown has passed counts as closed.
func (b *breaker) isOpen() bool {
	switch b.state.Load() {
	case breakerClosed:
		return false
	case breakerHalfOpen:
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.Load() == breakerOpen && time.Now().Before(b.until)
}

// success records a read the node answered: the breaker closes.
func (b *breaker) success() {
	if b.state.Load() == breakerClosed && b.fails.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails.Store(0)
	b.state.Store(breakerClosed)
}

// failure records a read the node failed, replied when the failure was
// the node's answer that it cannot serve. It reports whether the breaker
// opened.
func (b *breaker) failure(probe, replied bool) bool {
	if b.threshold == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case breakerClosed:
		if b.fails.Add(1) < int32(b.threshold) {
			return false
		}
	case breakerHalfOpen:
		if !probe {
			return false // a read that started before the breaker opened
		}
	default:
		return false // already open
	}
	b.fails.Store(0)
	cooldown := b.cooldown
	if replied {
		cooldown = min(cooldown, replyCooldown)
	}
	b.until = time.Now().Add(cooldown)
	b.state.Store(breakerOpen)
	b.opens.Add(1)
	return true
}

// release records a probe whose outcome is unknown (its caller went
// away): the next read probes again.
func (b *breaker) release(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() == breakerHalfOpen {
		b.until = time.Now()
		b.state.Store(breakerOpen)
	}
}
