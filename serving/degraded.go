package serving

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// This file reports degraded queries: those that met a store that failed
// or missed the retrieval deadline. Each is counted per store (fetch) and
// per model, and logged on a line of its own ("msg":"degraded"), at most
// once a second per model: a store that is down must not flood the log.

// degradedMetrics count degraded queries per model.
type degradedMetrics struct {
	queries *prometheus.CounterVec
	values  *prometheus.CounterVec
}

func newDegradedMetrics(reg prometheus.Registerer) degradedMetrics {
	m := degradedMetrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_predict_degraded_queries_total",
			Help: "Predictions degraded because a store failed or missed the retrieval deadline, by model and version, answered with defaults or failed (on_degraded: fail).",
		}, []string{"model", "version"}),
		values: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_predict_degraded_values_total",
			Help: "Input values that took their defaults in answered predictions because their store failed or missed the retrieval deadline, by model.",
		}, []string{"model"}),
	}
	reg.MustRegister(m.queries, m.values)
	return m
}

// degradedLog limits the degraded log lines to one a second per model
// (per endpoint for /v1/features, which names no model); the next line
// of a model says how many queries it held back meanwhile.
type degradedLog struct {
	mu    sync.Mutex
	now   func() time.Time
	every time.Duration
	last  map[string]*degradedSince
}

// degradedSince is one model's last line and what was held back since.
type degradedSince struct {
	at         time.Time
	suppressed int // degraded queries not logged since at
	values     int // their values that took defaults
}

// maxDegradedKeys bounds the models degradedLog remembers; past it, it
// forgets them all.
const maxDegradedKeys = 4096

// allow reports whether a degraded query of the model is logged now and,
// if so, how many queries (and their values) were held back since the
// model's last line. A query held back adds values to the next line's.
func (l *degradedLog) allow(model string, values int) (ok bool, suppressed, suppressedValues int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.last[model]
	if st == nil {
		if l.last == nil || len(l.last) >= maxDegradedKeys {
			l.last = make(map[string]*degradedSince)
		}
		l.last[model] = &degradedSince{at: now}
		return true, 0, 0
	}
	if now.Sub(st.at) < l.every {
		st.suppressed++
		st.values += values
		return false, 0, 0
	}
	suppressed, suppressedValues = st.suppressed, st.values
	*st = degradedSince{at: now}
	return true, suppressed, suppressedValues
}

// reportDegraded counts a degraded query of a model (model "" for
// /v1/features, which only the per-store counter counts) and logs it,
// rate-limited. failed says the query asked for on_degraded fail and was
// not answered.
func (s *Server) reportDegraded(ctx context.Context, model, version string, failed bool, f fetched) {
	if model != "" {
		s.degradedBy.queries.WithLabelValues(model, version).Inc()
		if !failed {
			s.degradedBy.values.WithLabelValues(model).Add(float64(f.values))
		}
	}
	ok, suppressed, suppressedValues := s.degradedLog.allow(model, f.values)
	if !ok {
		return
	}
	answer := "defaults"
	if failed {
		answer = "failed"
	}
	attrs := make([]slog.Attr, 0, 10)
	if model != "" {
		attrs = append(attrs, slog.String("endpoint", "predict"), slog.String("model", model), slog.String("version", version))
	} else {
		attrs = append(attrs, slog.String("endpoint", "features"))
	}
	attrs = append(attrs,
		slog.Any("stores", f.degraded), slog.Int("values", f.values), slog.String("answer", answer),
		slog.Float64("elapsed_seconds", f.elapsed.Seconds()), slog.Float64("retrieval_timeout_seconds", s.cfg.Predict.RetrievalTimeout.Seconds()),
		slog.Int("suppressed", suppressed), slog.Int("suppressed_values", suppressedValues))
	s.log.LogAttrs(ctx, slog.LevelWarn, "degraded", attrs...)
}
