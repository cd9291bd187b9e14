package retrieval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

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
	replies sync.Pool // *[]byte: the memory of parts' replies
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
	argEnd  []int32 // the HMGET of lookup k is args[argEnd[k-1]:argEnd[k]]
	start   time.Time

	// parts split the job by node. Part p sends cmds[lo:hi], the HMGETs
	// of lookups order[lo:hi] (positions in lookups and keys); order is
	// nil when one node serves them all in order.
	parts []part
	one   [1]part
	order []int32
	cmds  []redis.Cmder
	spans []span // where the reply of cmds[i] is in its part's replies

	mu        sync.Mutex
	abandoned bool // Fetch returned without this job
	finished  bool
	failed    bool
	// specs, when the store's generations were never read, are the
	// features of the fields in args, in order: run reads the
	// generations first and sets the fields (setFields).
	specs []*features.Spec
}

// part is the share of a job that goes to one node.
type part struct {
	node    *node
	client  *redis.Client
	lo, hi  int32
	probe   bool  // the probe of the node's half-open breaker
	skipped bool  // the node's breaker is open: nothing was sent
	err     error // why the node failed, nil when it answered
	replies replyBuf
}

// span is where one raw reply lies in a replyBuf.
type span struct{ off, n int32 }

// at returns the position in lookups of the i-th command.
func (j *job) at(i int32) int32 {
	if j.order == nil {
		return i
	}
	return j.order[i]
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
		tab, known := st.readTable()
		if expired || !st.begin() {
			j.failed, j.finished = true, true // out of time, or closed
			continue
		}
		j.build(lookups, tab, !known)
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
					r.metrics[j.store].observe(failResult(ctx.Err()), time.Since(j.start))
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

// build makes the arguments of the job's HMGETs. Keys are copied, so that
// a command still queued after Fetch gave up never reads the caller's
// lookups; fields are pointers to immutable strings (the specs' Field, or
// the field of the feature's current generation in tab), which go-redis
// writes without boxing a copy. When the store's generations were never
// read (unknown), it keeps the specs for setFields.
func (j *job) build(lookups []features.Lookup, tab *genTable, unknown bool) {
	n := 0
	for _, li := range j.lookups {
		n += 2 + len(lookups[li].Specs)
	}
	j.keys = make([]string, len(j.lookups))
	j.args = make([]any, 0, n)
	j.argEnd = make([]int32, len(j.lookups))
	var prev []*features.Spec
	prevStart := 0
	for k, li := range j.lookups {
		l := &lookups[li]
		j.keys[k] = l.Key
		start := len(j.args)
		j.args = append(j.args, "hmget", &j.keys[k])
		switch {
		case tab == nil:
			for _, s := range l.Specs {
				j.args = append(j.args, &s.Field)
			}
		case len(prev) == len(l.Specs) && unsafe.SliceData(prev) == unsafe.SliceData(l.Specs):
			// The lookups of a group share their Specs: their fields
			// are looked up once.
			j.args = append(j.args, j.args[prevStart+2:prevStart+2+len(prev)]...)
		default:
			for _, s := range l.Specs {
				j.args = append(j.args, tab.field(s))
			}
			prev, prevStart = l.Specs, start
		}
		j.argEnd[k] = int32(len(j.args))
		if unknown {
			j.specs = append(j.specs, l.Specs...)
		}
	}
}

// setFields reads the store's generations, once, for a job built before
// they were known, and points its fields at the features' current
// generations.
func (j *job) setFields(ctx context.Context, st *Store) error {
	tab, err := st.firstTable(ctx)
	if err != nil {
		return err
	}
	i, lo := 0, int32(0)
	for _, end := range j.argEnd {
		for a := lo + 2; a < end; a++ {
			j.args[a] = tab.field(j.specs[i])
			i++
		}
		lo = end
	}
	return nil
}

// commands makes the job's HMGETs once its parts are known: each streams
// its raw reply into its part's replies, which are parsed here without an
// allocation per value. Such commands are never retried by go-redis (the
// reply could be half written): runPart retries them.
func (j *job) commands(ctx context.Context) {
	j.cmds = make([]redis.Cmder, len(j.lookups))
	j.spans = make([]span, len(j.lookups))
	for p := range j.parts {
		pt := &j.parts[p]
		for i := pt.lo; i < pt.hi; i++ {
			k := j.at(i)
			var lo int32
			if k > 0 {
				lo = j.argEnd[k-1]
			}
			args := j.args[lo:j.argEnd[k]:j.argEnd[k]]
			j.cmds[i] = redis.NewRawWriteToCmd(ctx, &pt.replies, args...)
		}
	}
}

// run routes the job's commands to their nodes and sends one pipeline
// per node, in parallel, skipping nodes whose breaker is open. Each part
// decodes its replies into the lookups as soon as it has them, unless
// Fetch has given up on the job: when one node is slow or down, the
// others' values still arrive.
func (r *Retriever) run(ctx context.Context, j *job, lookups []features.Lookup) {
	st, m := r.stores[j.store], r.metrics[j.store]
	var err error
	if j.specs != nil {
		err = j.setFields(ctx, st)
	}
	if err == nil {
		err = st.route(ctx, j)
	}
	if err == nil {
		j.commands(ctx)
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
		result = failResult(err)
	}
	for _, p := range j.parts {
		switch {
		case p.err != nil:
			result = worse(result, failResult(p.err))
		case p.skipped:
			result = worse(result, resultBreaker)
		}
	}
	j.failed = result != resultOK
	m.observe(result, time.Since(j.start))
}

// runPart sends one node's pipeline, tells the node's breaker how it went
// and, unless Fetch has given up on the job, decodes the replies.
//
// Only the node's own failures reach its breaker. The read waits for one
// of the node's slots under ctx: a read still queued inside seer when the
// caller's deadline passes is never sent, and says nothing of the node.
// Once sent, the read runs under the node's own deadline (the store's
// read_timeout), detached from ctx: Fetch stops waiting at ctx's deadline,
// but the read goes on until the node answers or its deadline passes.
// Seer's own pauses (scheduling, GC, a stopped process) and the caller's
// cancellation therefore never fail a node; a connection or protocol
// error, an error reply that refuses the node's reads, or a node that
// stays silent for read_timeout does.
func (r *Retriever) runPart(ctx context.Context, j *job, p *part, lookups []features.Lookup) {
	st, m := r.stores[j.store], r.metrics[j.store]
	if !p.node.acquire(ctx) {
		p.node.brk.release(p.probe) // never sent: the next read probes
		p.err = ctx.Err()
		return
	}
	buf := r.replyMemory()
	defer r.keepReplyMemory(buf, p)
	p.replies.b = (*buf)[:0]
	cmds := j.cmds[p.lo:p.hi]
	sent := time.Now()
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.nodeTimeout)
	var broke error // the last attempt's broken connection, if one broke
	for attempt := 0; ; attempt++ {
		pipe := p.client.Pipeline()
		_ = pipe.BatchProcess(nctx, cmds...)
		_, _ = pipe.Exec(nctx) // errors are read per command below
		err := firstError(cmds)
		if err != nil && retryable(err) {
			broke = err
		}
		if err == nil || attempt >= st.retries || !retryable(err) || !sleep(nctx, backoff(attempt)) {
			break
		}
		p.replies.b = p.replies.b[:0]
		for _, cmd := range cmds {
			cmd.SetErr(nil)
			cmd.(*redis.RawWriteToCmd).SetVal(0)
		}
	}
	j.locate(p)
	if st.cluster != nil {
		st.redirect(nctx, j, p, m)
	}
	cancel()
	p.node.releaseSlot()
	p.err = j.partError(p)
	if broke != nil && isTimeout(p.err) {
		// The node's deadline passed while seer tried again after the
		// connection broke: the node's failure is the broken connection.
		p.err = broke
	}
	switch {
	case p.err == nil:
		p.node.brk.success()
	case !p.node.failed(p.err, sent):
		p.node.brk.release(p.probe)
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
		if j.cmds[i].Err() != nil {
			continue // the connection or the deadline failed: defaults
		}
		l := &lookups[j.lookups[j.at(i)]]
		raw := p.replies.at(j.spans[i])
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
			for k := range l.Specs {
				l.Miss(k, features.ReasonCorrupt)
			}
			continue
		}
		decode(l, vals, now, &c)
	}
	m.add(&c)
}

