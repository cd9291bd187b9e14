package retrieval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// Options tune a Retriever.
type Options struct {
	// Registerer receives the retrieval metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Cache, when not nil, serves and fills every Fetch (see NewCache).
	Cache *Cache
}

// Retriever reads feature values from its stores and uploads them.
type Retriever struct {
	stores  []*Store
	byName  map[string]int
	metrics []*storeMetrics // aligned with stores
	upload  *prometheus.CounterVec
	cache   *Cache
}

// New returns a Retriever over stores, which it does not own: the caller
// closes them after the last Fetch.
func New(stores []*Store, opt Options) *Retriever {
	m := newMetrics(opt.Registerer)
	r := &Retriever{stores: stores, byName: make(map[string]int, len(stores)), upload: m.upload, cache: opt.Cache}
	for i, s := range stores {
		r.byName[s.name] = i
		r.metrics = append(r.metrics, m.store(s.name))
	}
	return r
}

// Store returns the store called name, or nil.
func (r *Retriever) Store(name string) *Store {
	if i, ok := r.byName[name]; ok {
		return r.stores[i]
	}
	return nil
}

// Stores returns the retriever's stores.
func (r *Retriever) Stores() []*Store { return r.stores }

// job is one store's part of a Fetch: its HMGETs, built before the store's
// goroutine starts so that the goroutine never reads the caller's lookups
// until it holds mu and knows the Fetch still waits for it.
type job struct {
	store   int
	lookups []int32 // indices into the Fetch's lookups
	keys    []string
	args    []any
	cmds    []redis.Cmder
	start   time.Time

	// parts split the job by node. Part p sends pcmds[lo:hi], the commands
	// of lookups order[lo:hi] (positions in lookups, keys and cmds); for a
	// standalone store there is one part, pcmds is cmds and order is nil.
	parts []part
	one   [1]part
	pcmds []redis.Cmder
	order []int32

	mu        sync.Mutex
	abandoned bool // Fetch returned without this job
	finished  bool
	failed    bool
}

// part is the share of a job that goes to one node.
type part struct {
	node    *node
	client  *redis.Client
	lo, hi  int32
	probe   bool  // the probe of the node's half-open breaker
	skipped bool  // the node's breaker is open: nothing was sent
	err     error // why the node failed, nil when it answered
}

// Fetch fills each lookup's Values and Origins from the cache
// (features.FromCache), when the Retriever has one, and from its store
// (features.FromRedis): one pipeline per store with one HMGET key field...
// per lookup, the stores read in parallel under ctx's deadline. Lookups with no Specs
// are skipped. A stored value that fails to decode, has another type than
// its spec, or is older than the spec's MaxAge is left invalid and counted
// in the spec's Stats. Fetch returns the names of the stores that failed or
// did not answer in time, wholly or in part (one node of a ring or cluster);
// the lookups of the failed nodes keep the values they had (invalid, after
// Plan.Prepare), so they take defaults. It never blocks past ctx: a store
// still busy when ctx ends is abandoned and reported as degraded.
func (r *Retriever) Fetch(ctx context.Context, lookups []features.Lookup) (degraded []string) {
	// The cache serves its live hits, joins reads in flight, and narrows
	// the lookups to what Redis must still read.
	var cf *cacheFetch
	if r.cache != nil {
		cf = r.cache.before(lookups)
	}
	// Count the lookups of each store, then give each store its job.
	var localCounts [8]int32
	var perStore []int32
	if len(r.stores) <= len(localCounts) {
		perStore = localCounts[:len(r.stores)]
	} else {
		perStore = make([]int32, len(r.stores))
	}
	var unknown []string
	for i := range lookups {
		l := &lookups[i]
		if len(l.Specs) == 0 {
			continue
		}
		si, ok := r.byName[l.Store]
		if !ok {
			if !slices.Contains(unknown, l.Store) {
				unknown = append(unknown, l.Store)
			}
			continue
		}
		perStore[si]++
	}
	var localJobs [8]*job
	jobs := localJobs[:0]
	for si, n := range perStore {
		if n > 0 {
			jobs = append(jobs, &job{store: si, lookups: make([]int32, 0, n)})
		}
	}
	for i := range lookups {
		l := &lookups[i]
		if len(l.Specs) == 0 {
			continue
		}
		if si, ok := r.byName[l.Store]; ok {
			for _, j := range jobs {
				if j.store == si {
					j.lookups = append(j.lookups, int32(i))
					break
				}
			}
		}
	}

	done := make(chan *job, len(jobs))
	waiting := 0
	expired := ctx.Err() != nil
	for _, j := range jobs {
		st := r.stores[j.store]
		if expired || !st.begin() {
			j.failed, j.finished = true, true // out of time, or closed
			continue
		}
		j.build(ctx, lookups)
		waiting++
		j.start = time.Now()
		go func() {
			defer st.inflight.Done()
			r.run(ctx, j, lookups)
			done <- j
		}()
	}
	for waiting > 0 {
		select {
		case <-done:
			waiting--
		case <-ctx.Done():
			for _, j := range jobs {
				j.mu.Lock()
				if !j.finished {
					j.abandoned, j.failed = true, true
					r.metrics[j.store].observe(resultTimeout, time.Since(j.start))
				}
				j.mu.Unlock()
			}
			waiting = 0
		}
	}
	for _, j := range jobs {
		if j.failed {
			degraded = append(degraded, r.stores[j.store].name)
		}
	}
	degraded = append(degraded, unknown...)
	if cf != nil {
		// Restore the lookups, fill the cache, wait for joined reads,
		// queue shadow comparisons.
		degraded = r.cache.after(ctx, cf, lookups, degraded)
	}
	return degraded
}

