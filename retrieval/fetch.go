package retrieval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
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
	jobs    sync.Pool // *job

	// partsDone, when not nil, runs in a job's goroutine once its parts
	// are decoded, before the job is finished: tests widen the window in
	// which Fetch may give up on a job that has all its values.
	partsDone func(*job)
}

// New returns a Retriever over stores, which it does not own: the caller
// closes them after the last Fetch.
func New(stores []*Store, opt Options) *Retriever {
	m := newMetrics(opt.Registerer)
	r := &Retriever{stores: stores, byName: make(map[string]int, len(stores)), upload: m.upload, cache: opt.Cache}
	for i, s := range stores {
		r.byName[s.name] = i
		r.metrics = append(r.metrics, m.store(s.name))
		if opt.Registerer != nil {
			registerGenerationsMissing(opt.Registerer, s)
		}
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

// job is one store's part of a Fetch: its HMGETs, written before the
// store's goroutine starts so that the goroutine never reads the caller's
// lookups until it holds mu and knows the Fetch still waits for it.
type job struct {
	store   int
	lookups []int32 // indices into the Fetch's lookups
	keys    []string
	// specs are the features the lookups read, in order; lookup k reads
	// specs[fields[k].from:fields[k].to], the same range as lookup k-1
	// when they share their Specs (the lookups of a plan group do).
	specs   []*features.Spec
	fields  []specRange
	tab     *genTable // the store's generations when the job was made
	unknown bool      // the generations were never read: run reads them
	req     []byte    // the HMGETs in RESP, in the order of lookups
	reqEnd  []int32   // where the HMGET of lookup k ends in req
	start   time.Time

	// parts split the job by node. Part p sends the HMGETs of lookups
	// order[lo:hi] (positions in lookups and keys), whose replies are at
	// spans[lo:hi] in its wire's buffer; order is nil when one node serves
	// them all in order.
	parts []part
	one   [1]part
	order []int32
	spans []span
	which []int32 // route's scratch: the part of each command
	// decoded marks the commands whose replies were decoded into their
	// lookups while the rest were still arriving.
	decoded []bool

	mu        sync.Mutex
	abandoned bool // Fetch returned without this job
	finished  bool
	// pending counts the lookups whose replies were not decoded: the
	// store is degraded for the Fetch exactly when some are left, so that
	// the store is named if and only if some of its values took
	// features.ReasonStoreDegraded.
	pending int
	users   int // Fetch and, while it runs, the job's goroutine
}

// newJob returns a job for store si from the pool.
func (r *Retriever) newJob(si int) *job {
	j, _ := r.jobs.Get().(*job)
	if j == nil {
		j = new(job)
	}
	j.store, j.users = si, 1
	return j
}

// releaseJob ends one user's hold on j; the last one gives it back to the
// pool, emptied.
func (r *Retriever) releaseJob(j *job) {
	j.mu.Lock()
	j.users--
	last := j.users == 0
	j.mu.Unlock()
	if !last {
		return
	}
	clear(j.keys)
	clear(j.specs)
	clear(j.parts)
	j.one[0] = part{}
	j.lookups, j.keys, j.reqEnd, j.order, j.spans = j.lookups[:0], j.keys[:0], j.reqEnd[:0], j.order[:0], j.spans[:0]
	j.specs, j.fields, j.tab, j.unknown = j.specs[:0], j.fields[:0], nil, false
	j.parts, j.which, j.decoded = j.parts[:0], j.which[:0], j.decoded[:0]
	j.req = j.req[:0]
	if cap(j.req) > maxKeptBuffer {
		j.req = nil
	}
	j.abandoned, j.finished, j.pending = false, false, 0
	r.jobs.Put(j)
}

// part is the share of a job that goes to one node.
type part struct {
	node    *node
	client  *redis.Client
	lo, hi  int32
	probe   bool  // the probe of the node's half-open breaker
	skipped bool  // the node's breaker is open: nothing was sent
	err     error // why the node failed, nil when it answered
	// in holds the replies, while they are decoded: the buffer of wire,
	// the connection they came on, or of held, the part's read in a
	// batch (batch.go).
	in   []byte
	wire *wire
	held *batchRead
}

// span is where one reply lies in a wire's buffer.
type span struct{ off, n int32 }

// specRange is where a lookup's features are in a job's specs.
type specRange struct{ from, to int32 }

// reply returns the reply of the part's i-th HMGET (from 0).
func (p *part) reply(j *job, i int32) []byte {
	sp := j.spans[i]
	return p.in[sp.off : sp.off+sp.n : sp.off+sp.n]
}

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
// did not answer in time, wholly or in part (one node of a ring or cluster):
// exactly those with lookups whose replies were not decoded, which keep the
// values they had (invalid, features.ReasonStoreDegraded after
// Plan.Prepare), so they take defaults. It never blocks past ctx: a store
// still busy when ctx ends is abandoned, and reported as degraded unless
// all its replies were decoded.
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
			j := r.newJob(si)
			j.lookups = slices.Grow(j.lookups, int(n))
			jobs = append(jobs, j)
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
		j.pending = len(j.lookups)
		tab, known := st.readTable()
		if expired || !st.begin() {
			j.finished = true // out of time, or closed: nothing decoded
			continue
		}
		j.tab, j.unknown = tab, !known
		j.build(lookups)
		waiting++
		j.start = time.Now()
		j.users++ // the goroutine's
		go func() {
			defer st.inflight.Done()
			r.run(ctx, j, lookups)
			done <- j
			r.releaseJob(j)
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
					// A job whose parts were all decoded before the
					// deadline is not degraded, though its goroutine
					// has not yet said so.
					j.abandoned = true
					result := resultOK
					if j.pending > 0 {
						result = failResult(ctx.Err())
					}
					r.metrics[j.store].observe(result, time.Since(j.start))
				}
				j.mu.Unlock()
			}
			waiting = 0
		}
	}
	for _, j := range jobs {
		if j.pending > 0 {
			degraded = append(degraded, r.stores[j.store].name)
		}
		r.releaseJob(j)
	}
	degraded = append(degraded, unknown...)
	if cf != nil {
		// Restore the lookups, fill the cache, wait for joined reads,
		// queue shadow comparisons.
		degraded = r.cache.after(ctx, cf, lookups, degraded)
	}
	return degraded
}

