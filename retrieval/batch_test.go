package retrieval

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

// batchEnv is a store on one redis-server, through addr (the server's, or
// a proxy's), holding store_rating k/10 for stores 1 to 9.
type batchEnv struct {
	srv *redistest.Server
	st  *Store
	r   *Retriever
	c   *features.Catalog
}

func newBatchEnv(t *testing.T, cfg Config, through func(addr string) string) *batchEnv {
	t.Helper()
	e := &batchEnv{srv: redistest.Start(t), c: testCatalogParse(t)}
	cfg.Addr = through(e.srv.Addr)
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 20 * time.Second // a loaded machine never fails the node
	}
	st, err := Open(context.Background(), "main", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st, e.r = st, New([]*Store{st}, Options{})
	var csv strings.Builder
	csv.WriteString("id,store_rating\n")
	for k := 1; k <= 9; k++ {
		fmt.Fprintf(&csv, "%d,%d.5\n", k, k)
	}
	if _, err := e.r.UploadFile(context.Background(), e.c, "store", writeFile(t, "s.csv", csv.String()), UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := e.fetch(context.Background(), 1); err != nil || got != "1.5" { // dials the node, reads the generations
		t.Fatalf("first read: %q, %v", got, err)
	}
	// The reads the tests start queue behind a frozen node's batch
	// however slowly they come.
	bt := &e.st.nodes[0].batch
	bt.mu.Lock()
	bt.stall = time.Hour
	bt.mu.Unlock()
	return e
}

// fetch reads store k's rating on its own; it returns the value, or an
// error naming what was degraded or missing.
func (e *batchEnv) fetch(ctx context.Context, k int) (string, error) {
	q := []features.Lookup{features.NewLookup("main", "st_"+strconv.Itoa(k), []*features.Spec{e.c.Spec("store_rating")})}
	if degraded := e.r.Fetch(ctx, q); len(degraded) > 0 {
		return "", fmt.Errorf("store %d: degraded %v", k, degraded)
	}
	v := q[0].Value(0)
	if !v.Valid() {
		return "", fmt.Errorf("store %d: no value (%v)", k, q[0].Got[0].Why)
	}
	return strconv.FormatFloat(v.Float(), 'f', -1, 64), nil
}

// fetchEach reads stores from..to, each in a Fetch of its own in its own
// goroutine, and returns what each read, in order.
func (e *batchEnv) fetchEach(ctx context.Context, from, to int) (wait func() []string) {
	got := make([]string, to-from+1)
	var wg sync.WaitGroup
	for k := from; k <= to; k++ {
		wg.Go(func() {
			v, err := e.fetch(ctx, k)
			if err != nil {
				v = err.Error()
			}
			got[k-from] = v
		})
	}
	return func() []string { wg.Wait(); return got }
}

// freeze stops the node and reads store 2 in a batch that stays out until
// the node resumes; first returns what that read got.
func (e *batchEnv) freeze(t *testing.T) (first func() []string) {
	t.Helper()
	e.srv.Pause()
	t.Cleanup(e.srv.Resume)
	first = e.fetchEach(context.Background(), 2, 2)
	e.waitBatcher(t, "a batch on the wire", func(bt *batcher) bool { return bt.out == 1 })
	return first
}

// waitBatcher waits until the node's batcher satisfies cond.
func (e *batchEnv) waitBatcher(t *testing.T, what string, cond func(*batcher) bool) {
	t.Helper()
	bt := &e.st.nodes[0].batch
	for deadline := time.Now().Add(20 * time.Second); ; {
		bt.mu.Lock()
		ok := cond(bt)
		bt.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the batcher never had %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *batchEnv) counts() (batches, reads float64) {
	m := e.r.metrics[0]
	return testutil.ToFloat64(m.batches), testutil.ToFloat64(m.batchedReads)
}

func want(from, to int) []string {
	var w []string
	for k := from; k <= to; k++ {
		w = append(w, fmt.Sprintf("%d.5", k))
	}
	return w
}

// TestBatchSharesRoundTrip freezes the node while one small read is on the
// wire: the reads that come meanwhile queue, and go out together as the
// next batch, each getting its own values.
func TestBatchSharesRoundTrip(t *testing.T) {
	e := newBatchEnv(t, Config{}, func(addr string) string { return addr })
	b0, r0 := e.counts()
	calls0 := hmgetCalls(t, e.srv)

	first := e.freeze(t)
	rest := e.fetchEach(context.Background(), 3, 9)
	e.waitBatcher(t, "7 reads queued", func(bt *batcher) bool { return len(bt.queue) == 7 })
	e.srv.Resume()

	if got := append(first(), rest()...); !slices.Equal(got, want(2, 9)) {
		t.Errorf("values %q, want %q", got, want(2, 9))
	}
	b, r := e.counts()
	if b-b0 != 2 || r-r0 != 8 {
		t.Errorf("%v batches of %v reads, want 2 of 8: one of the first read, one of the 7 that queued", b-b0, r-r0)
	}
	if n := hmgetCalls(t, e.srv) - calls0; n != 8 {
		t.Errorf("the node answered %d HMGETs, want 8", n)
	}
}

// TestBatchGivenUpWhileQueued: a read whose caller gave up while it queued
// is never sent, and its store is degraded for that caller only.
func TestBatchGivenUpWhileQueued(t *testing.T) {
	e := newBatchEnv(t, Config{}, func(addr string) string { return addr })
	b0, r0 := e.counts()
	calls0 := hmgetCalls(t, e.srv)

	first := e.freeze(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	late := e.fetchEach(ctx, 3, 3)
	if got := late(); !strings.Contains(got[0], "degraded [main]") {
		t.Errorf("the read given up: %q, want the store degraded", got[0])
	}
	e.waitBatcher(t, "the given-up read queued", func(bt *batcher) bool { return len(bt.queue) == 1 })
	e.srv.Resume()
	if got := first(); got[0] != "2.5" {
		t.Errorf("the first read: %q", got[0])
	}
	e.waitBatcher(t, "nothing on the wire", func(bt *batcher) bool { return bt.out == 0 })

	if b, r := e.counts(); b-b0 != 1 || r-r0 != 1 {
		t.Errorf("%v batches of %v reads, want the first read's alone", b-b0, r-r0)
	}
	if n := hmgetCalls(t, e.srv) - calls0; n != 1 {
		t.Errorf("the node answered %d HMGETs, want 1: the read given up was sent", n)
	}
	if e.st.nodeBreakerOpen(e.st.nodes[0].addr) {
		t.Error("the breaker opened")
	}
	if got, err := e.fetch(context.Background(), 4); err != nil || got != "4.5" {
		t.Errorf("a read after: %q, %v", got, err)
	}
}

// TestBatchConnectionBreaks cuts the connection that carries a batch of
// several reads: each read is sent again and gets its own values; with
// max_retries -1, each fails, and takes defaults.
func TestBatchConnectionBreaks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		retries int
		want    func(got []string) bool
	}{
		{"retried", 0, func(got []string) bool { return slices.Equal(got, want(2, 9)) }},
		{"no retries", -1, func(got []string) bool {
			for _, g := range got[1:] {
				if !strings.Contains(g, "degraded [main]") {
					return false
				}
			}
			return got[0] == "2.5"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The proxy cuts the connection that sends the first
			// chunk with more than one HMGET: the batch of queued
			// reads.
			var cut atomic.Bool
			e := newBatchEnv(t, Config{MaxRetries: tc.retries, Breaker: BreakerConfig{Failures: -1}}, func(addr string) string {
				return proxy(t, func() string { return addr }, func(server, client net.Conn) {
					buf := make([]byte, 64<<10)
					for {
						n, err := client.Read(buf)
						if n > 0 && bytes.Count(buf[:n], []byte("HMGET")) > 1 && cut.CompareAndSwap(false, true) {
							client.Close()
							server.Close()
							return
						}
						if n > 0 {
							if _, err := server.Write(buf[:n]); err != nil {
								return
							}
						}
						if err != nil {
							return
						}
					}
				}, nil)
			})
			first := e.freeze(t)
			rest := e.fetchEach(context.Background(), 3, 9)
			e.waitBatcher(t, "7 reads queued", func(bt *batcher) bool { return len(bt.queue) == 7 })
			e.srv.Resume()
			got := append(first(), rest()...)
			if !cut.Load() {
				t.Fatal("no batch of several reads was sent")
			}
			if !tc.want(got) {
				t.Errorf("values %q", got)
			}
			if got, err := e.fetch(context.Background(), 9); err != nil || got != "9.5" {
				t.Errorf("a read after: %q, %v", got, err)
			}
		})
	}
}

// TestBatchStalled: reads that come when a batch has been out for longer
// than the stall do not wait for it, but go out at once: a frozen node's
// reads fail (and open its breaker) after read_timeout, as without
// batches, not one after the other.
func TestBatchStalled(t *testing.T) {
	e := newBatchEnv(t, Config{}, func(addr string) string { return addr })
	bt := &e.st.nodes[0].batch
	bt.mu.Lock()
	bt.stall = 50 * time.Millisecond
	bt.mu.Unlock()
	b0, r0 := e.counts()

	first := e.freeze(t)
	time.Sleep(100 * time.Millisecond) // past the stall
	second := e.fetchEach(context.Background(), 3, 3)
	e.waitBatcher(t, "two batches on the wire", func(bt *batcher) bool { return bt.out == 2 })
	e.srv.Resume()
	if got := append(first(), second()...); !slices.Equal(got, want(2, 3)) {
		t.Errorf("values %q, want %q", got, want(2, 3))
	}
	if b, r := e.counts(); b-b0 != 2 || r-r0 != 2 {
		t.Errorf("%v batches of %v reads, want 2 of 1", b-b0, r-r0)
	}
}

// TestBatchKeys: batch_keys -1 turns batches off, each read on a
// connection of its own; a read of more keys than batch_keys does not
// batch either.
func TestBatchKeys(t *testing.T) {
	for _, tc := range []struct {
		keys    int
		batched bool
	}{{-1, false}, {0, true}, {1, true}} {
		t.Run(strconv.Itoa(tc.keys), func(t *testing.T) {
			e := newBatchEnv(t, Config{BatchKeys: tc.keys}, func(addr string) string { return addr })
			b0, _ := e.counts()
			if got, err := e.fetch(context.Background(), 3); err != nil || got != "3.5" {
				t.Fatalf("read: %q, %v", got, err)
			}
			if b, _ := e.counts(); (b > b0) != tc.batched {
				t.Errorf("batch_keys %d: a read of one key made %v batches", tc.keys, b-b0)
			}
			// Two keys in one Fetch: one read of two commands.
			q := []features.Lookup{
				features.NewLookup("main", "st_4", []*features.Spec{e.c.Spec("store_rating")}),
				features.NewLookup("main", "st_5", []*features.Spec{e.c.Spec("store_rating")}),
			}
			b0, _ = e.counts()
			if degraded := e.r.Fetch(context.Background(), q); len(degraded) > 0 || q[1].Value(0).Float() != 5.5 {
				t.Fatalf("read of two keys: degraded %v, value %v", degraded, q[1].Value(0))
			}
			if b, _ := e.counts(); (b > b0) != (tc.batched && tc.keys != 1) {
				t.Errorf("batch_keys %d: a read of two keys made %v batches", tc.keys, b-b0)
			}
		})
	}
}

// TestBatchChosenLeaderNotTaken: a read chosen to lead the next batch that
// has not run yet when another read comes, past the stall, is not taken
// into that read's batch. It was: it then got two wake-ups, the second of
// which, left in its pooled channel, made a later read return at once
// with another read's replies, or went to nobody and left the reads
// queued behind it waiting for a leader that never came.
func TestBatchChosenLeaderNotTaken(t *testing.T) {
	e := newBatchEnv(t, Config{}, func(addr string) string { return addr })
	bt := &e.st.nodes[0].batch

	first := e.freeze(t)
	chosen := e.fetchEach(context.Background(), 3, 3)
	e.waitBatcher(t, "a read queued", func(bt *batcher) bool { return len(bt.queue) == 1 })
	woken, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	bt.mu.Lock()
	bt.woken = func() {
		once.Do(func() {
			close(woken)
			<-release // the chosen leader has not run yet
		})
	}
	bt.mu.Unlock()
	released := sync.OnceFunc(func() { close(release) })
	defer released()
	e.srv.Resume()
	<-woken
	bt.mu.Lock()
	bt.stall = time.Nanosecond // the next read does not wait for the chosen leader
	bt.mu.Unlock()

	late := e.fetchEach(context.Background(), 4, 4)
	done := make(chan []string)
	go func() { done <- late() }()
	select {
	case got := <-done:
		if got[0] != "4.5" {
			t.Errorf("the read that came meanwhile: %q, want 4.5", got[0])
		}
	case <-time.After(10 * time.Second):
		t.Error("the read that came while the chosen leader had not run waited for it")
		released()
		<-done
	}
	released()
	if got := append(first(), chosen()...); !slices.Equal(got, want(2, 3)) {
		t.Errorf("values %q, want %q", got, want(2, 3))
	}
	e.waitBatcher(t, "nothing on the wire", func(bt *batcher) bool { return bt.out == 0 && len(bt.queue) == 0 })

	// Every read after it, led or queued, gets its own values.
	bt.mu.Lock()
	bt.woken, bt.stall = nil, time.Hour
	bt.mu.Unlock()
	for round := range 5 {
		first := e.freeze(t)
		rest := e.fetchEach(context.Background(), 3, 9)
		e.waitBatcher(t, "7 reads queued", func(bt *batcher) bool { return len(bt.queue) == 7 })
		e.srv.Resume()
		if got := append(first(), rest()...); !slices.Equal(got, want(2, 9)) {
			t.Fatalf("round %d: values %q, want %q", round, got, want(2, 9))
		}
	}
}

// TestBatchValuesUnderDelays sends many small reads at once while the
// reads chosen to lead a batch are held back for up to 5 ms, past a stall
// of 1 ms, so that batches overlap in many orders: each read gets its own
// store's value, and no read is left waiting.
func TestBatchValuesUnderDelays(t *testing.T) {
	e := newBatchEnv(t, Config{}, func(addr string) string { return addr })
	woken := holdChosenLeaders(&e.st.nodes[0].batch)
	reads := 100
	if raceEnabled {
		reads = 20
	}
	concurrently(t, 32, reads, func(w, i int) error {
		k := 1 + (w+i)%9
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if got, err := e.fetch(ctx, k); err != nil || got != fmt.Sprintf("%d.5", k) {
			return fmt.Errorf("store %d: %q, %v; want %d.5", k, got, err, k)
		}
		return nil
	})
	if woken.Load() == 0 {
		t.Error("no read was chosen to lead a batch: the test did not test")
	}
	e.waitBatcher(t, "nothing on the wire or queued", func(bt *batcher) bool { return bt.out == 0 && len(bt.queue) == 0 })
	t.Logf("%d reads chosen to lead", woken.Load())
}

// holdChosenLeaders makes bt's stall 1 ms and holds every other read
// chosen to lead a batch back for up to 5 ms before it takes the queue,
// so that reads come past the stall while it waits. It returns how many
// reads were chosen.
func holdChosenLeaders(bt *batcher) *atomic.Int64 {
	woken := new(atomic.Int64)
	bt.mu.Lock()
	defer bt.mu.Unlock()
	bt.stall = time.Millisecond
	bt.woken = func() {
		if n := woken.Add(1); n%2 == 0 {
			time.Sleep(time.Duration(n%5000) * time.Microsecond)
		}
	}
	return woken
}

// concurrently runs workers goroutines, each calling read(w, i) for i up
// to reads, and fails t with the first error and how many there were;
// after an error the workers stop.
func concurrently(t *testing.T, workers, reads int, read func(w, i int) error) {
	t.Helper()
	var bad atomic.Int64
	var first sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < reads && bad.Load() == 0; i++ {
				if err := read(w, i); err != nil {
					bad.Add(1)
					first.Do(func() { t.Error(err) })
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d reads wrong (of up to %d)", n, workers*reads)
	}
}
