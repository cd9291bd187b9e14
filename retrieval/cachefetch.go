package retrieval

import (
	"context"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/seer-ml/seer/features"
)

// This file is the cache's part of Fetch. Before the stores' pipelines are
// built, before serves live hits, joins reads of the same key that other
// Fetches have in flight, and narrows each lookup to what Redis must still
// read; after the pipelines, after restores the lookups, fills the cache
// with the live misses, waits for the joined reads and hands shadow
// comparisons to the worker.
//
// The features of a lookup are split by mode: the live ones form one cache
// key, the shadow ones another, so one lookup costs at most two cache
// reads whatever its number of features. What a lookup is split into is
// worked out once per Fetch for each Specs slice, which the lookups of one
// plan group share.

// cacheFetch is the cache's state for one Fetch, reused through a pool.
type cacheFetch struct {
	snap  *flagSnap
	draw  int // 0..99: the request's draw against live percentages
	now   time.Time
	descs []setDesc
	recs  []lookupRec

	// Scratch backing the narrowed lookups' slices.
	specs []*features.Spec
	got   []features.Got
	vals  []features.Value

	// Scratch for the values of one entry.
	entryVals   []features.Value
	entryStamps []int64

	failed []uint8 // by store: 0 not checked, 1 answered, 2 degraded

	shadowItems, shadowVals int // the most the shadow task may need
}

// setDesc is how the lookups sharing one Specs slice use the cache in this
// Fetch.
type setDesc struct {
	data  **features.Spec // identity of the Specs slice
	specs []*features.Spec
	none  bool // nothing of it is cached
	store int

	live, shadow, rest []int16 // positions in Specs; rest is what Redis reads after a live hit
	restIdx            []int16 // position -> index in rest, or -1

	liveSet, shadowSet   uint64
	liveTTL, shadowTTL   time.Duration
	liveAges, shadowAges bool    // some feature has a max age: stamps are needed
	shadowFeats          []int32 // catalog indices of the shadow features, for the worker

	hits, misses, coalesced int
}

// What a lookup's live part did.
const (
	liveNone uint8 = iota
	liveHit
	liveLeader   // reads the key from Redis for every Fetch that wants it
	liveFollower // waits for another Fetch's read
)

// How a lookup was narrowed for Redis.
const (
	viewFull  uint8 = iota // unchanged
	viewRest               // only the non-live features
	viewEmpty              // nothing left to read
)

// lookupRec is one lookup that uses the cache.
type lookupRec struct {
	li, desc int32
	live     uint8
	view     uint8
	fl       *flight
	h        uint64 // the flight's shard hash

	// The lookup's own slices while it is narrowed.
	specs []*features.Spec
	got   []features.Got
	vals  []features.Value
}

// before runs at the start of a Fetch; nil means the cache takes no part.
func (c *Cache) before(lookups []features.Lookup) *cacheFetch {
	snap := c.flags.Load()
	if c.trace != nil {
		now := time.Now()
		for i := range lookups {
			if l := &lookups[i]; len(l.Specs) > 0 {
				c.trace.record(l, now)
			}
		}
	}
	if !snap.any {
		return nil
	}
	var cf *cacheFetch
	for i := range lookups {
		l := &lookups[i]
		if len(l.Specs) == 0 {
			continue
		}
		if cf == nil {
			cf = c.fetches.Get().(*cacheFetch)
			cf.snap, cf.draw, cf.now = snap, rand.IntN(100), time.Now()
			cf.failed = slices.Grow(cf.failed[:0], len(c.stores))[:len(c.stores)]
			clear(cf.failed)
		}
		di := cf.desc(c, l)
		if di < 0 {
			continue
		}
		d := &cf.descs[di]
		rec := lookupRec{li: int32(i), desc: int32(di)}
		if len(d.live) > 0 {
			k := ckey{key: l.Key, set: d.liveSet}
			if e, ok := c.values.GetIfPresent(k); ok && int(e.n) == len(d.live) {
				e.fill(l, d.live)
				rec.live = liveHit
				d.hits++
			} else {
				rec.h = xxhash.Sum64String(l.Key) ^ d.liveSet
				var leader bool
				rec.fl, leader = c.join(k, rec.h)
				if leader {
					rec.live = liveLeader
					d.misses++
				} else {
					rec.live = liveFollower
					d.coalesced++
				}
			}
		}
		if rec.live == liveHit || rec.live == liveFollower {
			cf.narrow(l, d, &rec)
		}
		if len(d.shadow) > 0 {
			cf.shadowItems++
			cf.shadowVals += len(d.shadow)
		}
		cf.recs = append(cf.recs, rec)
	}
	if cf != nil && len(cf.recs) == 0 {
		c.release(cf)
		return nil
	}
	return cf
}

