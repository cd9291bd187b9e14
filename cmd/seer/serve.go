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
	"google.golang.org/grpc"

	"github.com/seer-ml/seer/serving"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stdout)
	configPath := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "address to listen on, overriding the config's listen")
	grpcListen := fs.String("grpc-listen", "", "address of the gRPC API, overriding the config's grpc_listen")
	adminListen := fs.String("admin-listen", "", "address of the admin routes, overriding the config's admin_listen")
	delay := fs.Duration("shutdown-delay", -1, "how long to go on serving after SIGTERM, overriding the config's shutdown_delay")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments, got %q", fs.Arg(0))
	}
	if *configPath == "" {
		return usagef("serve needs --config FILE")
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	for flag, dst := range map[*string]*string{listen: &cfg.Listen, grpcListen: &cfg.GRPCListen, adminListen: &cfg.AdminListen} {
		if *flag != "" {
			*dst = *flag
		}
	}
	if *delay >= 0 {
		cfg.ShutdownDelay = *delay
	}
	log := newLogger(stderr, cfg.LogLevel)
	if err := tuneRuntime(cfg, log); err != nil {
		return err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(metrics)

	srv, err := serving.Open(ctx, cfg.server(), serving.Options{Logger: log, Metrics: metrics, Stdout: stdout})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Seed(ctx); err != nil {
		return err
	}
	transports, err := openTransports(cfg, srv, log)
	if err != nil {
		return err
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go srv.Watch(watchCtx)
	defer reloadOnHangup(watchCtx, srv, *configPath, log)()

	errc := make(chan error, len(transports))
	var served sync.WaitGroup
	for _, t := range transports {
		served.Go(func() {
			if err := t.serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("serve %s: %w", t.name, err)
			}
		})
	}
	log.Info("serving", "addrs", addrs(transports), "models", len(srv.Registry().Snapshot().Models()), "stores", len(srv.Stores()))
	for _, t := range transports[1:] {
		fmt.Fprintf(stdout, "seer: %s listening on %s\n", t.name, t.url())
	}
	fmt.Fprintf(stdout, "seer: listening on %s\n", transports[0].url())

	var failed error
	select {
	case failed = <-errc:
	case <-ctx.Done():
		// Say not ready at once, serve on while load balancers notice.
		srv.Drain()
		log.Info("draining", "delay", cfg.ShutdownDelay.String(), "timeout", cfg.Shutdown.String())
		select {
		case failed = <-errc:
		case <-time.After(cfg.ShutdownDelay):
		}
	}
	srv.CloseStreams()
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown)
	defer cancel()
	var stopping sync.WaitGroup
	for _, t := range transports {
		stopping.Go(func() { t.stop(shutCtx) })
	}
	stopping.Wait()
	served.Wait()
	if failed != nil {
		return failed
	}
	if shutCtx.Err() != nil {
		return fmt.Errorf("shutdown: requests still in flight after shutdown_timeout (%v)", cfg.Shutdown)
	}
	log.Info("stopped")
	return nil
}

// transport is one listener and the server on it.
type transport struct {
	name  string // http, grpc or admin
	ln    net.Listener
	serve func(net.Listener) error
	stop  func(ctx context.Context) // closes the listener and drains until ctx ends
}

func (t *transport) url() string {
	if t.name == "grpc" {
		return t.ln.Addr().String()
	}
	return "http://" + t.ln.Addr().String()
}

func addrs(ts []transport) map[string]string {
	m := make(map[string]string, len(ts))
	for _, t := range ts {
		m[t.name] = t.ln.Addr().String()
	}
	return m
}

