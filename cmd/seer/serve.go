package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/retrieval"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	configPath := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "address to listen on, overriding the config's listen")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" {
		return fmt.Errorf("%w: serve needs --config FILE", errUsage)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	log := newLogger(stderr, cfg.LogLevel)
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	svc, err := openService(ctx, cfg, log, metrics)
	if err != nil {
		return err
	}
	defer svc.close()
	if err := svc.seed(ctx); err != nil {
		return err
	}

	srv := newServer(cfg, log, metrics, svc)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           srv.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go svc.registry.Watch(watchCtx)
	defer svc.reloadOnHangup(watchCtx, *configPath)()

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	addr := ln.Addr().String()
	log.Info("serving", "addr", addr, "models", len(svc.registry.Snapshot().Models()), "stores", len(svc.stores))
	fmt.Fprintf(stdout, "seer: listening on http://%s\n", addr)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", cfg.Shutdown.String())
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// service is everything a running seer holds: the catalog, the stores and
// their retriever, and the model registry.
type service struct {
	cfg       *Config
	log       *slog.Logger
	catalog   *features.Catalog
	stores    []*retrieval.Store
	cache     *retrieval.Cache
	retriever *retrieval.Retriever
	registry  *registry.Registry
}

// openService loads the catalog, opens the stores and loads the models. Any
// failure is returned, so that a bad start stops the process.
func openService(ctx context.Context, cfg *Config, log *slog.Logger, metrics prometheus.Registerer) (*service, error) {
	svc := &service{cfg: cfg, log: log}
	var err error
	if svc.catalog, err = loadCatalog(cfg.path(cfg.Catalog), cfg.storeNames()); err != nil {
		return nil, err
	}
	for _, name := range cfg.storeNames() {
		st, err := retrieval.Open(ctx, name, cfg.Stores[name])
		if err != nil {
			svc.close()
			return nil, fmt.Errorf("store %s: %w", name, err)
		}
		svc.stores = append(svc.stores, st)
	}
	if svc.cache, err = openCache(ctx, cfg, svc.catalog, svc.stores, log, metrics); err != nil {
		svc.close()
		return nil, err
	}
	svc.retriever = retrieval.New(svc.stores, retrieval.Options{Registerer: metrics, Cache: svc.cache})
	svc.registry, err = registry.Open(svc.catalog, registry.Options{
		Root: cfg.path(cfg.Models), Poll: cfg.ModelsPoll, Logger: log, Metrics: metrics,
	})
	if err != nil {
		svc.close()
		return nil, err
	}
	return svc, nil
}

// seed uploads the config's seed files, as `seer upload` would.
func (svc *service) seed(ctx context.Context) error {
	for _, s := range svc.cfg.Seed {
		st, err := svc.retriever.UploadFile(ctx, svc.catalog, s.Entity, svc.cfg.path(s.File), retrieval.UploadOptions{})
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		svc.log.Info("seeded", "entity", s.Entity, "file", s.File, "rows", st.Rows, "values", st.Values)
	}
	if len(svc.cfg.Seed) > 0 {
		_ = svc.cache.PollMarkers(ctx) // learn the seeded features' markers now; errors are logged
	}
	return nil
}

func (svc *service) close() {
	if svc.cache != nil {
		if err := svc.cache.Close(); err != nil {
			svc.log.Warn("close cache", "err", err)
		}
	}
	for _, st := range svc.stores {
		if err := st.Close(); err != nil {
			svc.log.Warn("close store", "store", st.Name(), "err", err)
		}
	}
}

func loadCatalog(path string, stores []string) (*features.Catalog, error) {
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
