package retrieval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/internal/sample"
)

const cacheCatalog = `
entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: store_rating, entity: store, type: float, store: main, default: 4}
  - {name: store_orders, entity: store, type: int, store: main, max_age: 1h}
  - {name: store_cuisine, entity: store, type: string, store: main}
  - {name: store_embedding, entity: store, type: vector, store: main}
  - {name: store_live, entity: store, type: float, store: main, cache: {mode: live}}
  - {name: store_clicks, entity: store, type: float, store: main}
`

var cacheNames = []string{"store_rating", "store_orders", "store_cuisine", "store_embedding"}

// cacheFixture is a real redis-server with a store "main", its catalog,
// and a retriever with a cache over it.
type cacheFixture struct {
	srv   *redistest.Server
	store *Store
	cat   *features.Catalog
	cache *Cache
	r     *Retriever
	plain *Retriever // the same store without a cache
	log   *bytes.Buffer
	reg   *prometheus.Registry
}

func newCacheFixture(t *testing.T, cfg CacheConfig, addr ...string) *cacheFixture {
	t.Helper()
	f := &cacheFixture{srv: redistest.Start(t), log: new(bytes.Buffer), reg: prometheus.NewRegistry()}
	var err error
	if f.cat, err = features.ParseCatalog([]byte(cacheCatalog), []string{"main"}); err != nil {
		t.Fatal(err)
	}
	a := f.srv.Addr
	if len(addr) > 0 {
		a = addr[0]
	}
	// Long I/O timeouts: an upload through a slow proxy must not time
	// out; fetches stop at their own deadlines.
	if f.store, err = Open(context.Background(), "main", Config{Addr: a, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	f.plain = New([]*Store{f.store}, Options{})
	f.upload(t, "id,store_rating,store_orders,store_cuisine,store_embedding\n1,2.5,10,thai,\"[1,2]\"\n2,3.5,20,sushi,[]\n")
	f.cache, err = NewCache(context.Background(), f.cat, []*Store{f.store}, cfg, CacheOptions{
		Logger: slog.New(slog.NewJSONHandler(f.log, nil)), Registerer: f.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.cache.Close(); err != nil {
			t.Error(err)
		}
	})
	f.r = New([]*Store{f.store}, Options{Cache: f.cache})
	return f
}

func (f *cacheFixture) upload(t *testing.T, csv string) {
	t.Helper()
	if _, err := f.plain.UploadFile(context.Background(), f.cat, "store", writeFile(t, "s.csv", csv), UploadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// fetch reads the names of the given store ids and returns the rows as
// "source value" strings.
func (f *cacheFixture) fetch(t *testing.T, r *Retriever, ids []string, names ...string) []string {
	t.Helper()
	if len(names) == 0 {
		names = cacheNames
	}
	rows, degraded := fetchAll(t, r, f.cat, ids, names, 5*time.Second)
	if len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	return cellStrings(rows)
}

// hmgets returns how many HMGETs the server has run.
func (f *cacheFixture) hmgets(t *testing.T) int {
	t.Helper()
	info, err := f.srv.Client().Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(info, "cmdstat_hmget:calls=")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *cacheFixture) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.cache.shadowSync(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *cacheFixture) stats(name string) FeatureStats { return f.cache.Stats().Features[name] }

func cacheConfig(mode string) CacheConfig {
	cfg := DefaultCacheConfig()
	cfg.Mode = mode
	return cfg
}

func TestCacheLiveHitSkipsRedis(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheLive))
	want := []string{"redis 2.5", "redis 10", `redis "thai"`, "redis [1,2]", "redis 3.5", "redis 20", `redis "sushi"`, "redis []"}
	if diff := cmp.Diff(want, f.fetch(t, f.r, []string{"1", "2"})); diff != "" {
		t.Fatalf("first fetch (-want +got):\n%s", diff)
	}
	before := f.hmgets(t)
	for i := range want {
		want[i] = strings.Replace(want[i], "redis", "cache", 1)
	}
	if diff := cmp.Diff(want, f.fetch(t, f.r, []string{"1", "2"})); diff != "" {
		t.Fatalf("second fetch (-want +got):\n%s", diff)
	}
	if after := f.hmgets(t); after != before {
		t.Errorf("a hot fetch ran %d HMGETs, want none", after-before)
	}
	st := f.stats("store_rating")
	if st.Mode != CacheLive || st.Hits != 2 || st.Misses != 2 || !st.Batch || st.Source != sourceDefault {
		t.Errorf("store_rating stats %+v, want live, 2 hits, 2 misses, batch", st)
	}
	if got := testutil.ToFloat64(f.cache.m.lookups[0][mLive][rHit]); got != 2 {
		t.Errorf("seer_cache_lookups_total{result=hit} = %v, want 2", got)
	}
	// The cache adds an entry's weight in its maintenance, which may still
	// be running on another goroutine: the bytes may lag the entries.
	cs := f.cache.Stats()
	for start := time.Now(); cs.Entries > 0 && cs.Bytes == 0 && time.Since(start) < 5*time.Second; cs = f.cache.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	if cs.Entries == 0 || cs.Bytes == 0 {
		t.Errorf("cache reports %d entries, %d bytes", cs.Entries, cs.Bytes)
	}
}

// A lookup of features in several modes reads from Redis only what the
// cache does not serve.
func TestCacheMixedModes(t *testing.T) {
	cfg := cacheConfig(CacheLive)
	cfg.Features = map[string]FeatureFlags{"store_cuisine": {Mode: CacheShadow}, "store_embedding": {Mode: CacheOff}}
	f := newCacheFixture(t, cfg)
	f.fetch(t, f.r, []string{"1"})
	f.sync(t)
	got := f.fetch(t, f.r, []string{"1"})
	want := []string{"cache 2.5", "cache 10", `redis "thai"`, "redis [1,2]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	f.sync(t)
	if st := f.stats("store_cuisine"); st.Mode != CacheShadow || st.ShadowMisses != 1 || st.ShadowHits != 1 || st.ShadowMatch != 1 || st.Hits != 0 {
		t.Errorf("store_cuisine %+v", st)
	}
	if st := f.stats("store_embedding"); st.Mode != CacheOff || st.Source != sourceFlag || st.ShadowHits+st.Hits != 0 {
		t.Errorf("store_embedding %+v", st)
	}
}

func TestCacheNegative(t *testing.T) {
	cfg := cacheConfig(CacheLive)
	cfg.NegativeTTL = 300 * time.Millisecond
	f := newCacheFixture(t, cfg)
	want := []string{"default 4", "default null", "default null", "default null"}
	if diff := cmp.Diff(want, f.fetch(t, f.r, []string{"404"})); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	before := f.hmgets(t)
	if diff := cmp.Diff(want, f.fetch(t, f.r, []string{"404"})); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if n := f.hmgets(t) - before; n != 0 {
		t.Errorf("a missing entity cost %d HMGETs while cached, want 0", n)
	}
	time.Sleep(400 * time.Millisecond)
	f.fetch(t, f.r, []string{"404"})
	if n := f.hmgets(t) - before; n != 1 {
		t.Errorf("after the negative TTL: %d HMGETs, want 1", n)
	}
}

// TestCacheShadow checks that shadow mode answers exactly as no cache does,
// and counts a mismatch when a value changes in Redis behind the cache.
func TestCacheShadow(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheShadow))
	ids := []string{"1", "2", "404"}
	same := func(step string) {
		t.Helper()
		want := f.fetch(t, f.plain, ids)
		if diff := cmp.Diff(want, f.fetch(t, f.r, ids)); diff != "" {
			t.Errorf("%s: shadow mode changed the answer (-plain +shadow):\n%s", step, diff)
		}
		f.sync(t)
	}
	same("cold")
	same("warm")
	if st := f.stats("store_rating"); st.ShadowMisses != 3 || st.ShadowHits != 3 || st.ShadowMatch != 3 || st.ShadowMismatch != 0 {
		t.Fatalf("warm: %+v", st)
	}
	// A writer that does not bump the marker changes a value, in the
	// generation served.
	field := *f.store.gens.Load().field(f.cat.Spec("store_rating"))
	if err := f.srv.Client().HSet(context.Background(), "st_2", field, features.Encode(nil, features.FloatValue(1.25))).Err(); err != nil {
		t.Fatal(err)
	}
	same("changed")
	st := f.stats("store_rating")
	if st.ShadowMismatch != 1 || st.ShadowMatch != 5 {
		t.Fatalf("after a change: %+v", st)
	}
	wantSample := MismatchSample{Store: "main", Key: "st_2", Cached: features.FloatValue(3.5), Redis: features.FloatValue(1.25)}
	if diff := cmp.Diff([]MismatchSample{wantSample}, st.MismatchSamples, valueComparer, cmpIgnoreTime); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(f.cache.m.shadow[rMismatch]); got != 1 {
		t.Errorf("seer_cache_shadow_total{result=mismatch} = %v", got)
	}
	// The mismatch refilled the cache: the next comparison matches.
	same("refilled")
	if st := f.stats("store_rating"); st.ShadowMismatch != 1 || st.ShadowMatch != 8 {
		t.Errorf("after the refill: %+v", st)
	}
	if st := f.stats("store_rating"); st.Hits+st.Misses != 0 {
		t.Errorf("shadow mode counted live lookups: %+v", st)
	}
}

var cmpIgnoreTime = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Time" }, cmp.Ignore())

func TestCacheShadowQueueFull(t *testing.T) {
	cfg := cacheConfig(CacheShadow)
	cfg.ShadowQueue = 1
	f := newCacheFixture(t, cfg)
	// Hold the worker, and fill its queue.
	hold := make(chan struct{})
	f.cache.shadow <- &shadowTask{hold: hold}
	f.cache.shadow <- &shadowTask{hold: make(chan struct{})}
	start := time.Now()
	for range 20 {
		f.fetch(t, f.r, []string{"1"})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("fetches took %v with a full shadow queue", d)
	}
	close(hold)
	// The second holder is not released: the worker stops on Close.
	if st := f.cache.Stats(); st.ShadowDropped != 20 {
		t.Errorf("%d shadow lookups dropped with a full queue, want 20", st.ShadowDropped)
	}
	if got := testutil.ToFloat64(f.cache.m.dropped); got != 20 {
		t.Errorf("seer_cache_shadow_dropped_total = %v", got)
	}
}

// TestCacheMarkerEviction uploads new values through UploadFile: after the
// poll interval, the next request sees them.
func TestCacheMarkerEviction(t *testing.T) {
	cfg := cacheConfig(CacheLive)
	cfg.MarkerPoll = 50 * time.Millisecond
	f := newCacheFixture(t, cfg)
	f.fetch(t, f.r, []string{"1"})
	if got := f.fetch(t, f.r, []string{"1"}); got[0] != "cache 2.5" || got[2] != `cache "thai"` {
		t.Fatalf("warm: %v", got)
	}
	f.upload(t, "id,store_rating\n1,9.5\n")
	uploaded := time.Now()
	for f.stats("store_rating").MarkerEvictions == 0 && time.Since(uploaded) < 5*time.Second {
		time.Sleep(cfg.MarkerPoll / 5)
	}
	if d := time.Since(uploaded); d > 4*time.Second {
		t.Errorf("the upload was noticed after %v with a poll every %v", d, cfg.MarkerPoll)
	}
	got := f.fetch(t, f.r, []string{"1"})
	// The upload touched store_rating only, but the entry holds the
	// set of features read together: all of them are read again.
	want := []string{"redis 9.5", "redis 10", `redis "thai"`, "redis [1,2]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after the upload (-want +got):\n%s", diff)
	}
	st := f.stats("store_rating")
	if st.MarkerEvictions != 1 || st.UploadVersion != 2 || st.Generation < 2 {
		t.Errorf("store_rating %+v", st)
	}
	if st := f.stats("store_cuisine"); st.MarkerEvictions != 0 {
		t.Errorf("store_cuisine evicted: %+v", st)
	}
	if !strings.Contains(f.log.String(), "upload marker changed") {
		t.Errorf("eviction not logged:\n%s", f.log)
	}
	if got := f.fetch(t, f.r, []string{"1"}); got[0] != "cache 9.5" {
		t.Errorf("then: %v", got)
	}
}

