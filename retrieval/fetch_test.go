package retrieval

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/floor"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/internal/testenv"
)

// fetchFixture is a query of 200 stores with 15 features each plus a
// consumer with 10, all stored in one real redis-server.
type fetchFixture struct {
	cat     *features.Catalog
	r       *Retriever
	plan    *features.Plan
	query   *features.Query
	batch   features.Batch
	lookups int
	values  int
	addr    string // the redis-server's
}

func newFetchFixture(tb testing.TB, stores int) *fetchFixture {
	tb.Helper()
	var y strings.Builder
	y.WriteString("entities:\n  store: {key: \"st_{id}\"}\n  consumer: {key: \"cx_{id}\"}\nfeatures:\n")
	var names []string
	for i := range 15 {
		typ := "float"
		if i%5 == 4 {
			typ = "int"
		}
		fmt.Fprintf(&y, "  - {name: store_f%d, entity: store, type: %s, store: main, max_age: 24h}\n", i, typ)
		names = append(names, fmt.Sprintf("store_f%d", i))
	}
	for i := range 10 {
		fmt.Fprintf(&y, "  - {name: consumer_f%d, entity: consumer, type: float, store: main}\n", i)
		names = append(names, fmt.Sprintf("consumer_f%d", i))
	}
	c, err := features.ParseCatalog([]byte(y.String()), nil)
	if err != nil {
		tb.Fatal(err)
	}
	srv := redistest.Start(tb)
	st, err := Open(context.Background(), "main", Config{Addr: srv.Addr})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })

	ctx := context.Background()
	now := time.Now().Unix()
	pipe := srv.Client().Pipeline()
	q := &features.Query{Context: map[string]string{"consumer": "42"}}
	for i := range stores {
		id := strconv.Itoa(100000 + i)
		q.Candidates = append(q.Candidates, features.Candidate{Entities: map[string]string{"store": id}})
		var args []any
		for _, s := range c.Specs[:15] {
			v := features.FloatValue(float64(i) / 7)
			if s.Type == features.Int {
				v = features.IntValue(int64(i * 31))
			}
			args = append(args, s.Field, features.EncodeStamped(nil, v, now))
		}
		pipe.HSet(ctx, "st_"+id, args...)
	}
	var args []any
	for _, s := range c.Specs[15:] {
		args = append(args, s.Field, features.Encode(nil, features.FloatValue(0.5)))
	}
	pipe.HSet(ctx, "cx_42", args...)
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}

	p, err := c.DisplayPlan(names)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fetchFixture{cat: c, r: New([]*Store{st}, Options{}), plan: p, query: q, addr: srv.Addr}
	if err := p.Prepare(q, &f.batch); err != nil {
		tb.Fatal(err)
	}
	for _, l := range f.batch.Lookups {
		f.lookups++
		f.values += len(l.Specs)
	}
	return f
}

func (f *fetchFixture) fetch(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if degraded := f.r.Fetch(ctx, f.batch.Lookups); len(degraded) > 0 {
		tb.Fatalf("degraded %v", degraded)
	}
}

func TestFetchFixture(t *testing.T) {
	f := newFetchFixture(t, 200)
	if f.lookups != 201 || f.values != 200*15+10 {
		t.Fatalf("%d lookups of %d values", f.lookups, f.values)
	}
	f.fetch(t)
	for _, l := range f.batch.Lookups {
		for j, g := range l.Got {
			if g.Origin != features.FromRedis {
				t.Fatalf("%s %s: %v from %v", l.Key, l.Specs[j].Name, l.Value(j), g.Origin)
			}
		}
	}
	// Allocations: a handful per store and none per lookup or value: the
	// jobs, their commands and the replies' buffers are kept from one
	// Fetch to the next (sync.Pool, which the race detector empties at
	// random).
	allocs := testing.AllocsPerRun(20, func() { f.fetch(t) })
	if max := 20.0; allocs > max && !raceEnabled {
		t.Errorf("Fetch of %d lookups, %d values: %v allocs, want at most %v", f.lookups, f.values, allocs, max)
	}
	t.Logf("Fetch of %d lookups, %d values: %v allocs", f.lookups, f.values, allocs)
}

