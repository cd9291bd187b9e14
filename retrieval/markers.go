package retrieval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The marker poller reads every store's upload markers (docs/format.md)
// and, when a feature's upload version changes, bumps the feature's
// generation. Generations are part of every cache key, so from then on no
// request finds the feature's old values: nothing scans the cache, and the
// old entries age out. A feature with a marker is a batch feature; one
// without is real-time, and its caching stays off unless a flag or the
// catalog turns it on.

// markerState is what the poller keeps between polls.
type markerState struct {
	mu     sync.Mutex // one poll at a time
	seen   []bool     // by store: a poll of it has succeeded
	errs   []string   // by store: the last error logged
	polls  atomic.Uint64
	errors atomic.Uint64
	last   atomic.Int64 // unix nanoseconds of the last poll without errors
}

// pollTimeout bounds one poll of one store.
const pollTimeout = 2 * time.Second

// PollMarkers reads every store's upload markers once and evicts the
// cached values of the features whose upload version changed. The poller
// calls it every marker_poll; it returns the errors of the stores that
// could not be read.
func (c *Cache) PollMarkers(ctx context.Context) error {
	ms := &c.markers
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.seen == nil {
		ms.seen, ms.errs = make([]bool, len(c.stores)), make([]string, len(c.stores))
	}
	ms.polls.Add(1)
	var errs []error
	for si, st := range c.stores {
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		// Generations first: a switch changes the fields reads use, then
		// evicts what was cached from the old ones.
		changed, gerr := st.RefreshGenerations(pctx)
		m, err := st.Markers(pctx)
		cancel()
		c.applyGenerations(si, changed)
		if gerr != nil {
			ms.errors.Add(1)
			errs = append(errs, gerr)
			c.log.Warn("read generations", "store", st.name, "err", gerr)
		}
		if err != nil {
			ms.errors.Add(1)
			errs = append(errs, err)
			if msg := err.Error(); msg != ms.errs[si] {
				ms.errs[si] = msg
				c.log.Warn("read upload markers", "store", st.name, "err", err)
			}
			if !errors.Is(err, ErrMarkers) {
				continue // unreadable: keep what is known
			}
		} else if ms.errs[si] != "" {
			ms.errs[si] = ""
			c.log.Info("read upload markers again", "store", st.name)
		}
		c.applyMarkers(si, m, !ms.seen[si])
		ms.seen[si] = true
	}
	if len(errs) == 0 {
		ms.last.Store(time.Now().UnixNano())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("poll markers: %w", err)
	}
	return nil
}

// applyMarkers compares the markers of store si with what the features
// knew. The first poll of a store only learns them.
func (c *Cache) applyMarkers(si int, m map[uint32]int64, first bool) {
	for _, fs := range c.feats {
		if fs.store != si {
			continue
		}
		v, ok := m[fs.spec.ID]
		was, old := fs.batch.Load(), fs.version.Load()
		if ok == was && v == old {
			continue
		}
		fs.version.Store(v)
		fs.batch.Store(ok)
		fs.gen.Add(1)
		switch {
		case first:
		case !was:
			// A first upload: the feature was real-time until now.
			c.log.Debug("upload marker appeared: batch feature", "feature", fs.spec.Name, "store", c.stores[si].name, "version", v)
		default:
			fs.evictions.Add(1)
			c.m.evictions[si].Inc()
			c.log.Info("upload marker changed: cached values evicted", "feature", fs.spec.Name, "store", c.stores[si].name, "from", old, "to", v, "marker", ok)
		}
	}
}

// applyGenerations evicts the cached values of the features of store si
// whose generation changed.
func (c *Cache) applyGenerations(si int, changed []uint32) {
	if len(changed) == 0 {
		return
	}
	for _, fs := range c.feats {
		if fs.store != si || !slices.Contains(changed, fs.spec.ID) {
			continue
		}
		fs.gen.Add(1)
		fs.evictions.Add(1)
		c.m.evictions[si].Inc()
		c.log.Info("generation changed: cached values evicted", "feature", fs.spec.Name, "store", c.stores[si].name)
	}
}

func (c *Cache) pollLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			_ = c.PollMarkers(c.ctx) // errors are logged and counted
		}
	}
}