// Features without upload markers are real-time: the default mode leaves
// them off, their own catalog setting turns them on with the short TTL.
func TestCacheRealtime(t *testing.T) {
	cfg := cacheConfig(CacheLive)
	cfg.RealtimeTTL = 200 * time.Millisecond
	f := newCacheFixture(t, cfg)
	field := f.cat.Spec("store_live").Field
	hset := func(v float64) {
		if err := f.srv.Client().HSet(context.Background(), "st_1", field, features.Encode(nil, features.FloatValue(v))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hset(1)
	f.fetch(t, f.r, []string{"1"}, "store_live")
	hset(2)
	if got := f.fetch(t, f.r, []string{"1"}, "store_live"); got[0] != "cache 1" {
		t.Fatalf("store_live (catalog mode live) not cached: %v", got)
	}
	time.Sleep(300 * time.Millisecond)
	if got := f.fetch(t, f.r, []string{"1"}, "store_live"); got[0] != "redis 2" {
		t.Fatalf("after the real-time TTL: %v", got)
	}
	st := f.stats("store_live")
	if st.Batch || st.Source != sourceCatalog || st.TTL != "200ms" {
		t.Errorf("store_live %+v", st)
	}
	// A real-time feature without a mode of its own stays off.
	clicks := f.cat.Spec("store_clicks").Field
	if err := f.srv.Client().HSet(context.Background(), "st_1", clicks, features.Encode(nil, features.FloatValue(3))).Err(); err != nil {
		t.Fatal(err)
	}
	before := f.hmgets(t)
	for range 2 {
		if got := f.fetch(t, f.r, []string{"1"}, "store_clicks"); got[0] != "redis 3" {
			t.Fatalf("store_clicks: %v", got)
		}
	}
	if n := f.hmgets(t) - before; n != 2 {
		t.Errorf("store_clicks: %d HMGETs for 2 fetches", n)
	}
	if st := f.stats("store_clicks"); st.Mode != CacheOff || st.Source != sourceRealtime {
		t.Errorf("store_clicks %+v", st)
	}
	// A flag turns it on.
	if _, err := f.cache.Update(FlagsUpdate{Features: map[string]*FeatureFlags{"store_clicks": {Mode: "live"}}}, "test"); err != nil {
		t.Fatal(err)
	}
	f.fetch(t, f.r, []string{"1"}, "store_clicks")
	if got := f.fetch(t, f.r, []string{"1"}, "store_clicks"); got[0] != "cache 3" {
		t.Fatalf("store_clicks flagged live: %v", got)
	}
}

// A feature's max age bounds how long its values stay cached.
func TestCacheMaxAge(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheLive))
	// store_orders has a max age of 1h: a value stamped 1h-2s ago may be
	// served for two more seconds at most (stamps are whole seconds).
	old := time.Now().Add(-time.Hour + 2*time.Second)
	if _, err := f.plain.UploadFile(context.Background(), f.cat, "store", writeFile(t, "o.csv", "id,store_orders\n3,7\n"), UploadOptions{Time: old}); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.PollMarkers(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.fetch(t, f.r, []string{"3"}, "store_orders")
	if got := f.fetch(t, f.r, []string{"3"}, "store_orders"); got[0] != "cache 7" {
		t.Fatalf("not cached: %v", got)
	}
	time.Sleep(3200 * time.Millisecond)
	if got := f.fetch(t, f.r, []string{"3"}, "store_orders"); got[0] != "default null" {
		t.Fatalf("a value past its max age was served: %v", got)
	}
}

func TestCacheLivePercent(t *testing.T) {
	cfg := cacheConfig(CacheLive)
	cfg.LivePercent = 10
	cfg.ShadowQueue = 4096
	f := newCacheFixture(t, cfg)
	const n = 2000
	for range n {
		f.fetch(t, f.r, []string{"1"})
	}
	f.sync(t)
	st := f.stats("store_rating")
	live := st.Hits + st.Misses + st.Coalesced
	shadow := st.ShadowHits + st.ShadowMisses
	// Binomial(2000, 0.1): mean 200, standard deviation 13.4.
	if live < 140 || live > 260 {
		t.Errorf("live_percent 10: %d of %d requests went through the cache", live, n)
	}
	if live+shadow+f.cache.Stats().ShadowDropped != n {
		t.Errorf("%d live and %d shadow lookups of %d", live, shadow, n)
	}
	if st.ShadowMismatch != 0 {
		t.Errorf("mismatches: %+v", st)
	}
	t.Logf("live_percent 10: %d of %d requests live", live, n)
}

// TestCacheInflight sends two Fetches of one key through a slow proxy:
// Redis reads it once, and a joined Fetch never waits past its context.
// The proxy's delay is long enough that the second Fetch, sent 30ms after
// the first, joins it even on a loaded machine (a stall of 470ms would be
// needed to miss it).
func TestCacheInflight(t *testing.T) {
	const delay = 500 * time.Millisecond
	srv := redistest.Start(t)
	proxy := delayProxy(t, srv.Addr, delay)
	f := newCacheFixture(t, cacheConfig(CacheLive), proxy)
	f.srv = srv // the fixture's store reads srv through the proxy
	before := f.hmgets(t)
	var wg sync.WaitGroup
	results := make([][]string, 2)
	degraded := make([][]string, 2)
	for i := range results {
		wg.Go(func() {
			var rows [][]features.Cell
			rows, degraded[i] = fetchAll(t, f.r, f.cat, []string{"1"}, cacheNames, 5*time.Second)
			results[i] = cellStrings(rows)
		})
		time.Sleep(30 * time.Millisecond)
	}
	wg.Wait()
	if len(degraded[0])+len(degraded[1]) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	if n := f.hmgets(t) - before; n != 1 {
		t.Errorf("two concurrent misses of one key ran %d HMGETs, want 1", n)
	}
	want := []string{"redis 2.5", "redis 10", `redis "thai"`, "redis [1,2]"}
	if diff := cmp.Diff(want, results[0]); diff != "" {
		t.Errorf("leader (-want +got):\n%s", diff)
	}
	for i := range want {
		want[i] = strings.Replace(want[i], "redis", "cache", 1)
	}
	if diff := cmp.Diff(want, results[1]); diff != "" {
		t.Errorf("follower (-want +got):\n%s", diff)
	}
	if st := f.stats("store_rating"); st.Coalesced != 1 || st.Misses != 1 {
		t.Errorf("store_rating %+v", st)
	}

	// A follower with a short deadline gives up on time.
	f.upload(t, "id,store_rating\n2,1\n")
	// Through the proxy a poll takes three of its delays of its two
	// seconds; a loaded machine can miss that, and the next poll has less
	// to read (the generations it switched stay switched).
	var err error
	for range 5 {
		if err = f.cache.PollMarkers(context.Background()); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetchAll(t, f.r, f.cat, []string{"2"}, cacheNames, 5*time.Second)
	}()
	time.Sleep(30 * time.Millisecond)
	// The leader's read lands 500ms after it started, 470ms from now: a
	// follower that waited for it would take that long.
	start := time.Now()
	_, late := fetchAll(t, f.r, f.cat, []string{"2"}, cacheNames, 20*time.Millisecond)
	if d := time.Since(start); d > delay*4/5 {
		t.Errorf("a joined read with a 20ms deadline took %v", d)
	}
	if !cmp.Equal(late, []string{"main"}) {
		t.Errorf("degraded %v, want [main]", late)
	}
	<-done
}

func ptr[T any](v T) *T { return &v }

// A flight whose Fetch never lands it is replaced after staleFlight.
func TestCacheStaleFlight(t *testing.T) {
	c := testCacheOnly(t, DefaultCacheConfig())
	k := ckey{key: "st_1", set: 7}
	lost, leader := c.join(k, 1)
	if !leader {
		t.Fatal("the first join does not lead")
	}
	if f, leader := c.join(k, 1); leader || f != lost {
		t.Fatal("a second join does not follow")
	}
	lost.start = lost.start.Add(-staleFlight)
	f, leader := c.join(k, 1)
	if !leader || f == lost {
		t.Fatal("a stale flight was joined")
	}
	c.land(k, 1, lost, entry{}, false) // late: must not remove the new flight
	if g, leader := c.join(k, 1); leader || g != f {
		t.Error("landing the stale flight removed the new one")
	}
	c.land(k, 1, f, entry{n: 1}, true)
	if _, leader := c.join(k, 1); !leader {
		t.Error("a landed flight is still joined")
	}
}

func TestCacheKillSwitch(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheLive))
	f.fetch(t, f.r, []string{"1"})
	if _, err := f.cache.Update(FlagsUpdate{Enabled: ptr(false)}, "test"); err != nil {
		t.Fatal(err)
	}
	before := f.hmgets(t)
	if got := f.fetch(t, f.r, []string{"1"}); got[0] != "redis 2.5" {
		t.Errorf("disabled cache answered %v", got)
	}
	if n := f.hmgets(t) - before; n != 1 {
		t.Errorf("%d HMGETs with the cache disabled, want 1", n)
	}
	if st := f.stats("store_rating"); st.Mode != CacheOff || st.Source != sourceKill {
		t.Errorf("%+v", st)
	}
	if !strings.Contains(f.log.String(), `"by":"test"`) || !strings.Contains(f.log.String(), "enabled=false") {
		t.Errorf("the change was not logged:\n%s", f.log)
	}
}