// build makes the job's HMGET commands. Keys are copied, so that a command
// still queued after Fetch gave up never reads the caller's lookups; fields
// are pointers to the specs' immutable Field strings, which go-redis writes
// without boxing a copy. Replies are read raw and parsed here, without an
// allocation per value.
func (j *job) build(ctx context.Context, lookups []features.Lookup) {
	n := 0
	for _, li := range j.lookups {
		n += 2 + len(lookups[li].Specs)
	}
	j.keys = make([]string, len(j.lookups))
	j.args = make([]any, 0, n)
	j.cmds = make([]redis.Cmder, len(j.lookups))
	for k, li := range j.lookups {
		l := &lookups[li]
		j.keys[k] = l.Key
		start := len(j.args)
		j.args = append(j.args, "hmget", &j.keys[k])
		for _, s := range l.Specs {
			j.args = append(j.args, &s.Field)
		}
		j.cmds[k] = redis.NewRawCmd(ctx, j.args[start:len(j.args):len(j.args)]...)
	}
}

// run routes the job's commands to their nodes and sends one pipeline
// per node, in parallel, skipping nodes whose breaker is open. Each part
// decodes its replies into the lookups as soon as it has them, unless
// Fetch has given up on the job: when one node is slow or down, the
// others' values still arrive.
func (r *Retriever) run(ctx context.Context, j *job, lookups []features.Lookup) {
	st, m := r.stores[j.store], r.metrics[j.store]
	err := st.route(ctx, j)
	if err == nil {
		var wg sync.WaitGroup
		var first *part
		for p := range j.parts {
			pt := &j.parts[p]
			ok, probe := pt.node.brk.allow()
			if !ok {
				pt.skipped = true
				m.rejected.Inc()
				continue
			}
			pt.probe = probe
			if first == nil {
				first = pt // sent from this goroutine
				continue
			}
			wg.Go(func() { r.runPart(ctx, j, pt, lookups) })
		}
		if first != nil {
			r.runPart(ctx, j, first, lookups)
		}
		wg.Wait()
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished = true
	if j.abandoned {
		return
	}
	result := resultOK
	if err != nil {
		result = resultError
		if ctx.Err() != nil || isTimeout(err) {
			result = resultTimeout
		}
	}
	for _, p := range j.parts {
		switch {
		case p.err != nil && (ctx.Err() != nil || isTimeout(p.err)):
			result = resultTimeout
		case p.err != nil && result != resultTimeout:
			result = resultError
		case p.skipped && result == resultOK:
			result = resultBreaker
		}
	}
	j.failed = result != resultOK
	m.observe(result, time.Since(j.start))
}

// runPart sends one node's pipeline, tells the node's breaker how it went
// and, unless Fetch has given up on the job, decodes the replies.
func (r *Retriever) runPart(ctx context.Context, j *job, p *part, lookups []features.Lookup) {
	st, m := r.stores[j.store], r.metrics[j.store]
	cmds := j.pcmds[p.lo:p.hi]
	pipe := p.client.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...)
	_, _ = pipe.Exec(ctx) // errors are read per command below
	if st.cluster != nil {
		st.redirect(ctx, cmds, m)
	}
	p.err = partError(cmds)
	switch {
	case p.err == nil:
		p.node.brk.success()
	case errors.Is(p.err, context.Canceled):
		p.node.brk.release(p.probe) // the caller went away: says nothing of the node
	default:
		if p.node.brk.failure(p.probe) {
			m.opened.Inc()
		}
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if j.abandoned {
		return
	}
	var c counts
	var vals [][]byte
	now := time.Now().Unix()
	for i := p.lo; i < p.hi; i++ {
		k := i
		if j.order != nil {
			k = j.order[i]
		}
		cmd := j.cmds[k].(*redis.RawCmd)
		if cmd.Err() != nil {
			continue // the connection or the deadline failed: defaults
		}
		l := &lookups[j.lookups[k]]
		raw := cmd.Val()
		if len(raw) > 0 && raw[0] == '-' && !keyError(raw) {
			continue // the node cannot serve (LOADING, CLUSTERDOWN, ...): defaults
		}
		vals = slices.Grow(vals[:0], len(l.Specs))[:len(l.Specs)]
		if err := splitReply(raw, vals); err != nil {
			// An error reply for this key alone, such as WRONGTYPE when the
			// key is not a hash, or a malformed reply: its values are
			// unusable.
			for _, s := range l.Specs {
				s.Stats().Corrupt.Add(1)
			}
			c.corrupt += len(l.Specs)
			clear(l.Values)
			setReasons(l, features.ReasonCorrupt)
			continue
		}
		decode(l, vals, now, &c)
	}
	m.add(&c)
}

// partError returns the first error of a node's commands: a failed
// connection or deadline, or an error reply that says the node cannot
// serve. Error replies about one key (WRONGTYPE) are not the node's fault.
func partError(cmds []redis.Cmder) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return err
		}
	}
	for _, cmd := range cmds {
		if raw := cmd.(*redis.RawCmd).Val(); len(raw) > 0 && raw[0] == '-' && !keyError(raw) {
			return fmt.Errorf("%w: %s", errNodeReply, bytes.TrimRight(raw[1:], "\r\n"))
		}
	}
	return nil
}

