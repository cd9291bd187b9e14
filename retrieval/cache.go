package retrieval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/features"
)

// CacheConfig configures the pod-local feature cache. It is read from YAML,
// strictly; docs/config.md documents every key and docs/cache.md how the
// cache works.
type CacheConfig struct {
	// Enabled is the kill switch: false turns all caching off.
	Enabled bool `yaml:"enabled"`
	// Mode is the mode of batch features that set none: off, shadow or live.
	Mode string `yaml:"mode"`
	// LivePercent is the share of requests that read live features from
	// the cache.
	LivePercent int `yaml:"live_percent"`
	// Features override single features' mode and live percentage.
	Features map[string]FeatureFlags `yaml:"features"`
	// MaxBytes bounds the memory the cached values take.
	MaxBytes int64 `yaml:"max_bytes"`
	// TTL is how long a batch feature's values stay cached; a feature's
	// own cache.ttl in the catalog overrides it.
	TTL time.Duration `yaml:"ttl"`
	// RealtimeTTL is the TTL of features without upload markers that a
	// flag or the catalog caches.
	RealtimeTTL time.Duration `yaml:"realtime_ttl"`
	// NegativeTTL is how long a lookup whose values were all absent stays
	// cached.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// MarkerPoll is how often the upload markers of every store are read.
	MarkerPoll time.Duration `yaml:"marker_poll"`
	// ShadowQueue is how many requests' shadow comparisons may wait for
	// the worker; more are dropped and counted.
	ShadowQueue int `yaml:"shadow_queue"`
	// Trace records a sample of feature reads for `seer simulate`.
	Trace TraceConfig `yaml:"trace"`
}

// DefaultCacheConfig returns the cache configuration a file starts from:
// enabled, every feature off.
func DefaultCacheConfig() CacheConfig {
	return CacheConfig{
		Enabled:     true,
		Mode:        CacheOff,
		LivePercent: 100,
		MaxBytes:    64 << 20,
		TTL:         time.Hour,
		RealtimeTTL: 5 * time.Second,
		NegativeTTL: time.Minute,
		MarkerPoll:  5 * time.Second,
		ShadowQueue: 1024,
	}
}

// ErrCacheConfig is wrapped by every error that rejects a cache
// configuration.
var ErrCacheConfig = errors.New("bad cache config")

// Check reports what is wrong with the configuration, with an error
// wrapping ErrCacheConfig. Feature names are checked against the catalog
// by NewCache and Reconfigure.
func (c CacheConfig) Check() error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrCacheConfig, fmt.Sprintf(format, args...)))
	}
	if _, err := parseMode(c.Mode); err != nil {
		fail("mode %q (want off, shadow or live)", c.Mode)
	}
	if checkPercent(c.LivePercent) != nil {
		fail("live_percent %d is not between 0 and 100", c.LivePercent)
	}
	for name, f := range c.Features {
		if _, err := parseMode(f.Mode); err != nil {
			fail("features.%s: mode %q (want off, shadow or live)", name, f.Mode)
		}
		if f.LivePercent != nil && checkPercent(*f.LivePercent) != nil {
			fail("features.%s: live_percent %d is not between 0 and 100", name, *f.LivePercent)
		}
	}
	if c.MaxBytes <= 0 || c.MaxBytes > math.MaxInt64/2 {
		fail("max_bytes must be positive")
	}
	if c.TTL <= 0 || c.RealtimeTTL < 0 || c.NegativeTTL < 0 {
		fail("ttl must be positive, realtime_ttl and negative_ttl not negative")
	}
	if c.MarkerPoll <= 0 {
		fail("marker_poll must be positive")
	}
	if c.ShadowQueue <= 0 {
		fail("shadow_queue must be positive")
	}
	if c.Trace.Sample < 0 || c.Trace.Sample > 1 || (c.Trace.Sample > 0) != (c.Trace.Path != "") {
		fail("trace needs both path and a sample between 0 and 1")
	}
	return errors.Join(errs...)
}

func (c CacheConfig) flags() Flags {
	return Flags{Enabled: c.Enabled, Mode: c.Mode, LivePercent: c.LivePercent, Features: c.Features}
}

// CacheOptions are the cache's collaborators.
type CacheOptions struct {
	// Logger receives flag changes, marker changes and poll errors; nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives the cache metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
}

