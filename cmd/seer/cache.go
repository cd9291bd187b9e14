package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/retrieval"
)

// openCache starts the feature cache over the stores.
func openCache(ctx context.Context, cfg *Config, c *features.Catalog, stores []*retrieval.Store, log *slog.Logger, metrics prometheus.Registerer) (*retrieval.Cache, error) {
	cache, err := retrieval.NewCache(ctx, c, stores, cacheConfig(cfg), retrieval.CacheOptions{Logger: log, Registerer: metrics})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return cache, nil
}

// cacheConfig returns the config's cache section with its paths resolved.
func cacheConfig(cfg *Config) retrieval.CacheConfig {
	cc := cfg.Cache
	cc.Trace.Path = cfg.path(cc.Trace.Path)
	return cc
}

// reloadOnHangup reloads the cache section of the config file on every
// SIGHUP until ctx ends; the returned function stops it and waits.
func (svc *service) reloadOnHangup(ctx context.Context, path string) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = svc.reloadCache(path) // logged
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// reloadCache reads the config file again and applies its cache section:
// rollout flags, byte budget and TTLs. A file that does not load, or whose
// cache section is bad, is logged and changes nothing.
func (svc *service) reloadCache(path string) error {
	cfg, err := loadConfig(path)
	if err == nil {
		err = svc.cache.Reconfigure(cacheConfig(cfg))
	}
	if err != nil {
		svc.log.Error("reload config: kept the cache settings", "path", path, "err", err)
		return err
	}
	svc.log.Info("reloaded the cache settings", "path", path, "flags", svc.cache.Flags().String())
	return nil
}

// handleCacheStats reports the cache's flags, size and per-feature
// counters.
func (s *server) handleCacheStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.cache.Stats())
}

// handleCacheFlags changes the rollout flags: a JSON body of the fields to
// change (retrieval.FlagsUpdate). It answers with the cache's state.
func (s *server) handleCacheFlags(w http.ResponseWriter, r *http.Request) {
	var u retrieval.FlagsUpdate
	if err := decodeAdminBody(w, r, &u); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.svc.cache.Update(u, "admin "+r.RemoteAddr); err != nil {
		if errors.Is(err, retrieval.ErrFlags) {
			err = fmt.Errorf("%w: %v", errBadRequest, err)
		}
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.svc.cache.Stats())
}

// decodeAdminBody decodes a small admin JSON body strictly: unknown fields,
// trailing data and bodies over 1 MiB are errors.
func decodeAdminBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("%w: body is over the limit of %d bytes", errTooLarge, tooBig.Limit)
		}
		return fmt.Errorf("%w: body: %v", errBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: body: data after the JSON object", errBadRequest)
	}
	return nil
}
