package retrieval

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

// The tests of this file check that a node's breaker hears only of the
// node's own failures: reads that Fetch gave up on at the request's
// deadline, reads whose caller went away, reads queued inside seer and
// reads slowed by seer's own pauses must not open it; a frozen node still
// must (TestShardNodeFrozen).

// TestBreakerIgnoresAbandonedReads drives healthy nodes with Fetches whose
// budgets are too short for them, from eight goroutines at once (the
// machine saturated), and cancels some of them: a breaker that opens after
// one failure must stay closed.
func TestBreakerIgnoresAbandonedReads(t *testing.T) {
	for _, mode := range shardModes {
		t.Run(mode, func(t *testing.T) {
			e := newShardEnv(t, mode, Config{Breaker: BreakerConfig{Failures: 1}})
			ids := allStores()
			if got := e.fetch(t, 1, ids, 5*time.Second); len(got.degraded) > 0 {
				t.Fatalf("degraded %v before the test", got.degraded)
			}
			p, err := e.catalog.DisplayPlan(shardNames)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			abandoned := 0
			stop := time.Now().Add(time.Second)
			for w := range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					var b features.Batch
					for i := 0; time.Now().Before(stop); i++ {
						q := &features.Query{Context: map[string]string{"consumer": "1"}}
						for _, id := range ids {
							q.Candidates = append(q.Candidates, features.Candidate{Entities: map[string]string{"store": strconv.Itoa(id)}})
						}
						if err := p.Prepare(q, &b); err != nil {
							t.Error(err)
							return
						}
						var ctx context.Context
						var cancel context.CancelFunc
						budget := time.Duration(rng.IntN(3000)) * time.Microsecond
						if i%3 == 0 {
							ctx, cancel = context.WithCancel(context.Background())
							time.AfterFunc(budget, cancel) // the caller goes away
						} else {
							ctx, cancel = context.WithTimeout(context.Background(), budget)
						}
						if len(e.r.Fetch(ctx, b.Lookups)) > 0 {
							mu.Lock()
							abandoned++
							mu.Unlock()
						}
						cancel()
					}
				})
			}
			wg.Wait()
			if abandoned == 0 {
				t.Fatal("no Fetch was given up on: the budgets are not short enough to test anything")
			}
			// Reads Fetch gave up on finish in the background: wait for them.
			time.Sleep(100 * time.Millisecond)
			for _, st := range []int{0, 1} {
				m := e.r.metrics[st]
				if got := testutil.ToFloat64(m.opened); got != 0 {
					t.Errorf("store %s: breaker opened %v times after %d Fetches were given up on by their callers", e.r.stores[st].name, got, abandoned)
				}
			}
			if got := e.fetch(t, 1, ids, 5*time.Second); len(got.degraded) > 0 {
				t.Errorf("degraded %v after the test", got.degraded)
			}
			if sampleCount(t, e.r.metrics[0].duration[resultCancelled]) == 0 {
				t.Error("no Fetch counted as cancelled")
			}
		})
	}
}

