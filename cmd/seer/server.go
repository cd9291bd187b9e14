package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/retrieval"
)

// Errors the handlers map to HTTP status codes (see fail).
var (
	errBadRequest   = errors.New("bad request")
	errTooLarge     = errors.New("request too large")
	errUnauthorized = errors.New("unauthorized")
	errDisabled     = errors.New("disabled")
)

type server struct {
	cfg     *Config
	log     *slog.Logger
	svc     *service
	metrics *prometheus.Registry
	token   string

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rows     *prometheus.CounterVec
	degraded *prometheus.CounterVec
	batches  sync.Pool
}

func newServer(cfg *Config, log *slog.Logger, metrics *prometheus.Registry, svc *service) *server {
	s := &server{
		cfg: cfg, log: log, svc: svc, metrics: metrics, token: cfg.adminToken(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seer_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_predict_rows_total",
			Help: "Rows scored by model.",
		}, []string{"model"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_predict_degraded_total",
			Help: "Queries answered with defaults because a store failed or timed out, by store.",
		}, []string{"store"}),
	}
	s.batches.New = func() any { return new(features.Batch) }
	metrics.MustRegister(s.requests, s.duration, s.rows, s.degraded)
	return s
}

func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.instrument)
	r.Post("/v1/predict", s.handlePredict)
	r.Post("/v1/features", s.handleFeatures)
	r.Get("/v1/models", s.handleModels)
	r.Get("/healthz", s.handleHealth)
	r.Get("/readyz", s.handleReady)
	r.Get("/v1/admin/features", s.admin(s.handleFeatureStats))
	r.Get("/v1/admin/cache", s.admin(s.handleCacheStats))
	r.Put("/v1/admin/cache", s.admin(s.handleCacheFlags))
	r.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{Registry: s.metrics}))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no route " + r.Method + " " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " not allowed on " + r.URL.Path})
	})
	return r
}

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// instrument counts and times requests by route, and turns a handler panic
// into a logged 500 instead of a dropped connection.
func (s *server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
				writeJSON(sw, http.StatusInternalServerError, errorBody{Error: "internal error"})
			}
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = "other"
			}
			s.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
			s.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

type errorBody struct {
	Error string `json:"error"`
}

// fail answers with the status an error maps to; 5xx are logged here, once.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, features.ErrQuery):
		status = http.StatusBadRequest
	case errors.Is(err, registry.ErrUnknownModel), errors.Is(err, registry.ErrUnknownVersion):
		status = http.StatusNotFound
	case errors.Is(err, errUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, errDisabled):
		status = http.StatusForbidden
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, errorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// admin guards a handler with the admin bearer token. Without a token
// configured, admin endpoints are off.
func (s *server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.token == "" {
			s.fail(w, r, fmt.Errorf("%w: admin endpoints need admin_token in the config or SEER_ADMIN_TOKEN", errDisabled))
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			s.fail(w, r, fmt.Errorf("%w: want Authorization: Bearer <admin token>", errUnauthorized))
			return
		}
		h(w, r)
	}
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type storeStatus struct {
	Mode     string                 `json:"mode"`
	Status   string                 `json:"status"`
	Required bool                   `json:"required"`
	Nodes    []retrieval.NodeHealth `json:"nodes"`
}

type readyBody struct {
	Ready  bool                   `json:"ready"`
	Models int                    `json:"models"`
	Stores map[string]storeStatus `json:"stores"`
}

