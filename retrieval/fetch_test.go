package retrieval

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/floor"
	"github.com/seer-ml/seer/internal/redistest"
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
