package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/internal/redistest"
)

// benchServer starts a real Redis holding 200 stores and one consumer, and
// returns the handler of a seer server over it with the demo model.
func benchServer(b *testing.B) http.Handler {
	b.Helper()
	rs := redistest.Start(b)
	dir := b.TempDir()
	cfgPath := benchConfig(b, dir, rs.Addr)
	var stores strings.Builder
	stores.WriteString("id,store_avg_rating,store_num_ratings,store_delivery_minutes,store_price_level,store_cuisine\n")
	for i := range 200 {
		fmt.Fprintf(&stores, "%d,%.1f,%d,%d,%d,%s\n", i, 3+float64(i%20)/10, i*7, 15+i%40, 1+i%4, cuisines[i%5])
	}
	writeFiles(b, dir, map[string]string{
		"stores.csv":    stores.String(),
		"consumers.csv": "id,consumer_order_count,consumer_avg_spend\n1,40,22.5\n",
	})
	for entity, file := range map[string]string{"store": "stores.csv", "consumer": "consumers.csv"} {
		if err := run(context.Background(), []string{"upload", "--config", cfgPath, "--entity", entity, filepath.Join(dir, file)}, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	svc, err := openService(context.Background(), cfg, log, reg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.close)
	return newServer(cfg, log, reg, svc).routes()
}

func benchConfig(b *testing.B, dir, addr string) string {
	b.Helper()
	for _, name := range []string{"model.txt", "manifest.yaml"} {
		copyFile(b, "../../configs/quickstart/models/store_ranker/1/"+name, filepath.Join(dir, "models/store_ranker/1", name))
	}
	writeFiles(b, dir, map[string]string{
		"catalog.yaml": demoCatalog,
		"seer.yaml":    fmt.Sprintf("catalog: catalog.yaml\nmodels: models\nmodels_poll: 0s\nstores:\n  main: {mode: standalone, addr: %q}\npredict: {retrieval_timeout: 1s}\n", addr),
	})
	return filepath.Join(dir, "seer.yaml")
}

// rankingBody is a 200-candidate ranking query: one consumer in the
// context, request features for the query and each candidate.
func rankingBody(debug bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"debug": %v, "queries": [{"id": "q", "model": "store_ranker", "context": {"consumer": "1"}, "features": {"hour_of_day": 19}, "candidates": [`, debug)
	for i := range 200 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"entities": {"store": "%d"}, "features": {"distance_km": %.1f}}`, i, float64(i%50)/5)
	}
	b.WriteString(`]}]}`)
	return b.String()
}

// BenchmarkPredict measures the whole request path of a 200-candidate
// query: decode, plan, one pipelined HMGET per key against a real Redis,
// assembly, scoring and the JSON answer.
func BenchmarkPredict(b *testing.B) {
	h := benchServer(b)
	for _, debug := range []bool{false, true} {
		body := rankingBody(debug)
		b.Run(fmt.Sprintf("candidates=200/debug=%v", debug), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 || strings.Contains(w.Body.String(), "degraded") {
					b.Fatalf("%d %s", w.Code, w.Body.String()[:min(200, w.Body.Len())])
				}
			}
		})
	}
}