// Cache is the pod-local cache of decoded feature values, shared by every
// Fetch of a Retriever (Options.Cache). One entry holds the values of one
// entity key for the set of features read from it in one mode, keyed by
// the store, the key, and the features with their generations; a new
// upload of a feature bumps its generation, so its old entries are never
// read again.
type Cache struct {
	catalog  *features.Catalog
	stores   []*Store
	storeIdx map[string]int
	feats    []*featState // by catalog index
	values   *otter.Cache[ckey, entry]
	flags    atomic.Pointer[flagSnap]
	log      *slog.Logger
	m        *cacheMetrics
	flights  [flightShards]flightShard
	shadow   chan *shadowTask
	trace    *tracer
	fetches  sync.Pool // *cacheFetch

	shadowTasks sync.Pool // *shadowTask

	mu  sync.Mutex // serializes changes of cfg and flags
	cfg CacheConfig

	markers markerState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the worker, the poller and the trace writer

	tasksMu sync.Mutex
	tasks   sync.WaitGroup // the cache's own maintenance goroutines
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// featState is what the cache knows and counts about one feature.
type featState struct {
	spec  *features.Spec
	store int // index in Cache.stores; -1 when the cache lacks the store

	gen     atomic.Uint64 // bumped when the upload marker changes
	version atomic.Int64  // the upload marker last read
	batch   atomic.Bool   // the store holds an upload marker for it

	hits, misses, coalesced     atomic.Uint64
	shadowHits, shadowMisses    atomic.Uint64
	shadowMatch, shadowMismatch atomic.Uint64
	evictions                   atomic.Uint64

	mu      sync.Mutex
	samples []MismatchSample // the latest, at most maxSamples
}

const maxSamples = 5

// MismatchSample is one value that shadow mode found cached and different
// from Redis.
type MismatchSample struct {
	Time   time.Time      `json:"time"`
	Store  string         `json:"store"`
	Key    string         `json:"key"`
	Cached features.Value `json:"cached"`
	Redis  features.Value `json:"redis"`
}

// NewCache returns a cache over the catalog's features in the given stores,
// which it does not own. It reads every store's upload markers once, under
// ctx, then keeps polling them, runs the shadow worker and, when
// configured, writes the trace, until ctx ends or Close is called.
func NewCache(ctx context.Context, c *features.Catalog, stores []*Store, cfg CacheConfig, opt CacheOptions) (*Cache, error) {
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("new cache: %w", err)
	}
	snap, err := compileFlags(c, cfg.flags(), cfg.TTL, cfg.RealtimeTTL, cfg.NegativeTTL)
	if err != nil {
		return nil, fmt.Errorf("new cache: %w", err)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cc := &Cache{
		catalog: c, stores: stores, storeIdx: make(map[string]int, len(stores)),
		log: log, cfg: cfg, shadow: make(chan *shadowTask, cfg.ShadowQueue),
	}
	for i, st := range stores {
		cc.storeIdx[st.name] = i
	}
	for _, s := range c.Specs {
		fs := &featState{spec: s, store: -1}
		if i, ok := cc.storeIdx[s.Store]; ok {
			fs.store = i
		}
		cc.feats = append(cc.feats, fs)
	}
	cc.flags.Store(snap)
	cc.values = otter.Must(&otter.Options[ckey, entry]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher:       weigh,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[ckey, entry]) time.Duration {
			return e.Value.ttl
		}),
		Executor: cc.execute,
		Logger:   otterLogger{log},
	})
	cc.m = newCacheMetrics(opt.Registerer, cc)
	cc.fetches.New = func() any { return new(cacheFetch) }
	cc.shadowTasks.New = func() any { return new(shadowTask) }
	if cfg.Trace.Path != "" {
		if cc.trace, err = openTracer(cfg.Trace); err != nil {
			cc.values.StopAllGoroutines()
			return nil, fmt.Errorf("new cache: %w", err)
		}
	}
	cc.ctx, cc.cancel = context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cc.cancel)
	cc.PollMarkers(ctx)
	cc.wg.Go(func() {
		defer stop()
		cc.pollLoop(cfg.MarkerPoll)
	})
	cc.wg.Go(cc.shadowLoop)
	if cc.trace != nil {
		cc.wg.Go(func() { cc.trace.loop(cc.ctx) })
	}
	log.Info("cache", "max_bytes", cfg.MaxBytes, "flags", snap.flags.String(), "batch_features", cc.batchCount())
	return cc, nil
}