// build copies what the job's HMGETs read out of the lookups, so that a
// command still queued after Fetch gave up never reads the caller's
// lookups: keys are immutable strings, and the specs immutable too.
func (j *job) build(lookups []features.Lookup) {
	j.keys = slices.Grow(j.keys[:0], len(j.lookups))[:len(j.lookups)]
	j.fields = slices.Grow(j.fields[:0], len(j.lookups))[:len(j.lookups)]
	var prev []*features.Spec
	for k, li := range j.lookups {
		l := &lookups[li]
		j.keys[k] = l.Key
		if k > 0 && len(prev) == len(l.Specs) && unsafe.SliceData(prev) == unsafe.SliceData(l.Specs) {
			j.fields[k] = j.fields[k-1] // the lookups of a group share their Specs
			continue
		}
		from := len(j.specs)
		j.specs = append(j.specs, l.Specs...)
		j.fields[k] = specRange{int32(from), int32(len(j.specs))}
		prev = l.Specs
	}
}

// write writes the job's HMGETs in RESP, reading each feature from its
// field in the generations tab (its catalog field when tab is nil). A
// lookup that reads the features of the one before copies its fields.
func (j *job) write(tab *genTable) {
	n := 0
	for k := range j.keys {
		n += 32 + len(j.keys[k]) + 16*int(j.fields[k].to-j.fields[k].from)
	}
	j.req = slices.Grow(j.req[:0], n)
	j.reqEnd = slices.Grow(j.reqEnd[:0], len(j.keys))[:len(j.keys)]
	var lastFrom, lastTo int // where the fields of lookup k-1 are in req
	for k, key := range j.keys {
		fr := j.fields[k]
		j.req = appendHMGET(j.req, key, int(fr.to-fr.from))
		from := len(j.req)
		if k > 0 && fr == j.fields[k-1] {
			j.req = append(j.req, j.req[lastFrom:lastTo]...)
		} else {
			for _, s := range j.specs[fr.from:fr.to] {
				j.req = appendBulk(j.req, *tab.field(s))
			}
		}
		lastFrom, lastTo = from, len(j.req)
		j.reqEnd[k] = int32(len(j.req))
	}
}

