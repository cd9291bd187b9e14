package retrieval

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
