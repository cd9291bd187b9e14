// Package serving is seer's request path as a Go API. A Server, opened from
// a Config, resolves each query's model in the registry, reads the features
// its plan needs through the retrieval layer (cache, then stores), assembles
// the rows, scores them and answers: Predict and Features take typed
// requests and return typed results and errors, without HTTP. Handler is
// the HTTP transport over the same path, with its own fast request decoder,
// and GRPC the gRPC transport (seer.v1.Seer, health, reflection); both
// map errors to status codes in one place (errors.go).
//
// Off the request path it learns from the traffic (learning.go): it logs
// a sample of the scored queries (featurelog), scores shadow models and
// compares them with the live ones (shadow), and watches default rates
// (guardrail).
//
// serving imports features, models, registry, retrieval, featurelog,
// shadow, guardrail and the generated api/seer/v1; none of them imports
// serving, and only cmd/seer (the wiring) does.
package serving

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/featurelog"
	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/guardrail"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/shadow"
)

// Config is what a Server is built from: the catalog, the models root, the
// stores, the cache and the request limits. Paths are used as given; the
// YAML keys are those of seer's configuration file, which embeds Config.
type Config struct {
	Catalog    string                      `yaml:"catalog"`
	Models     string                      `yaml:"models"`
	ModelsPoll time.Duration               `yaml:"models_poll"`
	Stores     map[string]retrieval.Config `yaml:"stores"`
	Seed       []Seed                      `yaml:"seed"`
	Predict    Limits                      `yaml:"predict"`
	Cache      retrieval.CacheConfig       `yaml:"cache"`
	// AdminToken is the bearer token of the admin endpoints; without one
	// they are off.
	AdminToken string `yaml:"admin_token"`
	// FeatureLog logs a sample of the scored queries for training.
	FeatureLog featurelog.Config `yaml:"feature_log"`
	// Shadows bounds the scoring of shadow models (shadows.yaml).
	Shadows shadow.Config `yaml:"shadows"`
	// Guardrails watch the share of rows in which each feature defaulted.
	Guardrails guardrail.Config `yaml:"guardrails"`
	// AccessLog says which requests are logged.
	AccessLog AccessLogConfig `yaml:"access_log"`
}

// Seed is a feature file uploaded into the stores at start, through the same
// code as `seer upload`.
type Seed struct {
	Entity string `yaml:"entity"`
	File   string `yaml:"file"`
}

// Limits bound the prediction endpoints.
type Limits struct {
	// Timeout is the whole budget of a request, from decoding to answer.
	Timeout time.Duration `yaml:"timeout"`
	// RetrievalTimeout is the budget of feature reads; values that have not
	// arrived by then take their defaults and the result is degraded.
	RetrievalTimeout time.Duration `yaml:"retrieval_timeout"`
	MaxBodyBytes     int64         `yaml:"max_body_bytes"`
	MaxQueries       int           `yaml:"max_queries"`
	MaxCandidates    int           `yaml:"max_candidates"`
}

// DefaultConfig returns the configuration every file starts from.
func DefaultConfig() Config {
	return Config{
		ModelsPoll: 10 * time.Second,
		Cache:      retrieval.DefaultCacheConfig(),
		FeatureLog: featurelog.DefaultConfig(),
		Shadows:    shadow.DefaultConfig(),
		Guardrails: guardrail.DefaultConfig(),
		AccessLog:  AccessLogConfig{Sample: 0.01},
		Predict: Limits{
			Timeout:          time.Second,
			RetrievalTimeout: 150 * time.Millisecond, // measured: docs/performance.md, The retrieval budget
			MaxBodyBytes:     4 << 20,
			MaxQueries:       64,
			MaxCandidates:    1000,
		},
	}
}