// desc returns the index of the description of l's Specs slice, computing
// it on first use in this Fetch, or -1 when the cache takes no part in l.
func (cf *cacheFetch) desc(c *Cache, l *features.Lookup) int {
	data := unsafe.SliceData(l.Specs)
	// The lookups of one group are consecutive and share their Specs.
	for k := len(cf.descs) - 1; k >= 0 && k >= len(cf.descs)-4; k-- {
		if d := &cf.descs[k]; d.data == data && len(d.specs) == len(l.Specs) {
			if d.none {
				return -1
			}
			return k
		}
	}
	di := len(cf.descs)
	if di < cap(cf.descs) {
		cf.descs = cf.descs[:di+1]
		d := &cf.descs[di]
		*d = setDesc{live: d.live[:0], shadow: d.shadow[:0], rest: d.rest[:0], restIdx: d.restIdx[:0]}
	} else {
		cf.descs = append(cf.descs, setDesc{})
	}
	d := &cf.descs[di]
	d.data, d.specs = data, l.Specs
	si, ok := c.storeIdx[l.Store]
	if !ok || len(l.Specs) > math.MaxInt16 {
		d.none = true
		return -1
	}
	d.store = si
	tab := c.stores[si].gens.Load()
	hl, hs := setSeed(si), setSeed(si)
	d.liveTTL, d.shadowTTL = math.MaxInt64, math.MaxInt64
	for p, s := range l.Specs {
		fs := c.feat(s)
		mode, batch := modeOff, false
		if fs != nil && fs.store == si {
			batch = fs.batch.Load()
			var pct int
			mode, pct, _ = cf.snap.resolve(s.Index, batch)
			if mode == modeLive && cf.draw >= pct {
				mode = modeShadow // this request is outside the live share
			}
		}
		switch mode {
		case modeLive:
			d.live = append(d.live, int16(p))
			d.restIdx = append(d.restIdx, -1)
			hl = mixSet(hl, s.ID, fs.gen.Load()+tab.epoch(s.ID)<<32)
			d.liveTTL = min(d.liveTTL, cf.snap.featureTTL(s, batch))
			d.liveAges = d.liveAges || s.MaxAge > 0
			continue
		case modeShadow:
			d.shadow = append(d.shadow, int16(p))
			hs = mixSet(hs, s.ID, fs.gen.Load()+tab.epoch(s.ID)<<32)
			d.shadowTTL = min(d.shadowTTL, cf.snap.featureTTL(s, batch))
			d.shadowAges = d.shadowAges || s.MaxAge > 0
		}
		d.restIdx = append(d.restIdx, int16(len(d.rest)))
		d.rest = append(d.rest, int16(p))
	}
	if len(d.live) == 0 && len(d.shadow) == 0 {
		d.none = true
		return -1
	}
	d.liveSet, d.shadowSet = finishSet(hl, len(d.live)), finishSet(hs, len(d.shadow))
	return di
}

// setSeed, mixSet and finishSet hash a store and a list of features with
// their generations into the set part of a cache key. The same features in
// the same order hash alike in live and shadow mode, so that shadow fills
// serve live reads.
func setSeed(store int) uint64 { return mixSet(0x243f6a8885a308d3, uint32(store), 0) }

func mixSet(h uint64, id uint32, gen uint64) uint64 {
	h = (h ^ uint64(id)) * 0x9e3779b97f4a7c15
	h = bits.RotateLeft64(h, 29) ^ gen
	return h * 0xbf58476d1ce4e5b9
}

func finishSet(h uint64, n int) uint64 {
	h ^= uint64(n)
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	return h ^ h>>29
}