func TestCacheFlags(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheShadow))
	tests := []struct {
		name string
		u    FlagsUpdate
		err  string
		want map[string]string // feature -> mode
	}{
		{"default", FlagsUpdate{}, "", map[string]string{"store_rating": "shadow", "store_live": "live"}},
		{"feature over default", FlagsUpdate{Mode: ptr("live"), Features: map[string]*FeatureFlags{"store_rating": {Mode: "off"}}}, "",
			map[string]string{"store_rating": "off", "store_orders": "live"}},
		{"flag over catalog", FlagsUpdate{Features: map[string]*FeatureFlags{"store_live": {Mode: "shadow"}}}, "",
			map[string]string{"store_live": "shadow"}},
		{"null drops the override", FlagsUpdate{Features: map[string]*FeatureFlags{"store_live": nil, "store_rating": nil}}, "",
			map[string]string{"store_live": "live", "store_rating": "live"}},
		{"unknown feature", FlagsUpdate{Features: map[string]*FeatureFlags{"nope": {Mode: "live"}}}, "not in the catalog", nil},
		{"bad mode", FlagsUpdate{Mode: ptr("on")}, `mode "on"`, nil},
		{"bad percent", FlagsUpdate{LivePercent: ptr(101)}, "live_percent 101", nil},
		{"bad feature percent", FlagsUpdate{Features: map[string]*FeatureFlags{"store_rating": {LivePercent: ptr(-1)}}}, "live_percent -1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.cache.Flags()
			_, err := f.cache.Update(tt.u, "test")
			if tt.err != "" {
				if err == nil || !errors.Is(err, ErrFlags) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an ErrFlags naming %q", err, tt.err)
				}
				if diff := cmp.Diff(before, f.cache.Flags()); diff != "" {
					t.Errorf("a bad update changed the flags:\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := f.cache.Stats()
			for name, mode := range tt.want {
				if got := st.Features[name].Mode; got != mode {
					t.Errorf("%s: mode %s, want %s", name, got, mode)
				}
			}
		})
	}
}