func BenchmarkFetch(b *testing.B) {
	f := newFetchFixture(b, 200)
	f.fetch(b)
	b.ReportAllocs()
	for b.Loop() {
		f.fetch(b)
	}
	b.ReportMetric(float64(f.values), "values/op")
}

// BenchmarkFloor reads what BenchmarkFetch reads the way a plain go-redis
// client would (internal/floor): one pipeline of the same HMGETs, every
// value decoded. Fetch is meant to cost less.
func BenchmarkFloor(b *testing.B) {
	f := newFetchFixture(b, 200)
	client := redis.NewClient(&redis.Options{Addr: f.addr, Protocol: 2, DisableIdentity: true})
	defer client.Close()
	q := floor.FromLookups(f.batch.Lookups)
	read := func() {
		if n, err := q.Read(context.Background(), client); err != nil || n != f.values {
			b.Fatalf("floor read %d values of %d: %v", n, f.values, err)
		}
	}
	read()
	b.ReportAllocs()
	for b.Loop() {
		read()
	}
	b.ReportMetric(float64(f.values), "values/op")
}

// BenchmarkFetchGenerations reads the fixture's 201 keys with the values
// written three ways: at generation 0 (no generations: the read path of
// before they existed), after one upload (generation 1: reads find their
// fields through the generation table) and after two (generation 2, with
// generation 1 kept beside it for a rollback: each hash twice as long).
// seer-µs/op is the CPU this process spent per Fetch, redis-µs/op Redis's.
func BenchmarkFetchGenerations(b *testing.B) {
	for _, uploads := range []int{0, 1, 2} {
		b.Run(fmt.Sprintf("uploads=%d", uploads), func(b *testing.B) {
			f := newFetchFixture(b, 200)
			if uploads > 0 {
				f.reupload(b, uploads)
			}
			f.fetch(b)
			for _, l := range f.batch.Lookups {
				for j, g := range l.Got {
					if !g.Found() {
						b.Fatalf("%s %s missing", l.Key, l.Specs[j].Name)
					}
				}
			}
			cpu0, own0 := f.redisCPU(b), testenv.CPUTime()
			b.ReportAllocs()
			for b.Loop() {
				f.fetch(b)
			}
			b.ReportMetric(float64(testenv.CPUTime()-own0)/1e3/float64(b.N), "seer-µs/op")
			b.ReportMetric((f.redisCPU(b)-cpu0)*1e6/float64(b.N), "redis-µs/op")
		})
	}
}