// narrow points l at scratch slices holding only the features Redis must
// still read after its live part was served or joined.
func (cf *cacheFetch) narrow(l *features.Lookup, d *setDesc, rec *lookupRec) {
	rec.specs, rec.got, rec.vals = l.Specs, l.Got, l.Values
	if len(d.rest) == 0 {
		rec.view = viewEmpty
		l.Specs = l.Specs[:0]
		return
	}
	rec.view = viewRest
	off, n := len(cf.specs), len(d.rest)
	for _, p := range d.rest {
		cf.specs = append(cf.specs, l.Specs[p])
		cf.got = append(cf.got, l.Got[p])
	}
	l.Specs = cf.specs[off : off+n : off+n]
	l.Got = cf.got[off : off+n : off+n]
	if l.Values != nil {
		vo := len(cf.vals)
		cf.vals = append(cf.vals, make([]features.Value, n)...)
		l.Values = cf.vals[vo : vo+n : vo+n]
	}
}

// after runs at the end of a Fetch and returns degraded with the stores
// whose joined reads failed or did not finish in time.
func (c *Cache) after(ctx context.Context, cf *cacheFetch, lookups []features.Lookup, degraded []string) []string {
	var task *shadowTask
	for ri := range cf.recs {
		rec := &cf.recs[ri]
		l := &lookups[rec.li]
		d := &cf.descs[rec.desc]
		if rec.view != viewFull {
			if rec.view == viewRest {
				for k, p := range d.rest {
					rec.got[p] = l.Got[k]
					if rec.vals != nil {
						rec.vals[p] = l.Values[k]
					}
				}
			}
			l.Specs, l.Got, l.Values = rec.specs, rec.got, rec.vals
		}
		failed := cf.storeFailed(c, d.store, degraded)
		if rec.live == liveLeader {
			k := ckey{key: l.Key, set: d.liveSet}
			if failed {
				c.land(k, rec.h, rec.fl, entry{}, false)
			} else {
				ttl := cf.entryTTL(d.liveTTL, l, d.live)
				cf.entryVals, cf.entryStamps = cf.entryVals[:0], cf.entryStamps[:0]
				for _, p := range d.live {
					cf.entryVals = append(cf.entryVals, l.Value(int(p)))
					cf.entryStamps = append(cf.entryStamps, l.Got[p].Stamp)
				}
				e := newEntry(cf.entryVals, cf.entryStamps, nil, ttl)
				c.set(k, e)
				c.land(k, rec.h, rec.fl, e, true)
			}
		}
		if len(d.shadow) > 0 && !failed {
			ttl := cf.entryTTL(d.shadowTTL, l, d.shadow)
			if task == nil {
				task = c.shadowTasks.Get().(*shadowTask)
				task.items = slices.Grow(task.items, cf.shadowItems)
				task.vals = slices.Grow(task.vals, cf.shadowVals)
			}
			task = cf.addShadow(task, l, d, ttl)
		}
	}
	// Joined reads last: every read this Fetch leads has landed, so two
	// Fetches waiting for each other's reads both go on.
	for ri := range cf.recs {
		rec := &cf.recs[ri]
		if rec.live != liveFollower {
			continue
		}
		l := &lookups[rec.li]
		d := &cf.descs[rec.desc]
		select {
		case <-rec.fl.done:
		default:
			select {
			case <-rec.fl.done:
			case <-ctx.Done():
			}
		}
		landed := false
		select {
		case <-rec.fl.done:
			landed = rec.fl.ok && int(rec.fl.e.n) == len(d.live)
		default:
		}
		if landed {
			rec.fl.e.fill(l, d.live)
		} else if name := c.stores[d.store].name; !slices.Contains(degraded, name) {
			degraded = append(degraded, name)
		}
	}
	for di := range cf.descs {
		d := &cf.descs[di]
		if d.none || d.hits+d.misses+d.coalesced == 0 {
			continue
		}
		for _, p := range d.live {
			fs := c.feats[d.specs[p].Index]
			fs.hits.Add(uint64(d.hits))
			fs.misses.Add(uint64(d.misses))
			fs.coalesced.Add(uint64(d.coalesced))
		}
		m := &c.m.lookups[d.store][mLive]
		for r, n := range [3]int{rHit: d.hits, rMiss: d.misses, rCoalesced: d.coalesced} {
			if n > 0 {
				m[r].Add(float64(n))
			}
		}
	}
	if task != nil {
		c.enqueue(task)
	}
	c.release(cf)
	return degraded
}