func TestCacheReconfigure(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheOff))
	if _, err := f.cache.Update(FlagsUpdate{Mode: ptr("live")}, "admin"); err != nil {
		t.Fatal(err)
	}
	cfg := cacheConfig(CacheShadow)
	cfg.MaxBytes = 1 << 20
	cfg.Features = map[string]FeatureFlags{"store_rating": {Mode: "live", LivePercent: ptr(50)}}
	if err := f.cache.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	st := f.cache.Stats()
	if st.MaxBytes != 1<<20 || st.Features["store_orders"].Mode != "shadow" || st.Features["store_rating"].LivePercent != 50 {
		t.Errorf("after reconfigure: max %d, %+v", st.MaxBytes, st.Features)
	}
	bad := cfg
	bad.Features = map[string]FeatureFlags{"nope": {Mode: "live"}}
	if err := f.cache.Reconfigure(bad); err == nil {
		t.Error("a config naming an unknown feature was applied")
	}
	bad = cfg
	bad.LivePercent = 200
	if err := f.cache.Reconfigure(bad); !errors.Is(err, ErrCacheConfig) {
		t.Errorf("got %v, want ErrCacheConfig", err)
	}
	if got := f.cache.Flags(); got.Mode != "shadow" || *got.Features["store_rating"].LivePercent != 50 {
		t.Errorf("a bad config changed the flags: %v", got)
	}
}