// TestBreakerIgnoresQueuedReads gives a node one connection, 60ms away, and
// sends it eight Fetches at a time with a 100ms budget: most wait inside
// seer for the connection and give up. Only reads that were sent may count
// against the node, and those all succeed.
func TestBreakerIgnoresQueuedReads(t *testing.T) {
	c := testCatalogParse(t)
	srv := redistest.Start(t)
	_, r := openMain(t, c, Config{
		Addr: delayProxy(t, srv.Addr, 60*time.Millisecond), PoolSize: 1,
		Breaker: BreakerConfig{Failures: 1},
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	degraded := 0
	for range 3 {
		for range 8 {
			wg.Go(func() {
				if _, d := fetchAll(t, r, c, []string{"1"}, []string{"store_rating"}, 100*time.Millisecond); len(d) > 0 {
					mu.Lock()
					degraded++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if degraded == 0 {
		t.Fatal("no Fetch waited past its budget: nothing was queued")
	}
	time.Sleep(200 * time.Millisecond) // the reads still out land
	if got := testutil.ToFloat64(r.metrics[0].opened); got != 0 {
		t.Errorf("the breaker opened %v times; %d Fetches had given up while queued", got, degraded)
	}
	if rows, d := fetchAll(t, r, c, []string{"1"}, []string{"store_rating"}, 5*time.Second); len(d) > 0 || rows[0][0].Value.Float() != 2.5 {
		t.Errorf("after the queue: degraded %v, rows %v", d, cellStrings(rows))
	}
}

// TestFetchCancelled has the caller go away while a slow but healthy node
// answers: the store's part counts as cancelled, not as a timeout, and the
// node's breaker hears nothing against it.
func TestFetchCancelled(t *testing.T) {
	c := testCatalogParse(t)
	srv := redistest.Start(t)
	main, r := openMain(t, c, Config{
		Addr: delayProxy(t, srv.Addr, 150*time.Millisecond), Breaker: BreakerConfig{Failures: 1},
	})
	fetchAll(t, r, c, []string{"1"}, []string{"store_rating"}, 5*time.Second) // connect first
	lookups := []features.Lookup{features.NewLookup("main", "st_1", []*features.Spec{c.Spec("store_rating")})}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	if degraded := r.Fetch(ctx, lookups); len(degraded) != 1 || degraded[0] != "main" {
		t.Errorf("cancelled Fetch: degraded %v, want [main]: its values are missing", degraded)
	}
	if d := time.Since(start); d > 30*time.Millisecond+slack {
		t.Errorf("Fetch cancelled after 30ms took %v", d)
	}
	time.Sleep(300 * time.Millisecond) // the read lands
	count := func(result string) uint64 { return sampleCount(t, r.metrics[0].duration[result]) }
	if got := count(resultCancelled); got != 1 {
		t.Errorf("fetch_duration_seconds{result=cancelled} counted %d, want 1", got)
	}
	if got := count(resultTimeout); got != 0 {
		t.Errorf("fetch_duration_seconds{result=timeout} counted %d, want 0", got)
	}
	if main.nodes[0].brk.state.Load() != breakerClosed || main.nodes[0].brk.fails.Load() != 0 {
		t.Error("a cancelled read counted against the node")
	}
}

// sampleCount returns how many observations a histogram holds.
func sampleCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// pausedEnv names the environment variable that makes the test binary run
// pausedChild instead of the tests.
const pausedEnv = "SEER_TEST_PAUSED_CHILD"

// pausedChild is the process TestSeerPaused stops: eight goroutines fetch
// the shard data set from the standalone store at addr with a 100ms budget,
// and write a line per Fetch to stdout, "fetch <start unix ns> <1 when
// degraded>", until stdin closes; then a line "opened <breaker openings>".
func pausedChild(addr string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "paused child:", err)
		return 1
	}
	st, err := Open(context.Background(), "main", Config{Addr: addr})
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	cat, err := features.ParseCatalog([]byte(shardCatalog), nil)
	if err != nil {
		return fail(err)
	}
	p, err := cat.DisplayPlan(shardNames[:7]) // the main store's features
	if err != nil {
		return fail(err)
	}
	r := New([]*Store{st}, Options{})
	var (
		out  = bufio.NewWriter(os.Stdout)
		mu   sync.Mutex
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // EOF when the parent closes it
		close(done)
	}()
	for range 16 {
		wg.Go(func() {
			q := &features.Query{Context: map[string]string{"consumer": "1"}}
			for _, id := range allStores() {
				q.Candidates = append(q.Candidates, features.Candidate{Entities: map[string]string{"store": strconv.Itoa(id)}})
			}
			var b features.Batch
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := p.Prepare(q, &b); err != nil {
					panic(err)
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				degraded := len(r.Fetch(ctx, b.Lookups)) > 0
				cancel()
				mu.Lock()
				fmt.Fprintf(out, "fetch %d %d\n", start.UnixNano(), map[bool]int{false: 0, true: 1}[degraded])
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(out, "opened %d\n", st.nodes[0].brk.opens.Load())
	out.Flush()
	return 0
}

// TestSeerPaused stops a process that fetches under load (this test
// binary, run as pausedChild) for 150ms with SIGSTOP, as a long GC pause, a
// throttled container or a debugger would: the reads it had out miss their
// deadline while Redis is healthy. Its breaker must not open, and Fetches
// that start a second after it continues must not degrade.
func TestSeerPaused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process and stops it")
	}
	e := newShardEnv(t, ModeStandalone, Config{})
	// The node is 20ms away, as over a network: when the process stops,
	// most of its reads are out, waiting for their replies.
	addr := delayProxy(t, e.nodes[0].Addr, 20*time.Millisecond)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pausedEnv+"="+addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	type fetch struct {
		start    time.Time
		degraded bool
	}
	var (
		mu      sync.Mutex
		fetches []fetch
		opened  = -1
		read    = make(chan struct{})
	)
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "fetch":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				mu.Lock()
				fetches = append(fetches, fetch{time.Unix(0, ns), f[2] == "1"})
				mu.Unlock()
			case len(f) == 2 && f[0] == "opened":
				opened, _ = strconv.Atoi(f[1])
			}
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(fetches)
	}
	for start := time.Now(); count() < 200; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the child made %d fetches in 20s; stderr:\n%s", count(), stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(150 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	time.Sleep(3 * time.Second)
	stdin.Close()
	<-read
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr:\n%s", err, stderr.String())
	}

	var before, during, after, afterDegraded, total int
	for _, f := range fetches {
		if !f.degraded {
			continue
		}
		total++
		switch {
		case f.start.Before(stopped):
			before++
		case f.start.Before(resumed.Add(time.Second)):
			during++
		}
	}
	for _, f := range fetches {
		if !f.start.Before(resumed.Add(time.Second)) {
			after++
			if f.degraded {
				afterDegraded++
			}
		}
	}
	var when []string
	for _, f := range fetches {
		if f.degraded && len(when) < 40 {
			when = append(when, f.start.Sub(resumed).Round(time.Millisecond).String())
		}
	}
	t.Logf("degraded Fetches started at (from the resume): %v", when)
	t.Logf("%d fetches, %d degraded: %d before the stop, %d from the stop to a second after it ended, %d of %d later",
		len(fetches), total, before, during, afterDegraded, after)
	if opened != 0 {
		t.Errorf("the breaker opened %d times: the node was blamed for the process's pause", opened)
	}
	if after < 50 {
		t.Fatalf("only %d fetches started from a second after the pause", after)
	}
	// A machine busy enough (this test beside a second run of the suite
	// under the race detector) makes a Fetch miss its 100ms budget now and
	// then, a few percent of them; a breaker opened by the pause degrades
	// every Fetch for its whole cooldown, longer than the test runs.
	if afterDegraded*5 > after {
		t.Errorf("%d of %d fetches degraded from a second after the pause", afterDegraded, after)
	}
}
