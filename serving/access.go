package serving

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AccessLogConfig says which requests the access log records.
type AccessLogConfig struct {
	// Sample is the share of requests logged, from 0 to 1. Answers with a
	// 5xx status are always logged, except the 503 of on_degraded fail:
	// degraded queries have a rate-limited line of their own.
	Sample float64 `yaml:"sample"`
}

// call is what a transport learns about one request on its way: its id,
// and what the access log and the per-model metrics record. The request
// path finds it in the request's context.
type call struct {
	id         string
	models     []modelUse // one per query whose model resolved
	candidates int
	degraded   []string // stores that failed or timed out, once each
	values     int      // values that took defaults because of them
	// failedDegraded: the request failed because a query that asked for
	// on_degraded fail met a degraded store (its degraded line says so).
	failedDegraded bool
}

type modelUse struct{ name, version string }

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// requestID returns the id of the request ctx belongs to, or "".
func requestID(ctx context.Context) string {
	if c := callFrom(ctx); c != nil {
		return c.id
	}
	return ""
}

// note records the queries of a request: the models that answered them,
// their candidates and the stores that degraded them.
func (c *call) note(results []queryResult, candidates int) {
	if c == nil {
		return
	}
	c.candidates += candidates
	for i := range results {
		r := &results[i]
		if r.model != "" {
			c.models = append(c.models, modelUse{r.model, r.version})
		}
		c.values += r.degradedValues
		for _, st := range r.degraded {
			if !slices.Contains(c.degraded, st) {
				c.degraded = append(c.degraded, st)
			}
		}
	}
}

// requestIDs makes request ids: a random prefix per server and a counter,
// unique within a process and unlikely to collide across processes.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [4]byte
	_, _ = crand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

// requestIDFrom returns the id a client sent, if it is one to keep: 1 to
// 128 printable ASCII characters without spaces.
func requestIDFrom(s string) (string, bool) {
	if s == "" || len(s) > 128 {
		return "", false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return "", false
		}
	}
	return s, true
}

// statusClass names a status code's class for metrics: 2xx, 4xx or 5xx.
func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	}
	return "2xx"
}

// modelMetrics are the request metrics per model.
type modelMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newModelMetrics(reg prometheus.Registerer) modelMetrics {
	m := modelMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_model_requests_total",
			Help: "Queries by model, version and status class (2xx, 4xx, 5xx) of the request, both transports.",
		}, []string{"model", "version", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seer_model_request_duration_seconds",
			Help:    "Latency of the requests that queried each model, both transports.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"model"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// finish records a request once it is answered: the per-model metrics,
// and the access log line when the request is sampled or failed with a
// 5xx status. Degraded queries have lines of their own (degraded.go), so
// a request that failed only because a query asked for on_degraded fail
// is logged here when sampled, like a degraded answer.
func (s *Server) finish(ctx context.Context, c *call, transport, route string, code slog.Attr, class string, elapsed time.Duration) {
	seen := 0
	for i, m := range c.models {
		if slices.Contains(c.models[:i], m) {
			continue
		}
		seen++
		s.models.requests.WithLabelValues(m.name, m.version, class).Inc()
		if !slices.ContainsFunc(c.models[:i], func(o modelUse) bool { return o.name == m.name }) {
			s.models.duration.WithLabelValues(m.name).Observe(elapsed.Seconds())
		}
	}
	always := class == "5xx" && !c.failedDegraded
	if !always && (s.cfg.AccessLog.Sample <= 0 || rand.Float64() >= s.cfg.AccessLog.Sample) {
		return
	}
	models := make([]string, 0, seen)
	for i, m := range c.models {
		if !slices.Contains(c.models[:i], m) {
			models = append(models, m.name+"@"+m.version)
		}
	}
	level := slog.LevelInfo
	if class == "5xx" || len(c.degraded) > 0 {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(ctx, level, "access",
		slog.String("transport", transport), slog.String("route", route), code,
		slog.Any("models", models), slog.Int("candidates", c.candidates),
		slog.Any("degraded_stores", c.degraded), slog.Int("degraded_values", c.values),
		slog.Float64("elapsed_seconds", elapsed.Seconds()))
}

// idHandler adds the request id to every log record made with the
// request's context.
type idHandler struct{ slog.Handler }

func (h idHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h idHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return idHandler{h.Handler.WithAttrs(attrs)}
}

func (h idHandler) WithGroup(name string) slog.Handler { return idHandler{h.Handler.WithGroup(name)} }