func TestCacheConfigCheck(t *testing.T) {
	tests := []struct {
		name string
		edit func(*CacheConfig)
		want string
	}{
		{"default", func(*CacheConfig) {}, ""},
		{"mode", func(c *CacheConfig) { c.Mode = "always" }, "mode"},
		{"percent", func(c *CacheConfig) { c.LivePercent = -1 }, "live_percent"},
		{"max bytes", func(c *CacheConfig) { c.MaxBytes = 0 }, "max_bytes"},
		{"ttl", func(c *CacheConfig) { c.TTL = 0 }, "ttl"},
		{"poll", func(c *CacheConfig) { c.MarkerPoll = 0 }, "marker_poll"},
		{"queue", func(c *CacheConfig) { c.ShadowQueue = 0 }, "shadow_queue"},
		{"trace without path", func(c *CacheConfig) { c.Trace.Sample = 0.1 }, "trace"},
		{"trace sample", func(c *CacheConfig) { c.Trace = TraceConfig{Path: "t", Sample: 2} }, "trace"},
		{"feature mode", func(c *CacheConfig) { c.Features = map[string]FeatureFlags{"x": {Mode: "on"}} }, "features.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultCacheConfig()
			tt.edit(&cfg)
			err := cfg.Check()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrCacheConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an ErrCacheConfig naming %q", err, tt.want)
			}
		})
	}
}

