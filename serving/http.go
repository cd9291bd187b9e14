package serving

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seer-ml/seer/retrieval"
)

// initMetrics registers the metrics of the request path and of the HTTP
// transport.
func (s *Server) initMetrics() {
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seer_http_requests_total",
		Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "seer_http_request_duration_seconds",
		Help:    "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	s.rows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seer_predict_rows_total",
		Help: "Rows scored by model.",
	}, []string{"model"})
	s.degraded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "seer_predict_degraded_total",
		Help: "Queries (/v1/predict and /v1/features) degraded because a store failed or missed the retrieval deadline, by store: answered with defaults or failed (on_degraded: fail).",
	}, []string{"store"})
	s.cancelled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "seer_predict_cancelled_total",
		Help: "Queries whose caller went away before their features were read: not answered, and not counted as degraded.",
	})
	s.metrics.MustRegister(s.requests, s.duration, s.rows, s.degraded, s.cancelled)
	s.models = newModelMetrics(s.metrics)
	s.degradedBy = newDegradedMetrics(s.metrics)
}

// Handler returns the HTTP transport with every route on one listener:
// the JSON API of docs/api.md, health, readiness, and the admin routes
// (AdminHandler).
func (s *Server) Handler() http.Handler { return s.routes(true, true) }

// APIHandler returns the HTTP transport without the admin routes, for a
// public listener when the admin routes have their own.
func (s *Server) APIHandler() http.Handler { return s.routes(true, false) }

// AdminHandler returns the admin routes alone: /v1/admin/* and
// /debug/pprof/* behind the admin token, and /metrics.
func (s *Server) AdminHandler() http.Handler { return s.routes(false, true) }

func (s *Server) routes(api, admin bool) http.Handler {
	r := chi.NewRouter()
	r.Use(s.instrument)
	if api {
		r.Post("/v1/predict", s.handlePredict)
		r.Post("/v1/features", s.handleFeatures)
		r.Get("/v1/models", s.handleModels)
		r.Get("/healthz", s.handleHealth)
		r.Get("/readyz", s.handleReady)
		r.Get("/openapi.json", s.handleOpenAPI)
	}
	if admin {
		r.Get("/v1/admin/features", s.admin(s.handleFeatureStats))
		r.Get("/v1/admin/shadows", s.admin(s.handleShadows))
		r.Get("/v1/admin/cache", s.admin(s.handleCacheStats))
		r.Put("/v1/admin/cache", s.admin(s.handleCacheFlags))
		r.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{Registry: s.metrics}))
		r.Get("/debug/pprof/", s.admin(pprof.Index))
		r.Get("/debug/pprof/cmdline", s.admin(pprof.Cmdline))
		r.Get("/debug/pprof/profile", s.admin(pprof.Profile))
		r.Get("/debug/pprof/symbol", s.admin(pprof.Symbol))
		r.Post("/debug/pprof/symbol", s.admin(pprof.Symbol))
		r.Get("/debug/pprof/trace", s.admin(pprof.Trace))
		r.Get("/debug/pprof/{profile}", s.admin(pprof.Index))
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no route " + r.Method + " " + r.URL.Path, RequestID: requestID(r.Context())})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " not allowed on " + r.URL.Path, RequestID: requestID(r.Context())})
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

// instrument gives each request its id (X-Request-Id, taken from the
// request or made, and echoed), counts and times requests by route and by
// model, writes the access log, and turns a handler panic into a logged
// 500 instead of a dropped connection.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id, ok := requestIDFrom(r.Header.Get("X-Request-Id"))
		if !ok {
			id = s.ids.next()
		}
		w.Header().Set("X-Request-Id", id)
		c := &call{id: id}
		r = r.WithContext(withCall(r.Context(), c))
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
				writeJSON(sw, http.StatusInternalServerError, errorBody{Error: "internal error", RequestID: id})
			}
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = "other"
			}
			elapsed := time.Since(start)
			s.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
			s.duration.WithLabelValues(route).Observe(elapsed.Seconds())
			if strings.HasPrefix(route, "/v1/") {
				s.finish(r.Context(), c, "http", route, slog.Int("status", sw.code), statusClass(sw.code), elapsed)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
	// DegradedStores names the stores of a query that asked for
	// on_degraded fail (503).
	DegradedStores []string `json:"degraded_stores,omitempty"`
}

// fail answers with the status an error maps to; 5xx are logged here,
// once, except a query's on_degraded fail, which its degraded line
// (degraded.go) reports, rate-limited.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := httpStatus[classify(err)]
	body := errorBody{Error: err.Error(), RequestID: requestID(r.Context())}
	var de *DegradedError
	switch {
	case errors.As(err, &de):
		body.DegradedStores = de.Stores
		if c := callFrom(r.Context()); c != nil {
			c.failedDegraded = true
		}
	case status >= 500:
		s.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, body)
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
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" {
			s.fail(w, r, kindError(ErrDisabled, "admin endpoints need admin_token in the config or SEER_ADMIN_TOKEN"))
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AdminToken)) != 1 {
			s.fail(w, r, kindError(ErrUnauthorized, "want Authorization: Bearer <admin token>"))
			return
		}
		h(w, r)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers 200 unless a store whose config says required is not