// reupload replaces the fixture's values with the same ones uploaded n
// times through UploadFile, and forgets generation 0.
func (f *fetchFixture) reupload(tb testing.TB, n int) {
	tb.Helper()
	ctx := context.Background()
	var stores, consumers strings.Builder
	stores.WriteString("id")
	consumers.WriteString("id")
	for _, s := range f.cat.Specs {
		if s.Entity.Name == "store" {
			stores.WriteString("," + s.Name)
		} else {
			consumers.WriteString("," + s.Name)
		}
	}
	for i := range f.query.Candidates {
		fmt.Fprintf(&stores, "\n%d", 100000+i)
		for _, s := range f.cat.Specs[:15] {
			if s.Type == features.Int {
				fmt.Fprintf(&stores, ",%d", i*31)
			} else {
				fmt.Fprintf(&stores, ",%v", float64(i)/7)
			}
		}
	}
	consumers.WriteString("\n42" + strings.Repeat(",0.5", 10))
	for ent, data := range map[string]string{"store": stores.String(), "consumer": consumers.String()} {
		path := filepath.Join(tb.TempDir(), ent+".csv")
		if err := os.WriteFile(path, []byte(data+"\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
		for range n {
			if _, err := f.r.UploadFile(ctx, f.cat, ent, path, UploadOptions{}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	// Generation 0 goes, as the collector deletes it once it is garbage.
	st := f.r.stores[0]
	for _, l := range f.batch.Lookups {
		for _, s := range l.Specs {
			if err := st.client.HDel(ctx, l.Key, s.Field).Err(); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// redisCPU returns the seconds of CPU the fixture's Redis has used.
func (f *fetchFixture) redisCPU(tb testing.TB) float64 {
	tb.Helper()
	info, err := f.r.stores[0].client.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			x, _ := strconv.ParseFloat(v, 64)
			total += x
		}
	}
	return total
}

// degradedAgrees fails unless the stores Fetch named degraded are exactly
// those with values left at features.ReasonStoreDegraded.
func degradedAgrees(tb testing.TB, lookups []features.Lookup, degraded []string) {
	tb.Helper()
	left := make(map[string]int)
	for _, l := range lookups {
		for _, g := range l.Got {
			if g.Why == features.ReasonStoreDegraded {
				left[l.Store]++
			}
		}
	}
	for _, st := range degraded {
		if left[st] == 0 {
			tb.Fatalf("store %s named degraded, but none of its values took store_degraded", st)
		}
		delete(left, st)
	}
	for st, n := range left {
		tb.Fatalf("store %s not named degraded, but %d of its values took store_degraded", st, n)
	}
}

// TestFetchDeadlineAfterDecoding gives up on a job whose parts were all
// decoded before its goroutine says it finished: the store is not
// degraded, since every value was read.
func TestFetchDeadlineAfterDecoding(t *testing.T) {
	f := newFetchFixture(t, 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.r.partsDone = func(j *job) {
		cancel()
		// Hold the job unfinished until Fetch has given up on it.
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			j.mu.Lock()
			gave := j.abandoned
			j.mu.Unlock()
			if gave {
				return
			}
		}
		t.Error("Fetch did not give up on the job within 10 s of its context's end")
	}
	degraded := f.r.Fetch(ctx, f.batch.Lookups)
	if len(degraded) > 0 {
		t.Errorf("degraded %v after every value was decoded", degraded)
	}
	degradedAgrees(t, f.batch.Lookups, degraded)
	for _, l := range f.batch.Lookups {
		for j, g := range l.Got {
			if g.Origin != features.FromRedis {
				t.Fatalf("%s %s: %v from %v", l.Key, l.Specs[j].Name, l.Value(j), g.Origin)
			}
		}
	}
}

// TestFetchDegradedAgrees reads under deadlines from none to a few
// milliseconds, around the time a read takes, so that Fetch gives up on
// its job at every point of the job's run: on every answer, the stores
// named degraded are those with values that took store_degraded.
func TestFetchDegradedAgrees(t *testing.T) {
	f := newFetchFixture(t, 50)
	degradedN := 0
	for i := range 400 {
		if err := f.plan.Prepare(f.query, &f.batch); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%40)*50*time.Microsecond)
		degraded := f.r.Fetch(ctx, f.batch.Lookups)
		cancel()
		degradedAgrees(t, f.batch.Lookups, degraded)
		if len(degraded) > 0 {
			degradedN++
		}
	}
	t.Logf("%d of 400 reads degraded", degradedN)
}

// trickleProxy forwards TCP connections to target, passing what the
// server sends on in pieces of chunk bytes a millisecond apart, so that a
// reply arrives in many reads. The first time a connection has passed on
// more than cutAfter bytes (when not 0), it closes that connection, and
// adds one to cuts. It returns the proxy's address.
func trickleProxy(t *testing.T, target string, chunk, cutAfter int, cuts *atomic.Int64) string {
	t.Helper()
	forward := func(dst, src net.Conn) { _, _ = io.Copy(dst, src) }
	return proxy(t, func() string { return target }, forward, func(client, server net.Conn) {
		buf := make([]byte, 64<<10)
		passed := 0
		for {
			n, err := server.Read(buf)
			for b := buf[:n]; len(b) > 0; {
				k := min(chunk, len(b))
				if _, err := client.Write(b[:k]); err != nil {
					return
				}
				b, passed = b[k:], passed+k
				if cutAfter > 0 && passed > cutAfter && cuts.CompareAndSwap(0, 1) {
					return
				}
				time.Sleep(time.Millisecond)
			}
			if err != nil {
				return
			}
		}
	})
}

// TestWireArrived reads the replies of a whole query's HMGETs that come in
// pieces: the wire passes on each read's complete replies as they come.
func TestWireArrived(t *testing.T) {
	f := newFetchFixture(t, 200)
	var cuts atomic.Int64
	addr := trickleProxy(t, f.addr, 4<<10, 0, &cuts)
	var d net.Dialer
	w, err := newWire(time.Now().Add(10*time.Second), &redis.Options{Addr: addr}, d.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	n := 0
	for _, l := range f.batch.Lookups {
		w.out = appendHMGET(w.out, l.Key, len(l.Specs))
		for _, s := range l.Specs {
			w.out = appendBulk(w.out, s.Field)
		}
		n++
	}
	spans := make([]span, n)
	var seen []int
	err = w.roundTrip(time.Now().Add(10*time.Second), n, spans, func(in []byte, done int) {
		if done <= 0 || done >= n || len(seen) > 0 && done <= seen[len(seen)-1] {
			t.Errorf("arrived(%d) after %v, of %d replies", done, seen, n)
		}
		for _, sp := range spans[:done] {
			if int(sp.off+sp.n) > len(in) || in[sp.off] != '*' {
				t.Fatalf("arrived(%d): a reply at %v is not in the %d bytes read", done, sp, len(in))
			}
		}
		seen = append(seen, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 2 {
		t.Errorf("replies of %d bytes in pieces of 4 KiB: arrived called %d times", len(w.in), len(seen))
	}
}

// TestFetchRetryAfterEarlyDecoding breaks the connection in the middle of
// a query's replies, after some were decoded: the read is sent again, and
// each value is decoded once.
func TestFetchRetryAfterEarlyDecoding(t *testing.T) {
	f := newFetchFixture(t, 200)
	var cuts atomic.Int64
	addr := trickleProxy(t, f.addr, 4<<10, 32<<10, &cuts)
	st, err := Open(context.Background(), "main", Config{Addr: addr, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New([]*Store{st}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if degraded := r.Fetch(ctx, f.batch.Lookups); len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	if cuts.Load() != 1 {
		t.Fatal("the proxy did not cut the connection")
	}
	degradedAgrees(t, f.batch.Lookups, nil)
	for _, l := range f.batch.Lookups {
		for k, g := range l.Got {
			if g.Origin != features.FromRedis {
				t.Fatalf("%s %s: %v from %v", l.Key, l.Specs[k].Name, l.Value(k), g.Origin)
			}
		}
	}
	if got := testutil.ToFloat64(r.metrics[0].counter("found")); got != float64(f.values) {
		t.Errorf("%v values counted found, want %d", got, f.values)
	}
}

// TestUploadRetryAfterBrokenConnection breaks an upload's connection in
// the middle of its replies: the batch is sent again on a new connection
// and the upload succeeds, unless the store allows no retries.
func TestUploadRetryAfterBrokenConnection(t *testing.T) {
	c := testCatalogParse(t)
	srv := redistest.Start(t)
	var csv strings.Builder
	csv.WriteString("id,store_rating\n")
	const rows = 3000
	for i := range rows {
		fmt.Fprintf(&csv, "%d,%d.5\n", i, i)
	}
	path := writeFile(t, "ratings.csv", csv.String())
	for _, tt := range []struct {
		retries int
		ok      bool
	}{{0, true}, {-1, false}} {
		var cuts atomic.Int64
		addr := trickleProxy(t, srv.Addr, 64<<10, 2000, &cuts)
		main, err := Open(context.Background(), "main", Config{Addr: addr, MaxRetries: tt.retries})
		if err != nil {
			t.Fatal(err)
		}
		defer main.Close()
		search, _ := openStore(t, "search", ModeEmbedded)
		r := New([]*Store{main, search}, Options{})
		_, err = r.UploadFile(context.Background(), c, "store", path, UploadOptions{})
		if cuts.Load() != 1 {
			t.Fatalf("max_retries %d: the proxy did not cut the connection", tt.retries)
		}
		if !tt.ok {
			if err == nil {
				t.Error("max_retries -1: the upload succeeded through a broken connection")
			}
			continue
		}
		if err != nil {
			t.Fatalf("max_retries %d: %v", tt.retries, err)
		}
		ids := []string{"0", "1499", "2999"}
		cells, degraded := fetchAll(t, r, c, ids, []string{"store_rating"}, 5*time.Second)
		if len(degraded) > 0 {
			t.Fatalf("degraded %v", degraded)
		}
		for i, id := range ids {
			if got, want := cells[i][0].Value.String(), id+".5"; got != want {
				t.Errorf("store %s: %s, want %s", id, got, want)
			}
		}
	}
}