func TestEntryRoundTrip(t *testing.T) {
	vals := []features.Value{
		features.FloatValue(-1.5), {}, features.IntValue(-7), features.BoolValue(true), features.BoolValue(false),
		features.StringValue("thaï"), features.VectorValue([]float32{1, 2}), features.ListValue([]string{"a", "b"}),
		features.FloatValue(0), features.IntValue(1 << 60),
	}
	e := newEntry(vals, nil, nil, time.Minute)
	for j, v := range vals {
		if got := e.value(j); !got.Equal(v) {
			t.Errorf("value %d: got %v, want %v", j, got, v)
		}
		if got := e.stamp(j); got != 0 {
			t.Errorf("value %d: stamp %d without stamps", j, got)
		}
	}
	stamps := make([]int64, len(vals))
	for j := range stamps {
		stamps[j] = 1700000000 + int64(j)*1000003
	}
	stamps[1] = 0
	pos := []int16{9, 0, 5, 1}
	e = newEntry(vals, stamps, pos, time.Minute)
	// A lookup whose specs have the types of the values at pos (a float
	// for the absent one).
	var specs []*features.Spec
	for _, p := range pos {
		typ := vals[p].Type()
		if typ == features.Invalid {
			typ = features.Float
		}
		specs = append(specs, &features.Spec{Type: typ})
	}
	l := features.NewLookup("main", "k", specs)
	e.fill(&l, []int16{0, 1, 2, 3})
	for j, p := range pos {
		if got := e.value(j); !got.Equal(vals[p]) {
			t.Errorf("position %d: got %v, want %v", p, got, vals[p])
		}
		if got := e.stamp(j); got != stamps[p] {
			t.Errorf("position %d: stamp %d, want %d", p, got, stamps[p])
		}
		g, want := l.Got[j], features.ReasonNone
		if !vals[p].Valid() {
			want = features.ReasonAbsent
		}
		switch {
		case !vals[p].Valid() && (g.Found() || g.Why != want || g.Stamp != 0):
			t.Errorf("filled %d: %+v, want absent", j, g)
		case vals[p].Valid() && (!l.Value(j).Equal(vals[p]) || g.Stamp != stamps[p] || g.Origin != features.FromCache || g.Why != want):
			t.Errorf("filled %d: %v %+v, want %v stamp %d from the cache", j, l.Value(j), g, vals[p], stamps[p])
		}
	}
	// One stamp for all: one word.
	same := []int64{5, 5, 5, 5, 5, 5, 5, 5, 5, 5}
	for _, pos := range [][]int16{nil, {1, 2}, {3, 4, 9}} {
		e = newEntry(vals, same, pos, time.Minute)
		n := len(pos)
		if pos == nil {
			n = len(vals)
		}
		for j := range n {
			if got := e.stamp(j); got != 5 {
				t.Errorf("one stamp for %d values: value %d has %d", n, j, got)
			}
		}
		if want := (n+7)/8 + n + 1; n >= 3 && len(e.words) != want {
			t.Errorf("one stamp for %d values: %d words, want %d", n, len(e.words), want)
		}
	}
	// All absent: no words, and every value absent.
	e = newEntry(make([]features.Value, 3), stamps, nil, time.Minute)
	e.fill(&l, []int16{0, 1, 2})
	for j := range 3 {
		if g := l.Got[j]; g.Found() || g.Why != features.ReasonAbsent || g.Stamp != 0 || l.Value(j).Valid() {
			t.Errorf("absent %d: %v %+v", j, l.Value(j), g)
		}
	}
}