// ok (see Ready).
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	body := s.Ready(r.Context())
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Models())
}

// handleFeatureStats reports, per catalog feature, how often its values
// were missing, corrupt, of the wrong type or stale.
func (s *Server) handleFeatureStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"features": s.FeatureStats()})
}

// handleShadows reports the statistics of every live/shadow pair.
func (s *Server) handleShadows(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"pairs": s.ShadowStats(), "sample": s.ShadowsConfig().Sample})
}

// candidates returns the number of candidates of the request's queries.
func (req *request) candidates() int {
	n := 0
	for i := range req.nq {
		n += req.queries[i].nc
	}
	return n
}

// readRequest reads and decodes a /v1/predict or /v1/features body and
// checks its shape against the limits. The caller releases the request.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, kind bodyKind) (*request, error) {
	req := newRequest()
	err := s.readBody(w, r, req)
	if err == nil {
		err = req.decode(kind, limits{queries: s.cfg.Predict.MaxQueries, candidates: s.cfg.Predict.MaxCandidates})
	}
	if err == nil {
		err = s.checkShape(req.nq, func(i int) int { return req.queries[i].nc })
	}
	if err != nil {
		req.release()
		return nil, err
	}
	return req, nil
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Predict.Timeout)
	defer cancel()
	req, err := s.readRequest(w, r, predictBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer req.release()
	jobs := make([]job, req.nq)
	results := make([]queryResult, req.nq)
	defer callFrom(r.Context()).note(results, req.candidates())
	for i := range req.nq {
		q := &req.queries[i]
		v, err := s.resolve(q.model)
		if err != nil {
			s.fail(w, r, fmt.Errorf("queries[%d].model: %w", i, err))
			return
		}
		results[i] = queryResult{id: q.id, model: v.Name, version: v.Version}
		fail, err := failOnDegradedText(req.onDegraded, q.onDegraded, i)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		fq, err := req.query(v.Plan, i)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jobs[i] = job{
			plan: v.Plan, model: v.Model, version: v, query: fq,
			debug: req.debug || q.debug, logged: s.learn.log.Sampled(), fail: fail,
		}
	}
	req.floats, req.cells = carve(jobs, needsCells(jobs), req.floats, req.cells)
	if err := s.score(ctx, jobs, results); err != nil {
		s.fail(w, r, err)
		return
	}
	s.offerShadows(jobs, results, req.query)
	req.out = appendResults(req.out[:0], results, true)
	writeBody(w, req.out)
}

func (s *Server) handleFeatures(w http.ResponseWriter, r *http.Request) {
	// Unlike a prediction, a feature read waits for nothing but the
	// retrieval, whose budget (retrieval_timeout, at most timeout) each
	// query's read sets itself: a context with the whole budget would be
	// a timer per request that never fires first.
	ctx := r.Context()
	req, err := s.readRequest(w, r, featuresBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer req.release()
	jobs := make([]job, req.nq)
	results := make([]queryResult, req.nq)
	defer callFrom(r.Context()).note(results, req.candidates())
	for i := range req.nq {
		q := &req.queries[i]
		plan, err := s.displayPlan(i, q.names[:q.nn])
		if err != nil {
			s.fail(w, r, err)
			return
		}
		fail, err := failOnDegradedText(req.onDegraded, q.onDegraded, i)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		fq, err := req.query(plan, i)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jobs[i] = job{plan: plan, query: fq, fail: fail}
		results[i].id = q.id
	}
	req.floats, req.cells = carve(jobs, func(int) bool { return true }, req.floats, req.cells)
	if err := s.lookup(ctx, jobs, results); err != nil {
		s.fail(w, r, err)
		return
	}
	req.out = appendResults(req.out[:0], results, false)
	writeBody(w, req.out)
}

// handleCacheStats reports the cache's flags, size and per-feature
// counters.
func (s *Server) handleCacheStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cache.Stats())
}

// handleCacheFlags changes the rollout flags: a JSON body of the fields to
// change (retrieval.FlagsUpdate). It answers with the cache's state.
func (s *Server) handleCacheFlags(w http.ResponseWriter, r *http.Request) {
	var u retrieval.FlagsUpdate
	if err := decodeAdminBody(w, r, &u); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.cache.Update(u, "admin "+r.RemoteAddr); err != nil {
		if errors.Is(err, retrieval.ErrFlags) {
			// Say what is wrong once: "body: mode: ...", not every layer's
			// name for it.
			msg := err.Error()
			if _, after, ok := strings.Cut(msg, retrieval.ErrFlags.Error()+": "); ok {
				msg = after
			}
			err = badRequest("body: %s", msg)
		}
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.cache.Stats())
}

// decodeAdminBody decodes a small admin JSON body strictly: unknown fields,
// trailing data and bodies over 1 MiB are errors.
func decodeAdminBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return kindError(ErrTooLarge, "body is over the limit of %d bytes", tooBig.Limit)
		}
		return badRequest("body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body: data after the JSON object")
	}
	return nil
}
