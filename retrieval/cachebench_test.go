package retrieval

import (
	"context"
	"testing"

	"github.com/seer-ml/seer/features"
)

// withLiveCache gives the fixture a cache in live mode over its store,
// after marking every feature as uploaded, and warms it.
func (f *fetchFixture) withLiveCache(tb testing.TB) *Cache { return f.withCache(tb, CacheLive) }

// withCache gives the fixture a cache in the given mode.
func (f *fetchFixture) withCache(tb testing.TB, mode string) *Cache {
	tb.Helper()
	st := f.r.stores[0]
	ctx := context.Background()
	pipe := st.client.Pipeline()
	for _, s := range f.cat.Specs {
		pipe.HIncrBy(ctx, MarkerKey, s.Field, 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
	cfg := DefaultCacheConfig()
	cfg.Mode = mode
	c, err := NewCache(ctx, f.cat, f.r.stores, cfg, CacheOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	f.r = New(f.r.stores, Options{Cache: c})
	f.fetch(tb)
	return c
}

// TestFetchCacheHot checks the hot path of a 200-candidate query: every
// value from the cache, one cache read per entity, and no allocation per
// lookup.
func TestFetchCacheHot(t *testing.T) {
	f := newFetchFixture(t, 200)
	c := f.withLiveCache(t)
	want := make([][]features.Value, len(f.batch.Lookups))
	for i, l := range f.batch.Lookups {
		for j := range l.Specs {
			want[i] = append(want[i], l.Value(j))
		}
	}
	f.fetch(t)
	for i, l := range f.batch.Lookups {
		for j, g := range l.Got {
			if v := l.Value(j); g.Origin != features.FromCache || !v.Equal(want[i][j]) {
				t.Fatalf("%s %s: %v from %v, want %v from the cache", l.Key, l.Specs[j].Name, v, g.Origin, want[i][j])
			}
		}
	}
	if st := c.Stats().Features["store_f0"]; st.Hits != 200 || st.Misses != 200 {
		t.Errorf("store_f0: %d hits, %d misses; want 200 and 200", st.Hits, st.Misses)
	}
	// The fixture's context takes 3, Fetch's channel 1, and the cache's
	// maintenance now and then a goroutine: nothing per lookup.
	allocs := testing.AllocsPerRun(20, func() { f.fetch(t) })
	if allocs > 6 && !raceEnabled {
		t.Errorf("hot Fetch of %d lookups: %v allocs, want at most 6", f.lookups, allocs)
	}
	t.Logf("hot Fetch of %d lookups, %d values: %v allocs", f.lookups, f.values, allocs)
}

// BenchmarkFetchCache reads a 200-candidate ranking query (200 stores of 15
// features and a consumer of 10) from a real redis-server, with the cache
// in shadow mode (Redis answers; the comparisons run on the worker), and
// from a hot cache in live mode.
func BenchmarkFetchCache(b *testing.B) {
	b.Run("redis", func(b *testing.B) {
		f := newFetchFixture(b, 200)
		f.fetch(b)
		b.ReportAllocs()
		for b.Loop() {
			f.fetch(b)
		}
		b.ReportMetric(float64(f.values), "values/op")
	})
	b.Run("shadow", func(b *testing.B) {
		f := newFetchFixture(b, 200)
		f.withCache(b, CacheShadow)
		b.ReportAllocs()
		for b.Loop() {
			f.fetch(b)
		}
		b.ReportMetric(float64(f.values), "values/op")
	})
	b.Run("live-hot", func(b *testing.B) {
		f := newFetchFixture(b, 200)
		f.withLiveCache(b)
		b.ReportAllocs()
		for b.Loop() {
			f.fetch(b)
		}
		b.ReportMetric(float64(f.values), "values/op")
	})
}