// TestCacheByteBudget streams distinct keys into a small cache, each with
// the fifteen values of a typical entity, and measures the heap: the cache
// stays within its budget and the weigher's estimate is close to the real
// memory per entry.
func TestCacheByteBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	floats := func(i int) []features.Value {
		v := make([]features.Value, 15)
		for k := range v {
			v[k] = features.FloatValue(float64(i*k) / 7)
		}
		return v
	}
	oneUpload, uploads := make([]int64, 15), make([]int64, 15)
	for k := range uploads {
		oneUpload[k] = 1_700_000_000
		uploads[k] = 1_700_000_000 + int64(k)
	}
	for _, tt := range []struct {
		name   string
		values func(i int) []features.Value
		stamps []int64
	}{
		{"15 floats", floats, nil},
		// As uploads write them: the cache keeps their upload times.
		{"15 floats of one upload", floats, oneUpload},
		{"15 floats of 15 uploads", floats, uploads},
		{"absent", func(int) []features.Value { return make([]features.Value, 15) }, nil},
		{"4 strings and a vector", func(i int) []features.Value {
			v := make([]features.Value, 5)
			for k := range 4 {
				v[k] = features.StringValue(fmt.Sprintf("cuisine-%d-%d", i, k))
			}
			v[4] = features.VectorValue(make([]float32, 16))
			return v
		}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const budget = 8 << 20
			cfg := DefaultCacheConfig()
			cfg.MaxBytes = budget
			c := testCacheOnly(t, cfg)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			keys := 0
			var weight uint64
			n := 200_000
			if raceEnabled {
				n = 40_000 // enough to fill the budget; the heap is not measured
			}
			for i := range n {
				vals := tt.values(i)
				k := ckey{key: "st_" + strconv.Itoa(1_000_000+i), set: 42}
				e := newEntry(vals, tt.stamps, nil, time.Hour)
				if i == n/2 {
					weight = uint64(weigh(k, e))
				}
				c.set(k, e)
				keys++
			}
			c.values.CleanUp()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
			entries := c.values.EstimatedSize()
			if w := c.values.WeightedSize(); w > budget {
				t.Errorf("weighted size %d over the budget %d", w, budget)
			}
			if raceEnabled {
				return
			}
			if heap > budget {
				t.Errorf("%d keys: the cache holds %d bytes of heap, over its budget of %d", keys, heap, budget)
			}
			perEntry := float64(heap) / float64(entries)
			t.Logf("%s: %d entries in %d bytes of heap: %.0f bytes/entry (weigher: %d, weighted size %d)", tt.name, entries, heap, perEntry, weight, c.values.WeightedSize())
			if perEntry > float64(weight)*1.1 {
				t.Errorf("an entry takes %.0f bytes, the weigher says %d", perEntry, weight)
			}
			runtime.KeepAlive(c)
		})
	}
}