// execute runs the otter cache's maintenance on goroutines that Close
// waits for; after Close it runs them on the caller.
func (c *Cache) execute(fn func()) {
	c.tasksMu.Lock()
	if c.closed {
		c.tasksMu.Unlock()
		fn()
		return
	}
	c.tasks.Add(1)
	c.tasksMu.Unlock()
	go func() {
		defer c.tasks.Done()
		fn()
	}()
}

// Close stops the marker poller, the shadow worker (dropping comparisons
// still queued) and the trace writer, and waits for them. The cache keeps
// answering Fetches. It is safe to call more than once.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.values.StopAllGoroutines()
		c.tasksMu.Lock()
		c.closed = true
		c.tasksMu.Unlock()
		c.tasks.Wait()
		if c.trace != nil {
			c.closeErr = c.trace.close()
		}
	})
	return c.closeErr
}

func (c *Cache) batchCount() int {
	n := 0
	for _, fs := range c.feats {
		if fs.batch.Load() {
			n++
		}
	}
	return n
}

// feat returns the state of a spec of the cache's catalog, or nil.
func (c *Cache) feat(s *features.Spec) *featState {
	if s.Index < len(c.feats) {
		if fs := c.feats[s.Index]; fs.spec == s {
			return fs
		}
	}
	return nil
}

// Flags returns the current rollout flags.
func (c *Cache) Flags() Flags {
	f := c.flags.Load().flags
	f.Features = cloneFeatureFlags(f.Features)
	return f
}

func cloneFeatureFlags(m map[string]FeatureFlags) map[string]FeatureFlags {
	out := make(map[string]FeatureFlags, len(m))
	for k, v := range m {
		if v.LivePercent != nil {
			p := *v.LivePercent
			v.LivePercent = &p
		}
		out[k] = v
	}
	return out
}

// Update changes the rollout flags at run time, as PUT /v1/admin/cache
// does; by names who asked, for the log. Errors wrap ErrFlags and change
// nothing.
func (c *Cache) Update(u FlagsUpdate, by string) (Flags, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.flags.Load()
	snap, err := compileFlags(c.catalog, u.apply(old.flags), old.ttl, old.realtime, old.negative)
	if err != nil {
		return old.flags, fmt.Errorf("update cache flags: %w", err)
	}
	c.swap(old, snap, by)
	return c.Flags(), nil
}

// swap installs new flags and logs the change. c.mu is held.
func (c *Cache) swap(old, snap *flagSnap, by string) {
	c.flags.Store(snap)
	if !equalFlags(old.flags, snap.flags) {
		c.log.Info("cache flags changed", "by", by, "from", old.flags.String(), "to", snap.flags.String())
	}
}