// command returns the HMGET of lookup k, in RESP.
func (j *job) command(k int32) []byte {
	var from int32
	if k > 0 {
		from = j.reqEnd[k-1]
	}
	return j.req[from:j.reqEnd[k]]
}

// run routes the job's commands to their nodes and sends one pipeline
// per node, in parallel, skipping nodes whose breaker is open. Each part
// decodes its replies into the lookups as soon as it has them, unless
// Fetch has given up on the job: when one node is slow or down, the
// others' values still arrive.
func (r *Retriever) run(ctx context.Context, j *job, lookups []features.Lookup) {
	st, m := r.stores[j.store], r.metrics[j.store]
	tab, err := j.tab, error(nil)
	if j.unknown {
		tab, err = st.firstTable(ctx) // the fields depend on the generations
	}
	if err == nil {
		j.write(tab)
		err = st.route(ctx, j)
	}
	if err == nil {
		j.spans = slices.Grow(j.spans[:0], len(j.keys))[:len(j.keys)]
		j.decoded = slices.Grow(j.decoded[:0], len(j.keys))[:len(j.keys)]
		clear(j.decoded)
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
	if r.partsDone != nil {
		r.partsDone(j)
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
	m.observe(result, time.Since(j.start))
}

// runPart sends one node's pipeline, tells the node's breaker how it went
// and, unless Fetch has given up on the job, decodes the replies: those
// that come in before the last read as they come (a value decoded is a
// value read, even should the rest fail), the others at the end.
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
	sent := time.Now()
	d := partDecoder{j: j, p: p, lookups: lookups, now: sent.Unix()}
	var broke error // the last attempt's broken connection, if one broke
	for attempt := 0; ; attempt++ {
		p.err = r.roundTrip(ctx, j, p, d.arrived)
		if p.err != nil && retryable(p.err) {
			broke = p.err
		}
		if p.err == nil || attempt >= st.retries || !retryable(p.err) || !sleepUntil(sent.Add(st.nodeTimeout), backoff(attempt)) {
			break
		}
	}
	if p.err == nil && st.cluster != nil {
		p.err = st.redirect(time.Now().Add(st.nodeTimeout), j, p, m)
	}
	if p.err == nil {
		p.err = j.partError(p)
	}
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
		if p.node.brk.failure(p.probe, errors.Is(p.err, errNodeReply)) {
			m.opened.Inc()
		}
	}
	defer func() {
		switch {
		case p.wire != nil:
			p.wire.in = p.in // grown by redirect, perhaps
			p.node.wires.put(p.wire, false)
		case p.held != nil:
			p.held.in = p.in
			p.held.release()
		}
		p.in, p.wire, p.held = nil, nil, nil
		p.node.releaseSlot()
	}()

	j.mu.Lock()
	defer j.mu.Unlock()
	defer m.add(&d.c)
	if j.abandoned || p.in == nil {
		return
	}
	for i := p.lo; i < p.hi; i++ {
		raw := p.reply(j, i)
		if j.decoded[i] || len(raw) > 0 && raw[0] == '-' && !keyError(raw) {
			continue // decoded, or the node cannot serve (LOADING, CLUSTERDOWN, ...): defaults
		}
		d.decode(i, raw)
	}
}

// partDecoder decodes a part's replies into their lookups.
type partDecoder struct {
	j       *job
	p       *part
	lookups []features.Lookup
	now     int64 // for the values' ages
	vals    [][]byte
	c       counts
}