// storeFailed reports whether the Fetch's pipeline of store si failed.
func (cf *cacheFetch) storeFailed(c *Cache, si int, degraded []string) bool {
	if cf.failed[si] == 0 {
		cf.failed[si] = 1
		if slices.Contains(degraded, c.stores[si].name) {
			cf.failed[si] = 2
		}
	}
	return cf.failed[si] == 2
}

// entryTTL returns how long the values at pos of l may stay cached: the
// features' TTL, the negative TTL when all of them are absent, and never
// past the moment a value would grow older than its feature's max age.
func (cf *cacheFetch) entryTTL(ttl time.Duration, l *features.Lookup, pos []int16) time.Duration {
	absent := true
	for _, p := range pos {
		g := &l.Got[p]
		if !g.Found() {
			continue
		}
		absent = false
		if age := l.Specs[p].MaxAge; age > 0 && g.Stamp > 0 {
			ttl = min(ttl, time.Unix(g.Stamp, 0).Add(age).Sub(cf.now))
		}
	}
	if absent {
		ttl = min(ttl, cf.snap.negative)
	}
	return ttl
}

// addShadow queues the comparison of l's shadow features.
func (cf *cacheFetch) addShadow(t *shadowTask, l *features.Lookup, d *setDesc, ttl time.Duration) *shadowTask {
	if d.shadowFeats == nil {
		d.shadowFeats = make([]int32, len(d.shadow))
		for j, p := range d.shadow {
			d.shadowFeats[j] = int32(d.specs[p].Index)
		}
	}
	off := len(t.vals)
	for _, p := range d.shadow {
		t.vals = append(t.vals, l.Value(int(p)))
		t.stamps = append(t.stamps, l.Got[p].Stamp)
	}
	t.items = append(t.items, shadowItem{
		key: ckey{key: l.Key, set: d.shadowSet}, store: int32(d.store),
		feats: d.shadowFeats, off: int32(off), ttl: ttl,
	})
	return t
}

// release returns cf to the pool without references to the Fetch.
func (c *Cache) release(cf *cacheFetch) {
	clear(cf.specs)
	clear(cf.vals)
	clear(cf.entryVals)
	clear(cf.recs)
	for i := range cf.descs {
		cf.descs[i].specs, cf.descs[i].data, cf.descs[i].shadowFeats = nil, nil, nil
	}
	cf.specs, cf.got, cf.vals = cf.specs[:0], cf.got[:0], cf.vals[:0]
	cf.entryVals, cf.entryStamps = cf.entryVals[:0], cf.entryStamps[:0]
	cf.recs, cf.descs = cf.recs[:0], cf.descs[:0]
	cf.snap = nil
	cf.shadowItems, cf.shadowVals = 0, 0
	c.fetches.Put(cf)
}

// flightShards is the number of locks the in-flight reads are spread over.
const flightShards = 16

// flight is one read of a cache key from Redis that other Fetches wait for.
type flight struct {
	done  chan struct{} // closed when e and ok are set
	e     entry
	ok    bool
	start time.Time
}

// staleFlight is the age past which a flight is taken to be lost (its
// Fetch panicked before landing it) and a new one replaces it.
const staleFlight = 10 * time.Second

type flightShard struct {
	mu sync.Mutex
	m  map[ckey]*flight
}

// join returns the flight reading k, starting one when there is none; the
// caller that started it (leader) must land it.
func (c *Cache) join(k ckey, h uint64) (f *flight, leader bool) {
	sh := &c.flights[h%flightShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := time.Now()
	if f, ok := sh.m[k]; ok && now.Sub(f.start) < staleFlight {
		return f, false
	}
	if sh.m == nil {
		sh.m = make(map[ckey]*flight)
	}
	f = &flight{done: make(chan struct{}), start: now}
	sh.m[k] = f
	return f, true
}

// land ends a flight with its result.
func (c *Cache) land(k ckey, h uint64, f *flight, e entry, ok bool) {
	sh := &c.flights[h%flightShards]
	sh.mu.Lock()
	if sh.m[k] == f {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
	f.e, f.ok = e, ok
	close(f.done)
}