// Check returns every problem of the configuration, joined.
func (c *Config) Check() error {
	var errs []error
	if c.Catalog == "" {
		errs = append(errs, errors.New("catalog: missing"))
	}
	if c.Models == "" {
		errs = append(errs, errors.New("models: missing"))
	}
	if len(c.Stores) == 0 {
		errs = append(errs, errors.New("stores: at least one store is needed"))
	}
	if c.ModelsPoll < 0 {
		errs = append(errs, errors.New("models_poll: negative"))
	}
	p := c.Predict
	if p.Timeout <= 0 || p.RetrievalTimeout <= 0 || p.RetrievalTimeout > p.Timeout {
		errs = append(errs, errors.New("predict: timeouts must be positive, retrieval_timeout at most timeout"))
	}
	if p.MaxBodyBytes <= 0 || p.MaxQueries <= 0 || p.MaxCandidates <= 0 {
		errs = append(errs, errors.New("predict: max_body_bytes, max_queries and max_candidates must be positive"))
	}
	if err := c.Cache.Check(); err != nil {
		errs = append(errs, fmt.Errorf("cache: %w", err))
	}
	if err := c.FeatureLog.Check(); err != nil {
		errs = append(errs, fmt.Errorf("feature_log: %w", err))
	}
	if err := c.Shadows.Check(); err != nil {
		errs = append(errs, fmt.Errorf("shadows: %w", err))
	}
	if err := c.Guardrails.Check(); err != nil {
		errs = append(errs, fmt.Errorf("guardrails: %w", err))
	}
	if a := c.AccessLog.Sample; !(a >= 0 && a <= 1) {
		errs = append(errs, fmt.Errorf("access_log.sample: %v (want 0 to 1)", a))
	}
	for i, s := range c.Seed {
		if s.Entity == "" || s.File == "" {
			errs = append(errs, fmt.Errorf("seed %d: entity and file are required", i+1))
		}
	}
	return errors.Join(errs...)
}

// StoreNames returns the configured store names, sorted.
func (c *Config) StoreNames() []string {
	names := make([]string, 0, len(c.Stores))
	for n := range c.Stores {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Options are what a Server shares with the process around it.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Metrics receives the server's metrics and is what /metrics serves;
	// nil keeps them in a registry of the server's own.
	Metrics *prometheus.Registry
	// Stdout receives the feature log when its path is "-".
	Stdout io.Writer
}

// Server is everything a running seer holds: the catalog, the stores and
// their retriever, the feature cache and the model registry, and the
// request path over them.
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   *prometheus.Registry
	catalog   *features.Catalog
	stores    []*retrieval.Store
	cache     *retrieval.Cache
	retriever *retrieval.Retriever
	registry  *registry.Registry

	draining atomic.Bool   // Drain was called: not ready any more
	streams  chan struct{} // closed by CloseStreams
	closeSt  sync.Once

	ids       *requestIDs
	models    modelMetrics
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	rows      *prometheus.CounterVec
	degraded  *prometheus.CounterVec
	cancelled prometheus.Counter
	// degradedBy counts degraded queries per model; degradedLog logs
	// them, rate-limited (degraded.go).
	degradedBy  degradedMetrics
	degradedLog degradedLog
	cellBufs    sync.Pool // *[]features.Cell: to count degraded values
	// displayPlans are the plans of /v1/features queries.
	displayPlans planCache
	layouts      cellLayouts // how each plan's cells are written
	batches      sync.Pool

	learn learning // feature log, shadow models, guardrails

	hashEnc map[string]*retrieval.HashEncoding // by store, read at start
}