// arrived decodes, unless Fetch has given up on the job, the replies in in
// of the part's first done commands that were not decoded yet (by an
// earlier call, or an earlier attempt), while the node works on the rest:
// a node's replies to a whole query come in several reads, and decoding
// one read's while the next is on its way keeps the decoding off the
// request's critical path. Error replies are left for the last pass.
func (d *partDecoder) arrived(in []byte, done int) {
	j, p := d.j, d.p
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.abandoned {
		return
	}
	for i := p.lo; i < p.lo+int32(done); i++ {
		sp := j.spans[i]
		raw := in[sp.off : sp.off+sp.n : sp.off+sp.n]
		if j.decoded[i] || len(raw) > 0 && raw[0] == '-' {
			continue
		}
		d.decode(i, raw)
	}
}

// decode decodes the reply raw of command i into its lookup.
func (d *partDecoder) decode(i int32, raw []byte) {
	j := d.j
	l := &d.lookups[j.lookups[j.at(i)]]
	j.decoded[i] = true
	j.pending--
	d.vals = slices.Grow(d.vals[:0], len(l.Specs))[:len(l.Specs)]
	if err := splitReply(raw, d.vals); err != nil {
		// An error reply for this key alone, such as WRONGTYPE when the
		// key is not a hash, or a malformed reply: its values are
		// unusable.
		for _, s := range l.Specs {
			s.Stats().Corrupt.Add(1)
		}
		d.c.corrupt += len(l.Specs)
		for k := range l.Specs {
			l.Miss(k, features.ReasonCorrupt)
		}
		return
	}
	decode(l, d.vals, d.now, &d.c)
}

// roundTrip sends part p's HMGETs to its node through a wire, an idle one
// or a new one (connected within the store's dial_timeout and
// read_timeout), and reads their replies within read_timeout, passing each
// read's complete replies to arrived (see wire.roundTrip). On success
// the part holds the wire until its replies are decoded; a wire that
// failed is closed.
func (r *Retriever) roundTrip(ctx context.Context, j *job, p *part, arrived func([]byte, int)) error {
	st := r.stores[j.store]
	if st.isClosed() {
		return redis.ErrClosed // a cluster node met after Close would keep its wires
	}
	if n := int(p.hi - p.lo); n > 0 && n <= st.batchKeys {
		return r.batchRoundTrip(ctx, j, p)
	}
	w, err := st.readWire(p.node, p.client.Options())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(st.nodeTimeout)
	w.out = w.out[:0]
	for i := p.lo; i < p.hi; i++ {
		w.out = append(w.out, j.command(j.at(i))...)
	}
	if err := w.roundTrip(deadline, int(p.hi-p.lo), j.spans[p.lo:p.hi], arrived); err != nil {
		p.node.wires.put(w, true)
		return err
	}
	p.in, p.wire = w.in, w
	return nil
}

// readWire returns a wire to node n for a query's read: an idle one, or a
// new one connected within the store's dial_timeout and set up within
// read_timeout (opt are the node's client's options).
func (s *Store) readWire(n *node, opt *redis.Options) (*wire, error) {
	return n.wires.get(func() (*wire, error) {
		return newWire(time.Now().Add(s.dialTimeout+s.nodeTimeout), opt, s.dial)
	})
}

// partError returns the first error reply of a node's HMGETs that says
// the node cannot serve. Error replies about one key (WRONGTYPE) are not
// the node's fault.
func (j *job) partError(p *part) error {
	for i := p.lo; i < p.hi; i++ {
		if raw := p.reply(j, i); len(raw) > 0 && raw[0] == '-' && !keyError(raw) {
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

// sleepUntil waits for d, unless deadline comes first; false then.
func sleepUntil(deadline time.Time, d time.Duration) bool {
	if time.Until(deadline) <= d {
		return false
	}
	time.Sleep(d)
	return true
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
		errors.Is(err, redis.ErrClosed), errors.Is(err, net.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, errRedirected):
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
			v, stamp, err = s.Decode(b)
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
