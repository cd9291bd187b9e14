package retrieval

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one store's part of a Fetch, as the metrics label them.
const (
	resultOK        = "ok"
	resultError     = "error"
	resultTimeout   = "timeout"
	resultBreaker   = "breaker"   // a node's breaker was open: nothing was sent to it
	resultCancelled = "cancelled" // the caller went away before the store answered
)

type metrics struct {
	duration *prometheus.HistogramVec
	values   *prometheus.CounterVec
	upload   *prometheus.CounterVec
	breaker  *prometheus.CounterVec
	redirect *prometheus.CounterVec
	batches  *prometheus.CounterVec
	batched  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seer_retrieval_fetch_duration_seconds",
			Help:    "Time one store took to answer the pipeline of a Fetch, by result (ok, error, timeout, breaker, cancelled: the caller went away first).",
			Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512},
		}, []string{"store", "result"}),
		values: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_retrieval_values_total",
			Help: "Feature values read by Fetch, by result (found, absent, corrupt, wrong_type, stale).",
		}, []string{"store", "result"}),
		upload: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_retrieval_upload_values_total",
			Help: "Feature values written by uploads.",
		}, []string{"store"}),
		breaker: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_retrieval_breaker_events_total",
			Help: "Circuit breaker events of a store's nodes: opened (after repeated failures, or a failed probe), rejected (a node's reads skipped while its breaker was open).",
		}, []string{"store", "event"}),
		redirect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_retrieval_redirects_total",
			Help: "Reads a Redis Cluster node redirected (MOVED, ASK, TRYAGAIN) and seer sent again through the cluster client.",
		}, []string{"store"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_retrieval_batches_total",
			Help: "Round trips that carried small reads to a node together (see seer_retrieval_batched_reads_total).",
		}, []string{"store"}),
		batched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_retrieval_batched_reads_total",
			Help: "Small reads sent in batches: divided by seer_retrieval_batches_total, how many reads shared a round trip.",
		}, []string{"store"}),
	}
	if reg != nil {
		m.duration = register(reg, m.duration)
		m.values = register(reg, m.values)
		m.upload = register(reg, m.upload)
		m.breaker = register(reg, m.breaker)
		m.redirect = register(reg, m.redirect)
		m.batches = register(reg, m.batches)
		m.batched = register(reg, m.batched)
	}
	return m
}

// register registers c, or returns the equal collector registered before
// (by an earlier Retriever on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old
		}
	}
	panic("retrieval: register metrics: " + err.Error()) // a programming error, like MustRegister
}

// registerGenerationsMissing registers the gauge that says whether st's
// generations hash is gone while reads keep the generations read before.
func registerGenerationsMissing(reg prometheus.Registerer, st *Store) {
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "seer_retrieval_generations_missing",
		Help:        "1 while the store's generations hash is gone (its node restarted empty, or it was deleted) and reads keep the generations read before, until an upload writes it again; else 0.",
		ConstLabels: prometheus.Labels{"store": st.name},
	}, func() float64 {
		if st.gensMissing.Load() {
			return 1
		}
		return 0
	}))
}

// storeMetrics holds one store's metric children, resolved once.
type storeMetrics struct {
	duration                                 map[string]prometheus.Observer
	found, absent, corrupt, wrongType, stale prometheus.Counter
	opened, rejected                         prometheus.Counter // breaker events
	redirected                               prometheus.Counter
	batches, batchedReads                    prometheus.Counter
}

func (m *metrics) store(name string) *storeMetrics {
	return &storeMetrics{
		duration: map[string]prometheus.Observer{
			resultOK:        m.duration.WithLabelValues(name, resultOK),
			resultError:     m.duration.WithLabelValues(name, resultError),
			resultTimeout:   m.duration.WithLabelValues(name, resultTimeout),
			resultBreaker:   m.duration.WithLabelValues(name, resultBreaker),
			resultCancelled: m.duration.WithLabelValues(name, resultCancelled),
		},
		found:        m.values.WithLabelValues(name, "found"),
		absent:       m.values.WithLabelValues(name, "absent"),
		corrupt:      m.values.WithLabelValues(name, "corrupt"),
		wrongType:    m.values.WithLabelValues(name, "wrong_type"),
		stale:        m.values.WithLabelValues(name, "stale"),
		opened:       m.breaker.WithLabelValues(name, "opened"),
		rejected:     m.breaker.WithLabelValues(name, "rejected"),
		redirected:   m.redirect.WithLabelValues(name),
		batches:      m.batches.WithLabelValues(name),
		batchedReads: m.batched.WithLabelValues(name),
	}
}

func (m *storeMetrics) observe(result string, d time.Duration) {
	m.duration[result].Observe(d.Seconds())
}

func (m *storeMetrics) add(c *counts) {
	for _, x := range []struct {
		c prometheus.Counter
		n int
	}{{m.found, c.found}, {m.absent, c.absent}, {m.corrupt, c.corrupt}, {m.wrongType, c.wrongType}, {m.stale, c.stale}} {
		if x.n > 0 {
			x.c.Add(float64(x.n))
		}
	}
}

// counter returns the counter of values with the given result.
func (m *storeMetrics) counter(result string) prometheus.Counter {
	switch result {
	case "found":
		return m.found
	case "absent":
		return m.absent
	case "corrupt":
		return m.corrupt
	case "wrong_type":
		return m.wrongType
	}
	return m.stale
}