// Open loads the catalog, opens the stores and the cache and loads the
// models. Any failure is returned, so that a bad start stops the process.
// The caller closes the server.
func Open(ctx context.Context, cfg Config, opt Options) (*Server, error) {
	s := &Server{cfg: cfg, metrics: opt.Metrics, streams: make(chan struct{}), ids: newRequestIDs()}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	s.log = slog.New(idHandler{opt.Logger.Handler()})
	if s.metrics == nil {
		s.metrics = prometheus.NewRegistry()
	}
	var err error
	if s.catalog, err = LoadCatalog(cfg.Catalog, cfg.StoreNames()); err != nil {
		return nil, err
	}
	for _, name := range cfg.StoreNames() {
		st, err := retrieval.Open(ctx, name, cfg.Stores[name])
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("store %s: %w", name, err)
		}
		s.stores = append(s.stores, st)
	}
	s.cache, err = retrieval.NewCache(ctx, s.catalog, s.stores, cfg.Cache, retrieval.CacheOptions{Logger: s.log, Registerer: s.metrics})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	s.retriever = retrieval.New(s.stores, retrieval.Options{Registerer: s.metrics, Cache: s.cache})
	s.reportHashEncoding(ctx)
	s.registry, err = registry.Open(s.catalog, registry.Options{
		Root: cfg.Models, Poll: cfg.ModelsPoll, Logger: s.log, Metrics: s.metrics,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.initMetrics()
	s.batches.New = func() any { return new(features.Batch) }
	s.cellBufs.New = func() any { return new([]features.Cell) }
	s.degradedLog = degradedLog{now: time.Now, every: time.Second}
	if err := s.openLearning(opt.Stdout); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// reportHashEncoding reads each store's hash-max-listpack-entries once and
// logs the entity types whose hashes outgrow it (docs/performance.md,
// "Redis hash encoding"); /readyz shows the same.
func (s *Server) reportHashEncoding(ctx context.Context) {
	s.hashEnc = make(map[string]*retrieval.HashEncoding, len(s.stores))
	for _, st := range s.stores {
		if st.Mode() == retrieval.ModeEmbedded {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		he := st.HashEncoding(cctx, s.catalog)
		cancel()
		s.hashEnc[st.Name()] = &he
		switch {
		case he.Limit < 0:
			s.log.Info("hash encoding unknown", "store", st.Name(), "err", he.Error)
		case len(he.Wide) > 0:
			for _, w := range he.Wide {
				s.log.Warn("entity hashes outgrow hash-max-listpack-entries: Redis stores them as hash tables (about 2.4x the memory, cheaper reads)",
					"store", st.Name(), "entity", w.Entity, "features", w.Features, "fields_during_upload", w.Fields, "hash_max_listpack_entries", he.Limit)
			}
		default:
			s.log.Info("entity hashes fit hash-max-listpack-entries", "store", st.Name(), "hash_max_listpack_entries", he.Limit)
		}
	}
}

// Close stops the shadow workers and the guardrails, writes out the
// feature log, stops the cache and closes the stores.
func (s *Server) Close() {
	s.closeLearning()
	if s.cache != nil {
		if err := s.cache.Close(); err != nil {
			s.log.Warn("close cache", "err", err)
		}
	}
	for _, st := range s.stores {
		if err := st.Close(); err != nil {
			s.log.Warn("close store", "store", st.Name(), "err", err)
		}
	}
}

// Seed uploads the config's seed files, as `seer upload` would.
func (s *Server) Seed(ctx context.Context) error {
	for _, sd := range s.cfg.Seed {
		st, err := s.retriever.UploadFile(ctx, s.catalog, sd.Entity, sd.File, retrieval.UploadOptions{})
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		s.log.Info("seeded", "entity", sd.Entity, "file", sd.File, "rows", st.Rows, "values", st.Values)
	}
	if len(s.cfg.Seed) > 0 {
		_ = s.cache.PollMarkers(ctx) // learn the seeded features' markers now; errors are logged
	}
	return nil
}

// Drain makes the server say it is not ready, on /readyz and in gRPC
// health, while it goes on serving: the first step of a shutdown that a
// load balancer can follow.
func (s *Server) Drain() { s.draining.Store(true) }

// CloseStreams ends the long-lived streams the server holds open (gRPC
// health watches), so that the transports can drain once their listeners
// are closed.
func (s *Server) CloseStreams() { s.closeSt.Do(func() { close(s.streams) }) }

// Watch reloads the models every models_poll until ctx ends.
func (s *Server) Watch(ctx context.Context) { s.registry.Watch(ctx) }

// Registry returns the model registry.
func (s *Server) Registry() *registry.Registry { return s.registry }

// Cache returns the feature cache.
func (s *Server) Cache() *retrieval.Cache { return s.cache }

// FeatureLog returns the feature log, nil when it is off.
func (s *Server) FeatureLog() *featurelog.Logger { return s.learn.log }

// Guardrails returns the guardrails (off when no threshold is set).
func (s *Server) Guardrails() *guardrail.Guard { return s.learn.guard }

// Stores returns the stores, in the order of their names.
func (s *Server) Stores() []*retrieval.Store { return s.stores }

// LoadCatalog reads and parses a catalog file whose features may name the
// given stores.
func LoadCatalog(path string, stores []string) (*features.Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c, err := features.ParseCatalog(data, stores)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}
