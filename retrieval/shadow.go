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
	items  []shadowItem
	vals   []features.Value
	stamps []int64 // aligned with vals
	done   chan struct{}
	hold   chan struct{}
}

// shadowItem is the shadow features of one lookup: the cache key, the
// features' catalog indices and their values in Redis, at
// vals[off:off+len(feats)], with their upload stamps in stamps.
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
		c.recycle(t)
	}
}

// recycle returns a task's memory to the pool.
func (c *Cache) recycle(t *shadowTask) {
	clear(t.items)
	clear(t.vals)
	t.items, t.vals, t.stamps = t.items[:0], t.vals[:0], t.stamps[:0]
	c.shadowTasks.Put(t)
}

func (c *Cache) shadowLoop() {
	w := &shadowCounts{per: make([]featCounts, len(c.feats))}
	for {
		select {
		case <-c.ctx.Done():
			return
		case t := <-c.shadow:
			c.compare(t, w)
		}
	}
}

// shadowCounts tallies one task's counts per feature, so that the shared
// counters take one add per feature and task rather than per value.
type shadowCounts struct {
	per     []featCounts // by catalog index
	touched []int32
	stores  [][2]int // by store: lookups that hit, missed
}

func (w *shadowCounts) lookups(store int32, result int) {
	if int(store) >= len(w.stores) {
		w.stores = append(w.stores, make([][2]int, int(store)+1-len(w.stores))...)
	}
	w.stores[store][result]++
}

type featCounts struct{ hits, misses, match, mismatch uint64 }

func (w *shadowCounts) at(fi int32) *featCounts {
	fc := &w.per[fi]
	if *fc == (featCounts{}) {
		w.touched = append(w.touched, fi)
	}
	return fc
}

func (w *shadowCounts) flush(c *Cache) {
	for _, fi := range w.touched {
		fc, fs := &w.per[fi], c.feats[fi]
		for _, x := range [...]struct {
			n *uint64
			c interface{ Add(uint64) uint64 }
		}{{&fc.hits, &fs.shadowHits}, {&fc.misses, &fs.shadowMisses}, {&fc.match, &fs.shadowMatch}, {&fc.mismatch, &fs.shadowMismatch}} {
			if *x.n > 0 {
				x.c.Add(*x.n)
			}
		}
		*fc = featCounts{}
	}
	w.touched = w.touched[:0]
	for si, n := range w.stores {
		for r, k := range n {
			if k > 0 {
				c.m.lookups[si][mShadow][r].Add(float64(k))
			}
		}
		w.stores[si] = [2]int{}
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
func (c *Cache) compare(t *shadowTask, w *shadowCounts) {
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
	var match, mismatch int
	for i := range t.items {
		it := &t.items[i]
		n := len(it.feats)
		vals := t.vals[it.off : int(it.off)+n]
		stamps := t.stamps[it.off : int(it.off)+n]
		e, ok := c.values.GetIfPresent(it.key)
		if !ok || int(e.n) != n {
			w.lookups(it.store, rMiss)
			for _, fi := range it.feats {
				w.at(fi).misses++
			}
			c.set(it.key, newEntry(vals, stamps, nil, it.ttl))
			continue
		}
		w.lookups(it.store, rHit)
		same := true
		for j, fi := range it.feats {
			fc := w.at(fi)
			fc.hits++
			if cached := e.value(j); cached.Equal(vals[j]) {
				fc.match++
			} else {
				fc.mismatch++
				c.feats[fi].sample(MismatchSample{Time: now, Store: c.stores[it.store].name, Key: it.key.key, Cached: cached, Redis: vals[j]})
				same = false
			}
		}
		if same {
			match++
		} else {
			mismatch++
			c.set(it.key, newEntry(vals, stamps, nil, it.ttl))
		}
	}
	if match > 0 {
		c.m.shadow[rMatch].Add(float64(match))
	}
	if mismatch > 0 {
		c.m.shadow[rMismatch].Add(float64(mismatch))
	}
	w.flush(c)
	c.recycle(t)
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
