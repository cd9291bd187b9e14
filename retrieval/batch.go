package retrieval

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Small reads to one node share round trips. While one batch of them is
// on the wire, the small reads that come meanwhile queue; when its
// replies are in, the first of them sends all that queued as one pipeline
// on one connection: one write and one read for many requests, where each
// read on its own connection costs a write, a read and a wake-up of the
// node per request. On a loopback or virtualised network those system
// calls are most of what a small request costs: writing an HMGET to Redis
// was a fifth of seer's CPU on a one-entity /v1/features
// (docs/performance.md). Under light load nothing queues, and a read goes
// out at once as before; the busier the node, the more each batch holds.
//
// A read joins a batch only when it is small (at most the store's
// batch_keys commands, 8 by default; -1 turns batches off): a large read
// goes on a connection of its own, in parallel, so that a small read never
// waits behind a large one's replies. Nor does a read wait for a batch
// that has been out for batchStall: it goes out in a batch of its own.
// Each batch runs under the node's own deadline, like any read (see
// runPart); a read whose caller gave up while it queued is not sent. Each
// read takes a copy of its replies, and fails or succeeds with its batch,
// then goes through runPart's retries and breaker as before: every read
// in a batch went to the same node on the same connection.

// batchStall is how long a batch may be out before the small reads that
// come stop waiting for it and go out in a batch of their own: a node that
// answers within it (a healthy one answers in well under a millisecond)
// gets batches one after the other; a node that froze gets every read
// sent about when it comes, as without batches, so that its reads fail,
// and its breaker opens, after read_timeout, not after several.
const batchStall = 10 * time.Millisecond

// batcher queues a node's small reads while a batch is out.
type batcher struct {
	mu     sync.Mutex
	stall  time.Duration // batchStall when 0 (tests set it)
	out    int           // batches on the wire, or about to be
	newest time.Time     // when the last of them was started
	queue  []*batchRead  // the reads waiting for the next batch
	spare  []*batchRead
	// woken, when set (by tests), is called by a read woken to lead the
	// next batch before it takes the queue.
	woken func()
}

// batchRead is one part's read in a batch.
type batchRead struct {
	ctx   context.Context
	opt   *redis.Options // the node's client's
	out   []byte         // the part's commands
	n     int
	in    []byte // its replies, copied out of the batch's
	spans []span // where each reply is in in
	err   error
	lead  bool          // woken to send the next batch, rather than done
	wake  chan struct{} // buffered: the leader never waits on a reader

	scratch []span // where the replies of a batch it leads are
}

var batchReads = sync.Pool{New: func() any { return &batchRead{wake: make(chan struct{}, 1)} }}

// batchRoundTrip sends part p's commands to its node in a batch and puts
// its replies in p.in; p.held keeps the copy until the replies are
// decoded.
func (r *Retriever) batchRoundTrip(ctx context.Context, j *job, p *part) error {
	st := r.stores[j.store]
	b := batchReads.Get().(*batchRead)
	b.ctx, b.opt, b.n, b.err = ctx, p.client.Options(), int(p.hi-p.lo), nil
	b.out = b.out[:0]
	for i := p.lo; i < p.hi; i++ {
		b.out = append(b.out, j.command(j.at(i))...)
	}
	b.spans = j.spans[p.lo:p.hi]
	bt := &p.node.batch
	bt.mu.Lock()
	bt.queue = append(bt.queue, b)
	stall := bt.stall
	if stall == 0 {
		stall = batchStall
	}
	if now := time.Now(); bt.out == 0 || now.Sub(bt.newest) >= stall {
		bt.out++
		bt.newest = now
	} else {
		bt.mu.Unlock()
		<-b.wake
		if !b.lead {
			return b.done(p)
		}
		b.lead = false // counted in out by the read that woke it
		if bt.woken != nil {
			bt.woken()
		}
		bt.mu.Lock()
		// It left the queue when it was chosen (see below), and leads
		// itself with the reads that queued since.
		bt.queue = append(bt.queue, b)
	}
	batch := bt.queue
	bt.queue, bt.spare = bt.spare[:0], nil
	bt.mu.Unlock()

	b.scratch = sendBatch(st, r.metrics[j.store], p.node, batch, b.scratch)
	for _, o := range batch {
		if o != b {
			o.wake <- struct{}{}
		}
	}

	bt.mu.Lock()
	bt.out--
	if bt.spare == nil {
		bt.spare = batch[:0]
	}
	clear(batch)
	if len(bt.queue) > 0 {
		// The reads that queued meanwhile go out now, led by the first,
		// which leaves the queue: until it runs, another read may take the
		// queue into a batch of its own (past the stall), and a read in
		// two batches would be woken twice, the second wake-up left in its
		// pooled channel for a later read to take as its replies'.
		next := bt.queue[0]
		n := copy(bt.queue, bt.queue[1:])
		bt.queue[n] = nil
		bt.queue = bt.queue[:n]
		next.lead = true
		bt.out++
		bt.newest = time.Now()
		next.wake <- struct{}{}
	}
	bt.mu.Unlock()
	return b.done(p)
}

// done hands the read's replies to p, or returns the read's error.
func (b *batchRead) done(p *part) error {
	if b.err != nil {
		err := b.err
		b.release()
		return err
	}
	p.in, p.held = b.in, b
	return nil
}

// release gives b back to the pool.
func (b *batchRead) release() {
	b.ctx, b.opt, b.spans, b.err = nil, nil, nil, nil
	if cap(b.in) > maxKeptBuffer {
		b.in = nil
	}
	if cap(b.out) > maxKeptBuffer {
		b.out = nil
	}
	batchReads.Put(b)
}

// sendBatch sends one batch on one of the node's wires, under the node's
// deadline, and gives each read its replies or the batch's error. spans
// is scratch; sendBatch returns it, grown when it was short.
func sendBatch(st *Store, m *storeMetrics, n *node, batch []*batchRead, spans []span) []span {
	// The reads whose callers gave up while they queued are not sent.
	var opt *redis.Options
	reads, total := 0, 0
	for _, b := range batch {
		if err := b.ctx.Err(); err != nil {
			b.err = err
			continue
		}
		reads, total, opt = reads+1, total+b.n, b.opt
	}
	if total == 0 {
		return spans
	}
	m.batches.Inc()
	m.batchedReads.Add(float64(reads))
	w, err := st.readWire(n, opt)
	if err != nil {
		failBatch(batch, err)
		return spans
	}
	w.out = w.out[:0]
	for _, b := range batch {
		if b.err == nil {
			w.out = append(w.out, b.out...)
		}
	}
	spans = slices.Grow(spans[:0], total)[:total]
	if err := w.roundTrip(time.Now().Add(st.nodeTimeout), total, spans, nil); err != nil {
		n.wires.put(w, true)
		failBatch(batch, err)
		return spans
	}
	k := 0
	for _, b := range batch {
		if b.err != nil {
			continue
		}
		first := spans[k].off
		last := spans[k+b.n-1]
		b.in = append(b.in[:0], w.in[first:last.off+last.n]...)
		for i := range b.n {
			sp := spans[k+i]
			b.spans[i] = span{sp.off - first, sp.n}
		}
		k += b.n
	}
	n.wires.put(w, false)
	return spans
}

// failBatch fails the reads of batch that were sent with err.
func failBatch(batch []*batchRead, err error) {
	for _, b := range batch {
		if b.err == nil {
			b.err = err
		}
	}
}