// replyMemory returns memory for a part's replies.
func (r *Retriever) replyMemory() *[]byte {
	if b, ok := r.replies.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// maxKeptReplies is the most memory of a part's replies that goes back to
// the pool.
const maxKeptReplies = 4 << 20

// keepReplyMemory gives the memory of p's replies back once they are
// decoded: decoded values copy what they keep.
func (r *Retriever) keepReplyMemory(buf *[]byte, p *part) {
	if cap(p.replies.b) <= maxKeptReplies {
		*buf = p.replies.b[:0]
		r.replies.Put(buf)
	}
	p.replies.b = nil
}

// locate records where each reply of part p lies in its replies: one after
// the other, in the order of the commands.
func (j *job) locate(p *part) {
	var off int32
	for i := p.lo; i < p.hi; i++ {
		n := int32(j.cmds[i].(*redis.RawWriteToCmd).Val())
		j.spans[i] = span{off, n}
		off += n
	}
}

// firstError returns the first error of cmds: the connection failed, or
// a deadline passed.
func firstError(cmds []redis.Cmder) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}

// partError returns the first error of a node's commands: a failed
// connection or deadline, or an error reply that says the node cannot
// serve. Error replies about one key (WRONGTYPE) are not the node's fault.
func (j *job) partError(p *part) error {
	if err := firstError(j.cmds[p.lo:p.hi]); err != nil {
		return err
	}
	for i := p.lo; i < p.hi; i++ {
		if raw := p.replies.at(j.spans[i]); len(raw) > 0 && raw[0] == '-' && !keyError(raw) {
			return fmt.Errorf("%w: %s", errNodeReply, bytes.TrimRight(raw[1:], "\r\n"))
		}
	}
	return nil
}