// handleReady reports each store's health (ok, degraded, down or
// breaker_open, and each node's) and answers 200 unless a store whose
// config says required is not ok. Other stores may be degraded or down:
// their features take defaults, and the pod still serves.
func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	body := readyBody{Ready: true, Models: len(s.svc.registry.Snapshot().Models()), Stores: make(map[string]storeStatus)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, st := range s.svc.stores {
		wg.Go(func() {
			h := st.Health(ctx)
			mu.Lock()
			defer mu.Unlock()
			if st.Required() && h.Status != retrieval.StatusOK {
				body.Ready = false
			}
			body.Stores[st.Name()] = storeStatus{Mode: st.Mode(), Status: h.Status, Required: st.Required(), Nodes: h.Nodes}
		})
	}
	wg.Wait()
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

type inputInfo struct {
	Name         string         `json:"name"`
	Source       string         `json:"source"`
	Type         string         `json:"type"`
	Entity       string         `json:"entity,omitempty"`
	Store        string         `json:"store,omitempty"`
	Default      features.Value `json:"default"`
	Categories   []string       `json:"categories,omitempty"`
	Transform    string         `json:"transform,omitempty"`
	DefaultsUsed uint64         `json:"defaults_used"`
}

type versionInfo struct {
	Version  string      `json:"version"`
	Format   string      `json:"format"`
	Output   string      `json:"output"`
	Outputs  int         `json:"outputs"`
	LoadedAt time.Time   `json:"loaded_at"`
	Inputs   []inputInfo `json:"inputs"`
}

type modelInfo struct {
	Name     string            `json:"name"`
	Default  string            `json:"default"`
	Aliases  map[string]string `json:"aliases,omitempty"`
	Versions []versionInfo     `json:"versions"`
}

type modelsBody struct {
	Models   []modelInfo        `json:"models"`
	Failures []registry.Failure `json:"failures"`
}

func (s *server) handleModels(w http.ResponseWriter, r *http.Request) {
	snap := s.svc.registry.Snapshot()
	body := modelsBody{Models: []modelInfo{}, Failures: snap.Failures()}
	if body.Failures == nil {
		body.Failures = []registry.Failure{}
	}
	for _, m := range snap.Models() {
		mi := modelInfo{Name: m.Name, Aliases: m.Aliases}
		if m.Default != nil {
			mi.Default = m.Default.Version
		}
		for _, v := range m.Versions {
			vi := versionInfo{
				Version: v.Version, Format: v.Manifest.Format, Output: v.Manifest.Output,
				Outputs: v.Model.NumOutputs(), LoadedAt: v.LoadedAt,
			}
			for k, in := range v.Plan.Inputs {
				decl := v.Manifest.Inputs[k]
				ii := inputInfo{
					Name: in.Name, Source: features.SourceRequest, Type: in.Type.String(), Default: in.Default,
					Categories: decl.Categories, Transform: decl.Transform, DefaultsUsed: in.DefaultsUsed(),
				}
				if in.Spec != nil {
					ii.Source, ii.Entity, ii.Store = features.SourceCatalog, in.Spec.Entity.Name, in.Spec.Store
				}
				vi.Inputs = append(vi.Inputs, ii)
			}
			mi.Versions = append(mi.Versions, vi)
		}
		body.Models = append(body.Models, mi)
	}
	writeJSON(w, http.StatusOK, body)
}

type featureStats struct {
	Entity    string `json:"entity"`
	Store     string `json:"store"`
	Type      string `json:"type"`
	Field     string `json:"field"`
	Defaults  uint64 `json:"defaults_used"`
	Corrupt   uint64 `json:"corrupt"`
	WrongType uint64 `json:"wrong_type"`
	Stale     uint64 `json:"stale"`
}

// handleFeatureStats reports, per catalog feature, how often its values
// were missing, corrupt, of the wrong type or stale.
func (s *server) handleFeatureStats(w http.ResponseWriter, r *http.Request) {
	out := make(map[string]featureStats, len(s.svc.catalog.Specs))
	for _, sp := range s.svc.catalog.Specs {
		st := sp.Stats()
		out[sp.Name] = featureStats{
			Entity: sp.Entity.Name, Store: sp.Store, Type: sp.Type.String(), Field: sp.Field,
			Defaults: st.Defaults.Load(), Corrupt: st.Corrupt.Load(), WrongType: st.WrongType.Load(), Stale: st.Stale.Load(),
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"features": out})
}

// resolve finds a model version for a query.
func (s *server) resolve(ref string) (*registry.Version, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: model: missing", errBadRequest)
	}
	return s.svc.registry.Snapshot().Resolve(ref)
}