// openTransports listens on every configured address, the public HTTP
// listener first, so that a bad address stops seer before it serves.
func openTransports(cfg *Config, srv *serving.Server, log *slog.Logger) ([]transport, error) {
	var ts []transport
	add := func(name, addr string, serve func(net.Listener) error, stop func(context.Context)) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, t := range ts {
				t.ln.Close()
			}
			return fmt.Errorf("listen %s: %w", name, err)
		}
		ts = append(ts, transport{name: name, ln: ln, serve: serve, stop: stop})
		return nil
	}
	public := srv.Handler()
	if cfg.AdminListen != "" {
		public = srv.APIHandler()
	}
	h := httpServer(cfg, public, log)
	if err := add("http", cfg.Listen, h.Serve, shutdownHTTP(h)); err != nil {
		return nil, err
	}
	if cfg.GRPCListen != "" {
		gs := srv.GRPC()
		if err := add("grpc", cfg.GRPCListen, gs.Serve, shutdownGRPC(gs)); err != nil {
			return nil, err
		}
	}
	if cfg.AdminListen != "" {
		a := httpServer(cfg, srv.AdminHandler(), log)
		if err := add("admin", cfg.AdminListen, a.Serve, shutdownHTTP(a)); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// httpServer returns an HTTP server whose read timeouts stay within the
// drain budget, so that a slow client cannot hold a shutdown past it.
func httpServer(cfg *Config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(5*time.Second, cfg.Shutdown),
		ReadTimeout:       min(30*time.Second, cfg.Shutdown),
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func shutdownHTTP(h *http.Server) func(context.Context) {
	return func(ctx context.Context) {
		if h.Shutdown(ctx) != nil {
			h.Close()
		}
	}
}

func shutdownGRPC(gs *grpc.Server) func(context.Context) {
	return func(ctx context.Context) {
		done := make(chan struct{})
		go func() {
			gs.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			gs.Stop()
			<-done
		}
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// reloadOnHangup reloads the config file (see reload) on every SIGHUP
// until ctx ends; the returned function stops it and waits.
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
				_ = reload(srv, path, log) // logged
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// reload reads the config file again and applies what can change while
// seer serves: the cache section (rollout flags, byte budget, TTLs),
// feature_log.sample, shadows.sample and the guardrails (thresholds,
// min_rows, fail_readiness). A file that does not load, or whose cache
// section is bad, is logged and changes nothing; guardrails that name
// features the catalog lacks are logged and kept as they were. Other
// changes to feature_log (turning it on or off, its path, rotation or
// queue) and to shadows, and a new guardrails window, wait for a restart,
// and a warning says so.
func reload(srv *serving.Server, path string, log *slog.Logger) error {
	cfg, err := loadConfig(path)
	if err == nil {
		err = srv.Cache().Reconfigure(cfg.cache())
	}
	if err != nil {
		log.Error("reload config: kept the cache settings", "path", path, "err", err)
		return err
	}
	log.Info("reloaded the cache settings", "path", path, "flags", srv.Cache().Flags().String())
	want := cfg.server().FeatureLog
	fl := srv.FeatureLog()
	switch {
	case fl == nil && want.Path == "":
	case fl == nil || want.Path == "":
		log.Warn("reload config: turning the feature log on or off needs a restart", "path", path)
	default:
		running := fl.Config()
		running.Sample = want.Sample
		if running != want {
			log.Warn("reload config: feature_log changes other than sample need a restart", "path", path)
		}
		if err := fl.SetSample(want.Sample); err != nil { // Check passed: cannot fail
			return err
		}
		log.Info("reloaded the feature log's sample", "path", path, "sample", want.Sample)
	}
	shadows := cfg.server().Shadows
	running := srv.ShadowsConfig()
	running.Sample = shadows.Sample
	if running != shadows {
		log.Warn("reload config: shadows changes other than sample need a restart", "path", path)
	}
	if err := srv.SetShadowSample(shadows.Sample); err != nil { // Check passed: cannot fail
		return err
	}
	log.Info("reloaded the shadows' sample", "path", path, "sample", shadows.Sample)
	kept, err := srv.Guardrails().Reconfigure(cfg.server().Guardrails)
	if err != nil {
		log.Error("reload config: kept the guardrail settings", "path", path, "err", err)
		return err
	}
	if kept != 0 {
		log.Warn("reload config: a new guardrails window needs a restart", "path", path, "window", kept.String())
	}
	log.Info("reloaded the guardrail settings", "path", path)
	return nil
}
