package serving

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPredictCancelled has the client go away while its features are being
// read from a frozen Redis: the query counts as cancelled, neither as
// degraded nor as a store timeout, and the answer nobody reads is a 499.
func TestPredictCancelled(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, rs := testServerRedis(t, Options{Metrics: reg})
	h := srv.Handler()
	body := rankingBody(false)
	// Connected and warm first.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body)))
	if w.Code != 200 || strings.Contains(w.Body.String(), "degraded") {
		t.Fatalf("first answer: %d %s", w.Code, w.Body.String()[:min(200, w.Body.Len())])
	}

	rs.Pause()
	t.Cleanup(rs.Resume)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel) // the retrieval budget is a second
	req := httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body)).WithContext(ctx)
	w = httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(w, req)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the request took %v after its client went away at 50ms", d)
	}
	if w.Code != statusClientClosed {
		t.Errorf("status %d, want %d; body %s", w.Code, statusClientClosed, w.Body.String())
	}
	rs.Resume()

	count := func(name string, labels ...string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var n float64
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metrics:
			for _, m := range mf.GetMetric() {
				for i := 0; i+1 < len(labels); i += 2 {
					found := false
					for _, lp := range m.GetLabel() {
						if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
							found = true
						}
					}
					if !found {
						continue metrics
					}
				}
				switch {
				case m.GetCounter() != nil:
					n += m.GetCounter().GetValue()
				case m.GetHistogram() != nil:
					n += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return n
	}
	if got := count("seer_predict_cancelled_total"); got != 1 {
		t.Errorf("seer_predict_cancelled_total = %v, want 1", got)
	}
	if got := count("seer_predict_degraded_total"); got != 0 {
		t.Errorf("seer_predict_degraded_total = %v, want 0", got)
	}
	if got := count("seer_retrieval_fetch_duration_seconds", "result", "cancelled"); got != 1 {
		t.Errorf("seer_retrieval_fetch_duration_seconds{result=cancelled} counted %v, want 1", got)
	}
	if got := count("seer_retrieval_fetch_duration_seconds", "result", "timeout"); got != 0 {
		t.Errorf("seer_retrieval_fetch_duration_seconds{result=timeout} counted %v, want 0", got)
	}
}

// TestDisplayPlanCache: a list of features is compiled once.
func TestDisplayPlanCache(t *testing.T) {
	srv := testServer(t)
	a, err := srv.displayPlan(0, []string{"store_avg_rating", "consumer_avg_spend"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := srv.displayPlan(0, []string{"store_avg_rating", "consumer_avg_spend"})
	c, _ := srv.displayPlan(0, []string{"consumer_avg_spend", "store_avg_rating"})
	if a != b || a == c || len(c.Inputs) != 2 || c.Inputs[0].Name != "consumer_avg_spend" {
		t.Errorf("plans %p %p %p", a, b, c)
	}
	if _, err := srv.displayPlan(3, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "queries[3].features") {
		t.Errorf("unknown feature: %v", err)
	}
}
