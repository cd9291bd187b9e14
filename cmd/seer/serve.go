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
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/seer-ml/seer/serving"
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

	srv, err := serving.Open(ctx, cfg.server(), serving.Options{Logger: log, Metrics: metrics, Stdout: stdout})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Seed(ctx); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go srv.Watch(watchCtx)
	defer reloadOnHangup(watchCtx, srv, *configPath, log)()

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	addr := ln.Addr().String()
	log.Info("serving", "addr", addr, "models", len(srv.Registry().Snapshot().Models()), "stores", len(srv.Stores()))
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

// reloadOnHangup reloads the cache section of the config file on every
// SIGHUP until ctx ends; the returned function stops it and waits.
func reloadOnHangup(ctx context.Context, srv *serving.Server, path string, log *slog.Logger) (stop func()) {
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
				_ = reloadCache(srv, path, log) // logged
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
func reloadCache(srv *serving.Server, path string, log *slog.Logger) error {
	cfg, err := loadConfig(path)
	if err == nil {
		err = srv.Cache().Reconfigure(cfg.cache())
	}
	if err != nil {
		log.Error("reload config: kept the cache settings", "path", path, "err", err)
		return err
	}
	log.Info("reloaded the cache settings", "path", path, "flags", srv.Cache().Flags().String())
	return nil
}