// retryable reports whether a pipeline that failed with err is worth
// sending again: the connection broke (a server restarted, a pooled
// connection was stale), rather than a deadline passing.
func retryable(err error) bool {
	switch {
	case isNetTimeout(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return false
	}
	return true
}

// backoff is the pause before the retry after attempt (from 0): go-redis's
// defaults, 8ms doubling up to 512ms.
func backoff(attempt int) time.Duration {
	return min(8*time.Millisecond<<min(attempt, 6), 512*time.Millisecond)
}

// sleep waits for d, or less when ctx ends first; false then.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// failed reports whether a read sent at sent that ended with err was the
// node's failure. A pool that had no connection to spare in time, a store
// being closed, or a cancelled context are seer's doing. A deadline that
// passed is the node's only when a read from it timed out, since sent,
// with nothing from the node to read (see conn.go): else seer was too busy
// to send the read, or to read the reply, in time. Everything else (a
// connection or protocol error, an error reply that refuses the node's
// reads) is the node's.
func (n *node) failed(err error, sent time.Time) bool {
	switch {
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, redis.ErrClosed), errors.Is(err, context.Canceled):
		return false
	case isTimeout(err):
		return n.silentSince(sent)
	}
	return true
}

// acquire takes one of the node's read slots, waiting no longer than ctx
// allows; false when ctx ended first.
func (n *node) acquire(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case n.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case n.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// releaseSlot returns a slot taken by acquire.
func (n *node) releaseSlot() { <-n.slots }

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

// decode fills one lookup from the values of its HMGET reply: a scalar's
// bits straight from its encoding, strings, vectors and lists as Values,
// each with its stamp; for the values it leaves out, why.
func decode(l *features.Lookup, vals [][]byte, now int64, c *counts) {
	for k, s := range l.Specs {
		b := vals[k]
		if b == nil {
			c.absent++ // no such key or field
			l.Miss(k, features.ReasonAbsent)
			continue
		}
		t, bits, stamp, err := features.DecodeScalar(b)
		var v features.Value
		if err == nil && t == s.Type && !t.Scalar() {
			v, stamp, err = features.DecodeStamped(b)
		}
		var why features.Reason
		switch {
		case err != nil:
			s.Stats().Corrupt.Add(1)
			c.corrupt++
			why = features.ReasonCorrupt
		case t != s.Type || !s.Fits(v):
			s.Stats().WrongType.Add(1) // another type, or a vector of another dim
			c.wrongType++
			why = features.ReasonWrongType
		case !s.AllowNonFinite && (t == features.Float && !finite(bits) || t == features.Vector && !v.Finite()):
			s.Stats().Corrupt.Add(1) // NaN and ±Inf only where the catalog allows them
			c.corrupt++
			why = features.ReasonCorrupt
		case s.MaxAge > 0 && stamp > 0 && time.Duration(now-stamp)*time.Second > s.MaxAge:
			s.Stats().Stale.Add(1)
			c.stale++
			why = features.ReasonStale
		case t.Scalar():
			l.SetScalar(k, bits, stamp, features.FromRedis)
			c.found++
			continue
		default:
			l.Set(k, v, stamp, features.FromRedis)
			c.found++
			continue
		}
		l.Miss(k, why)
	}
}

// finite reports whether the float whose bits are b is neither NaN nor
// infinite.
func finite(b uint64) bool { return b&0x7ff0000000000000 != 0x7ff0000000000000 }

// failResult is the metrics result of a store's part of a Fetch that
// failed with err: cancelled when its caller went away, timeout when a
// deadline passed (the request's, or a node's read_timeout), else error.
func failResult(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return resultCancelled
	case isTimeout(err):
		return resultTimeout
	}
	return resultError
}

// worse returns whichever of two results a store's part of a Fetch
// reports when its nodes fared differently.
func worse(a, b string) string {
	rank := func(r string) int {
		switch r {
		case resultBreaker:
			return 1
		case resultError:
			return 2
		case resultTimeout:
			return 3
		case resultCancelled:
			return 4
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