// errNodeReply is wrapped by errors for error replies that refuse a whole
// node's reads.
var errNodeReply = errors.New("node refused the read")

// keyError reports whether an error reply concerns the key alone: the key
// holds something other than a hash.
func keyError(raw []byte) bool {
	return bytes.HasPrefix(raw, []byte("-WRONGTYPE"))
}

// counts tallies the values of one store's Fetch.
type counts struct {
	found, absent, corrupt, wrongType, stale int
}

// setReasons gives every value of l the same reason, when l keeps them.
func setReasons(l *features.Lookup, r features.Reason) {
	for k := range l.Reasons {
		l.Reasons[k] = r
	}
}

// decode fills one lookup from the values of its HMGET reply, with their
// stamps and, for the values left invalid, why.
func decode(l *features.Lookup, vals [][]byte, now int64, c *counts) {
	for k, s := range l.Specs {
		l.Values[k] = features.Value{}
		if l.Stamps != nil {
			l.Stamps[k] = 0
		}
		why := features.ReasonNone
		b := vals[k]
		if b == nil {
			c.absent++ // no such key or field
			why = features.ReasonAbsent
		} else {
			v, stamp, err := features.DecodeStamped(b)
			switch {
			case err != nil:
				s.Stats().Corrupt.Add(1)
				c.corrupt++
				why = features.ReasonCorrupt
			case v.Type() != s.Type:
				s.Stats().WrongType.Add(1)
				c.wrongType++
				why = features.ReasonWrongType
			case s.MaxAge > 0 && stamp > 0 && time.Duration(now-stamp)*time.Second > s.MaxAge:
				s.Stats().Stale.Add(1)
				c.stale++
				why = features.ReasonStale
			default:
				l.Values[k], l.Origins[k] = v, features.FromRedis
				if l.Stamps != nil {
					l.Stamps[k] = stamp
				}
				c.found++
			}
		}
		if l.Reasons != nil {
			l.Reasons[k] = why
		}
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