// testCacheOnly returns a cache over an embedded store, for tests of the
// cache alone.
func testCacheOnly(t testing.TB, cfg CacheConfig) *Cache {
	t.Helper()
	cat, err := features.ParseCatalog([]byte(cacheCatalog), []string{"main"})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := openStore(t, "main", ModeEmbedded)
	c, err := NewCache(context.Background(), cat, []*Store{st}, cfg, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCacheStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cat, _ := features.ParseCatalog([]byte(cacheCatalog), []string{"main"})
	st, _ := openStore(t, "main", ModeEmbedded)
	c, err := NewCache(ctx, cat, []*Store{st}, DefaultCacheConfig(), CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the poller and the worker outlived their context")
	}
	c.Close()
}

func TestTraceRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	cfg := DefaultCacheConfig()
	cfg.Trace = TraceConfig{Path: path, Sample: 1}
	c := testCacheOnly(t, cfg)
	r := New(c.stores, Options{Cache: c})
	fetchAll(t, r, c.catalog, []string{"1", "2"}, []string{"store_rating", "store_orders"}, time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []TraceRecord
	if err := ReadTrace(bytes.NewReader(data), "", func(r TraceRecord) error {
		r.Time = time.Time{}
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fields := []string{c.catalog.Spec("store_rating").Field, c.catalog.Spec("store_orders").Field}
	want := []TraceRecord{{Store: "main", Key: "st_1", Fields: fields}, {Store: "main", Key: "st_2", Fields: fields}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trace (-want +got):\n%s", diff)
	}

	// Sampling keeps a key's reads together.
	tr := &tracer{ch: make(chan TraceRecord, 100000)}
	tr.limit = sample.Limit(0.1)
	l := features.Lookup{Store: "main", Specs: []*features.Spec{c.catalog.Spec("store_rating")}}
	kept := map[string]int{}
	for i := range 10000 {
		l.Key = "st_" + strconv.Itoa(i%1000)
		tr.record(&l, time.Now())
	}
	close(tr.ch)
	for r := range tr.ch {
		kept[r.Key]++
	}
	for k, n := range kept {
		if n != 10 {
			t.Errorf("key %s: %d of its 10 reads sampled", k, n)
		}
	}
	if len(kept) < 60 || len(kept) > 140 {
		t.Errorf("sample 0.1 kept %d of 1000 keys", len(kept))
	}
}

// TestCacheValuesUnderDelays: 32 readers at once, each reading one or two
// of 40 stores through a live cache, whose misses of one key join one
// read and whose reads batch, the reads chosen to lead a batch held back
// past a stall of 1 ms: every value served, from Redis or the cache, is
// its own store's, and no read is degraded.
func TestCacheValuesUnderDelays(t *testing.T) {
	f := newCacheFixture(t, cacheConfig(CacheLive))
	var csv strings.Builder
	csv.WriteString("id,store_rating,store_orders\n")
	for k := 1; k <= 40; k++ {
		fmt.Fprintf(&csv, "%d,%d.25,%d\n", k, k, 100+k)
	}
	f.upload(t, csv.String())
	woken := holdChosenLeaders(&f.store.nodes[0].batch)
	reads := 60
	if raceEnabled {
		reads = 15
	}
	concurrently(t, 32, reads, func(w, i int) error {
		ids := []string{strconv.Itoa(1 + (w*7+i)%40)}
		if i%3 == 0 {
			ids = append(ids, strconv.Itoa(1+(w+i*5)%40))
		}
		rows, degraded := fetchAll(t, f.r, f.cat, ids, []string{"store_rating", "store_orders"}, 20*time.Second)
		for r, id := range ids {
			k, _ := strconv.Atoi(id)
			got := cellStrings(rows[r : r+1])
			want := []string{fmt.Sprintf("%d.25", k), strconv.Itoa(100 + k)}
			for c, cell := range got {
				source, value, _ := strings.Cut(cell, " ")
				if len(degraded) > 0 || len(got) != 2 || source != "redis" && source != "cache" || value != want[c] {
					return fmt.Errorf("store %s: %q, degraded %v; want %q from redis or the cache", id, got, degraded, want)
				}
			}
		}
		return nil
	})
	// Most reads hit the cache, so that few batches form (none, now and
	// then, under -race): TestBatchValuesUnderDelays is the batches' test.
	t.Logf("%d reads chosen to lead; cache hits of store_rating %d, joined %d", woken.Load(), f.stats("store_rating").Hits, f.stats("store_rating").Coalesced)
}