// Reconfigure applies a new cache configuration, as a reload of the config
// file does: the flags become the file's (dropping changes made through
// Update), and the byte budget and TTLs change. marker_poll, shadow_queue
// and trace keep their values until a restart; a change to them is
// logged. An invalid configuration changes nothing.
func (c *Cache) Reconfigure(cfg CacheConfig) error {
	if err := cfg.Check(); err != nil {
		return fmt.Errorf("reconfigure cache: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	snap, err := compileFlags(c.catalog, cfg.flags(), cfg.TTL, cfg.RealtimeTTL, cfg.NegativeTTL)
	if err != nil {
		return fmt.Errorf("reconfigure cache: %w", err)
	}
	old := c.cfg
	c.swap(c.flags.Load(), snap, "config")
	if cfg.MaxBytes != old.MaxBytes {
		c.values.SetMaximum(uint64(cfg.MaxBytes))
		c.log.Info("cache max_bytes changed", "from", old.MaxBytes, "to", cfg.MaxBytes)
	}
	if cfg.TTL != old.TTL || cfg.RealtimeTTL != old.RealtimeTTL || cfg.NegativeTTL != old.NegativeTTL {
		c.log.Info("cache ttls changed", "ttl", cfg.TTL.String(), "realtime_ttl", cfg.RealtimeTTL.String(), "negative_ttl", cfg.NegativeTTL.String())
	}
	if cfg.MarkerPoll != old.MarkerPoll || cfg.ShadowQueue != old.ShadowQueue || cfg.Trace != old.Trace {
		c.log.Warn("cache marker_poll, shadow_queue and trace change at the next restart")
		cfg.MarkerPoll, cfg.ShadowQueue, cfg.Trace = old.MarkerPoll, old.ShadowQueue, old.Trace
	}
	c.cfg = cfg
	return nil
}

// CacheStats is what GET /v1/admin/cache reports.
type CacheStats struct {
	Flags         Flags                   `json:"flags"`
	Entries       int                     `json:"entries"`
	Bytes         uint64                  `json:"bytes"`
	MaxBytes      uint64                  `json:"max_bytes"`
	ShadowQueued  int                     `json:"shadow_queued"`
	ShadowDropped uint64                  `json:"shadow_dropped"`
	MarkerPolls   uint64                  `json:"marker_polls"`
	MarkerErrors  uint64                  `json:"marker_errors"`
	LastPoll      time.Time               `json:"last_poll"`
	Features      map[string]FeatureStats `json:"features"`
}

// FeatureStats is one feature's cache state and counters. Hits, Misses and
// Coalesced count lookups in live mode (Coalesced: a miss that waited for
// a concurrent read of the same key); ShadowHits and ShadowMisses count
// the shadow worker's lookups, ShadowMatch and ShadowMismatch its
// comparisons of cached values with Redis's.
type FeatureStats struct {
	Mode            string           `json:"mode"`
	Source          string           `json:"source"`
	LivePercent     int              `json:"live_percent"`
	Store           string           `json:"store"`
	Batch           bool             `json:"batch"`
	UploadVersion   int64            `json:"upload_version"`
	Generation      uint64           `json:"generation"`
	TTL             string           `json:"ttl"`
	Hits            uint64           `json:"hits"`
	Misses          uint64           `json:"misses"`
	Coalesced       uint64           `json:"coalesced"`
	ShadowHits      uint64           `json:"shadow_hits"`
	ShadowMisses    uint64           `json:"shadow_misses"`
	ShadowMatch     uint64           `json:"shadow_match"`
	ShadowMismatch  uint64           `json:"shadow_mismatch"`
	MismatchSamples []MismatchSample `json:"mismatch_samples"`
	MarkerEvictions uint64           `json:"marker_evictions"`
}

// Stats reports the cache's flags, size and per-feature counters.
func (c *Cache) Stats() CacheStats {
	snap := c.flags.Load()
	st := CacheStats{
		Flags:   c.Flags(),
		Entries: c.values.EstimatedSize(), Bytes: c.values.WeightedSize(), MaxBytes: c.values.GetMaximum(),
		ShadowQueued: len(c.shadow), ShadowDropped: c.m.droppedN.Load(),
		MarkerPolls: c.markers.polls.Load(), MarkerErrors: c.markers.errors.Load(),
		Features: make(map[string]FeatureStats, len(c.feats)),
	}
	if t := c.markers.last.Load(); t != 0 {
		st.LastPoll = time.Unix(0, t).UTC()
	}
	for _, fs := range c.feats {
		batch := fs.batch.Load()
		mode, pct, source := snap.resolve(fs.spec.Index, batch)
		fs.mu.Lock()
		samples := slices.Clone(fs.samples)
		fs.mu.Unlock()
		if samples == nil {
			samples = []MismatchSample{}
		}
		st.Features[fs.spec.Name] = FeatureStats{
			Mode: modeNames[mode], Source: source, LivePercent: pct, Store: fs.spec.Store,
			Batch: batch, UploadVersion: fs.version.Load(), Generation: fs.gen.Load(),
			TTL:  snap.featureTTL(fs.spec, batch).String(),
			Hits: fs.hits.Load(), Misses: fs.misses.Load(), Coalesced: fs.coalesced.Load(),
			ShadowHits: fs.shadowHits.Load(), ShadowMisses: fs.shadowMisses.Load(),
			ShadowMatch: fs.shadowMatch.Load(), ShadowMismatch: fs.shadowMismatch.Load(),
			MismatchSamples: samples, MarkerEvictions: fs.evictions.Load(),
		}
	}
	return st
}

// ckey is a cache key: an entity key and a hash of the store, the features
// read from it in one mode and their generations.
type ckey struct {
	key string
	set uint64
}

// entry is the cached values of one key: n values, their type tags packed
// eight to a word, then one word per value holding a scalar's bits or the
// index of a string, vector or list in refs, then, when some value had an
// upload stamp, the stamps (unix seconds): one word when every value has
// the same (one upload wrote them all, the common case) and there are at
// least 3 values, else two to a word. A value of type Invalid was absent
// (or unusable) in Redis; when all of them were, words is nil.
type entry struct {
	words []uint64
	refs  []features.Value
	ttl   time.Duration
	n     int32
}

// newEntry packs the values at the given positions of vals, or all of
// them when pos is nil, with their stamps when stamps (aligned with vals)
// is not nil.
func newEntry(vals []features.Value, stamps []int64, pos []int16, ttl time.Duration) entry {
	n := len(pos)
	if pos == nil {
		n = len(vals)
	}
	idx := func(j int) int {
		if pos != nil {
			return int(pos[j])
		}
		return j
	}
	at := func(j int) *features.Value { return &vals[idx(j)] }
	e := entry{ttl: ttl, n: int32(n)}
	refs := 0
	stamped, uniform := false, true
	var first int64 = -1
	for j := range n {
		switch at(j).Type() {
		case features.Float, features.Int, features.Bool, features.Invalid:
		default:
			refs++
		}
		if at(j).Valid() && e.words == nil {
			e.words = []uint64{} // not all absent
		}
		if stamps != nil {
			st := stamps[idx(j)]
			stamped = stamped || st > 0
			if first < 0 {
				first = st
			}
			uniform = uniform && st == first
		}
	}
	if e.words == nil {
		return e // all absent: no words
	}
	tags := (n + 7) / 8
	size := tags + n
	uniform = uniform && n >= 3
	switch {
	case stamped && uniform:
		size++
	case stamped:
		size += (n + 1) / 2
	}
	e.words = make([]uint64, size)
	switch {
	case stamped && uniform:
		e.words[tags+n] = uint64(min(first, math.MaxUint32))
	case stamped:
		for j := range n {
			st := uint64(min(max(stamps[idx(j)], 0), math.MaxUint32))
			e.words[tags+n+j/2] |= st << (32 * (j % 2))
		}
	}
	if refs > 0 {
		e.refs = make([]features.Value, 0, refs)
	}
	for j := range n {
		v := at(j)
		t := v.Type()
		e.words[j/8] |= uint64(t) << (8 * (j % 8))
		var w uint64
		switch t {
		case features.Float:
			w = math.Float64bits(v.Float())
		case features.Int:
			w = uint64(v.Int())
		case features.Bool:
			if v.Bool() {
				w = 1
			}
		case features.Invalid:
		default:
			w = uint64(len(e.refs))
			e.refs = append(e.refs, *v)
		}
		e.words[tags+j] = w
	}
	return e
}

// value returns the entry's value j.
func (e *entry) value(j int) features.Value {
	if e.words == nil {
		return features.Value{}
	}
	w := e.words[int(e.n+7)/8+j]
	switch features.Type(e.words[j/8] >> (8 * (j % 8))) {
	case features.Float:
		return features.FloatValue(math.Float64frombits(w))
	case features.Int:
		return features.IntValue(int64(w))
	case features.Bool:
		return features.BoolValue(w != 0)
	case features.String, features.Vector, features.List:
		return e.refs[w]
	}
	return features.Value{}
}

// stamp returns the upload stamp of the entry's value j, 0 when unknown.
func (e *entry) stamp(j int) int64 {
	tags, n := int(e.n+7)/8, int(e.n)
	switch extra := len(e.words) - tags - n; {
	case extra <= 0:
		return 0
	case extra == 1 && n >= 3:
		return int64(uint32(e.words[tags+n])) // one stamp for all
	}
	return int64(uint32(e.words[tags+n+j/2] >> (32 * (j % 2))))
}

// fill writes the entry's values into l at the given positions, with
// their stamps: a cached absent value is absent.
func (e *entry) fill(l *features.Lookup, pos []int16) {
	if e.words == nil {
		for _, p := range pos {
			l.Miss(int(p), features.ReasonAbsent)
		}
		return
	}
	words := e.words[int(e.n+7)/8:]
	words = words[:len(pos)]
	for j, p := range pos {
		switch w, t := words[j], features.Type(e.words[j/8]>>(8*(j%8))); t {
		case features.Float, features.Int, features.Bool:
			l.SetScalar(int(p), w, e.stamp(j), features.FromCache)
		case features.String, features.Vector, features.List:
			l.Set(int(p), e.refs[w], e.stamp(j), features.FromCache)
		default:
			l.Miss(int(p), features.ReasonAbsent)
		}
	}
}

// entryOverhead is the memory one cache entry takes besides its key's and
// values' bytes: otter's node (header, key, value), its share of the hash
// table and of the eviction policy's buffers. TestCacheByteBudget measures
// it.
const entryOverhead = 200

// weigh estimates the bytes an entry holds, rounding allocations up to the
// runtime's size classes.
func weigh(k ckey, e entry) uint32 {
	n := entryOverhead + allocSize(len(k.key)) + allocSize(8*len(e.words))
	if len(e.refs) > 0 {
		n += allocSize(valueSize * cap(e.refs))
		for i := range e.refs {
			v := &e.refs[i]
			n += allocSize(v.Size())
			if v.Type() == features.List {
				n += allocSize(16 * len(v.List()))
			}
		}
	}
	return uint32(min(n, math.MaxUint32))
}

// valueSize is the size of a features.Value.
const valueSize = int(unsafe.Sizeof(features.Value{}))

// sizeClasses are the Go allocator's size classes up to 32 KiB.
var sizeClasses = [...]int{
	8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280,
	1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528,
	6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432,
	19072, 20480, 21760, 24576, 27264, 28672, 32768,
}

// allocSize rounds n up to the memory the allocator gives it.
func allocSize(n int) int {
	if n == 0 {
		return 0
	}
	if n > sizeClasses[len(sizeClasses)-1] {
		return (n + 8191) &^ 8191
	}
	i, _ := slices.BinarySearch(sizeClasses[:], n)
	return sizeClasses[i]
}

// set stores an entry, unless its lifetime is over. The key is copied: a
// lookup's key is part of a string holding every key of its query.
func (c *Cache) set(k ckey, e entry) {
	if e.ttl > 0 {
		k.key = strings.Clone(k.key)
		c.values.Set(k, e)
	}
}

// otterLogger passes otter's warnings and errors to slog.
type otterLogger struct{ log *slog.Logger }

func (l otterLogger) Warn(ctx context.Context, msg string, err error) {
	l.log.WarnContext(ctx, "cache: "+msg, "err", err)
}

func (l otterLogger) Error(ctx context.Context, msg string, err error) {
	l.log.ErrorContext(ctx, "cache: "+msg, "err", err)
}

// cacheMetrics are the cache's Prometheus metrics.
type cacheMetrics struct {
	lookups   [][2][3]prometheus.Counter // store, mode (live, shadow), result (hit, miss, coalesced)
	shadow    [2]prometheus.Counter      // match, mismatch
	dropped   prometheus.Counter
	droppedN  atomic.Uint64
	evictions []prometheus.Counter // store
}

const (
	mLive, mShadow          = 0, 1
	rHit, rMiss, rCoalesced = 0, 1, 2
	rMatch, rMismatch       = 0, 1
)

func newCacheMetrics(reg prometheus.Registerer, c *Cache) *cacheMetrics {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seer_cache_lookups_total",
		Help: "Cache lookups (one per entity key and mode) by store, mode (live, shadow) and result (hit, miss, coalesced).",
	}, []string{"store", "mode", "result"})
	shadow := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seer_cache_shadow_total",
		Help: "Shadow comparisons of a cached lookup with Redis, by result (match, mismatch).",
	}, []string{"result"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "seer_cache_shadow_dropped_total",
		Help: "Shadow lookups dropped because the shadow worker's queue was full.",
	})
	evictions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seer_cache_marker_evictions_total",
		Help: "Features whose cached values were dropped because their upload marker changed, by store.",
	}, []string{"store"})
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "seer_cache_entries", Help: "Entries in the feature cache (estimate).",
	}, func() float64 { return float64(c.values.EstimatedSize()) })
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "seer_cache_bytes", Help: "Estimated memory held by the feature cache's entries.",
	}, func() float64 { return float64(c.values.WeightedSize()) })
	maxBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "seer_cache_max_bytes", Help: "The feature cache's byte budget.",
	}, func() float64 { return float64(c.values.GetMaximum()) })
	if reg != nil {
		lookups = register(reg, lookups)
		shadow = register(reg, shadow)
		dropped = register(reg, dropped)
		evictions = register(reg, evictions)
		register(reg, entries)
		register(reg, bytes)
		register(reg, maxBytes)
	}
	m := &cacheMetrics{dropped: dropped}
	m.shadow = [2]prometheus.Counter{shadow.WithLabelValues("match"), shadow.WithLabelValues("mismatch")}
	for _, st := range c.stores {
		var per [2][3]prometheus.Counter
		for mi, mode := range []string{CacheLive, CacheShadow} {
			for ri, result := range []string{"hit", "miss", "coalesced"} {
				per[mi][ri] = lookups.WithLabelValues(st.name, mode, result)
			}
		}
		m.lookups = append(m.lookups, per)
		m.evictions = append(m.evictions, evictions.WithLabelValues(st.name))
	}
	return m
}
