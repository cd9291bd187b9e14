package retrieval

import (
	"context"
	"time"

	"github.com/seer-ml/seer/features"
)

// The shadow worker compares cached values with the values Redis just
// answered, off the request path: a Fetch queues what it read for its
// shadow features and goes on; when the queue is full the comparison is
// dropped and counted. The worker looks each key up, counts a hit or a
// miss, compares value by value, and fills the cache with Redis's values
// on a miss or a mismatch.

// shadowTask is the shadow work of one Fetch. Tests also queue barriers
// (done is closed when the worker reaches it) and holds (the worker waits
// until hold is closed).
type shadowTask struct {
	items []shadowItem
	vals  []features.Value
	done  chan struct{}
	hold  chan struct{}
}

// shadowItem is the shadow features of one lookup: the cache key, the
// features' catalog indices and their values in Redis, at
// vals[off:off+len(feats)].
type shadowItem struct {
	key   ckey
	store int32
	feats []int32
	off   int32
	ttl   time.Duration
}

// enqueue hands a task to the worker without waiting.
func (c *Cache) enqueue(t *shadowTask) {
	select {
	case c.shadow <- t:
	default:
		c.m.dropped.Add(float64(len(t.items)))
		c.m.droppedN.Add(uint64(len(t.items)))
	}
}

func (c *Cache) shadowLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case t := <-c.shadow:
			c.compare(t)
		}
	}
}

// shadowSync waits until the worker has handled every task queued before
// the call, or ctx ends.
func (c *Cache) shadowSync(ctx context.Context) error {
	t := &shadowTask{done: make(chan struct{})}
	select {
	case c.shadow <- t:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// compare handles one task.
func (c *Cache) compare(t *shadowTask) {
	if t.done != nil {
		close(t.done)
		return
	}
	if t.hold != nil {
		select {
		case <-t.hold:
		case <-c.ctx.Done():
		}
		return
	}
	now := time.Now()
	for i := range t.items {
		it := &t.items[i]
		n := len(it.feats)
		vals := t.vals[it.off : int(it.off)+n]
		m := &c.m.lookups[it.store][mShadow]
		e, ok := c.values.GetIfPresent(it.key)
		if !ok || int(e.n) != n {
			m[rMiss].Inc()
			for _, fi := range it.feats {
				c.feats[fi].shadowMisses.Add(1)
			}
			c.set(it.key, newEntry(vals, nil, it.ttl))
			continue
		}
		m[rHit].Inc()
		same := true
		for j, fi := range it.feats {
			fs := c.feats[fi]
			fs.shadowHits.Add(1)
			if cached := e.value(j); cached.Equal(vals[j]) {
				fs.shadowMatch.Add(1)
			} else {
				fs.shadowMismatch.Add(1)
				fs.sample(MismatchSample{Time: now, Store: c.stores[it.store].name, Key: it.key.key, Cached: cached, Redis: vals[j]})
				same = false
			}
		}
		if same {
			c.m.shadow[rMatch].Inc()
		} else {
			c.m.shadow[rMismatch].Inc()
			c.set(it.key, newEntry(vals, nil, it.ttl))
		}
	}
}

// sample keeps a mismatch, dropping the oldest beyond maxSamples.
func (fs *featState) sample(s MismatchSample) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.samples) == maxSamples {
		copy(fs.samples, fs.samples[1:])
		fs.samples = fs.samples[:maxSamples-1]
	}
	fs.samples = append(fs.samples, s)
}
