package serving

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/retrieval"

	"github.com/seer-ml/seer/internal/redistest"
)

// benchServer starts a real Redis holding 200 stores and one consumer, and
// returns the HTTP handler of a seer server over it with the demo model.
func benchServer(b *testing.B) http.Handler {
	return testServer(b).Handler()
}

// testServer starts a real Redis, seeds it with 200 stores and one
// consumer, and opens a server over it with the demo model.
func testServer(b testing.TB) *Server { return testServerWith(b, Options{}) }

// testServerWith is testServer with options.
func testServerWith(b testing.TB, opt Options) *Server {
	b.Helper()
	srv, _ := testServerRedis(b, opt)
	return srv
}

// testServerRedis is testServerWith that also returns the Redis server.
func testServerRedis(b testing.TB, opt Options) (*Server, *redistest.Server) {
	b.Helper()
	rs := redistest.Start(b)
	dir := b.TempDir()
	var stores strings.Builder
	stores.WriteString("id,store_avg_rating,store_num_ratings,store_delivery_minutes,store_price_level,store_cuisine\n")
	for i := range 200 {
		fmt.Fprintf(&stores, "%d,%.1f,%d,%d,%d,%s\n", i, 3+float64(i%20)/10, i*7, 15+i%40, 1+i%4, cuisines[i%5])
	}
	for _, name := range []string{"model.txt", "manifest.yaml"} {
		copyFile(b, "../configs/quickstart/models/store_ranker/1/"+name, filepath.Join(dir, "models/store_ranker/1", name))
	}
	writeFiles(b, dir, map[string]string{
		"catalog.yaml":  demoCatalog,
		"stores.csv":    stores.String(),
		"consumers.csv": "id,consumer_order_count,consumer_avg_spend\n1,40,22.5\n",
	})
	cfg := DefaultConfig()
	cfg.Catalog, cfg.Models, cfg.ModelsPoll = filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "models"), 0
	cfg.Stores = map[string]retrieval.Config{"main": {Mode: "standalone", Addr: rs.Addr}}
	cfg.Seed = []Seed{{Entity: "store", File: filepath.Join(dir, "stores.csv")}, {Entity: "consumer", File: filepath.Join(dir, "consumers.csv")}}
	cfg.Predict.RetrievalTimeout = time.Second
	srv, err := Open(context.Background(), cfg, opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	if err := srv.Seed(context.Background()); err != nil {
		b.Fatal(err)
	}
	return srv, rs
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
				if body := w.Body.String(); w.Code != 200 || strings.Contains(body, `"degraded"`) {
					if i := strings.Index(body, `"degraded"`); i >= 0 {
						body = body[i:] // say which store
					}
					b.Fatalf("%d %s", w.Code, body[:min(200, len(body))])
				}
			}
		})
	}
}

// BenchmarkDecode measures decoding the 200-candidate body and typing its
// query, against the encoding/json decoding it replaced.
func BenchmarkDecode(b *testing.B) {
	p := demoPlan(b)
	body := rankingBody(false)
	b.Run("candidates=200", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			req := newRequest()
			req.body = body
			if err := req.decode(predictBody, limits{}); err != nil {
				b.Fatal(err)
			}
			if _, err := req.query(p, 0); err != nil {
				b.Fatal(err)
			}
			req.release()
		}
	})
	b.Run("candidates=200/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var req predictRequest
			if err := decodeJSON([]byte(body), &req); err != nil {
				b.Fatal(err)
			}
			q := &req.Queries[0]
			if _, err := buildQuery(p, "queries[0]", q.Context, q.Features, q.Candidates); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendResults measures writing the answer of a 200-candidate
// query, with and without debug rows.
func BenchmarkAppendResults(b *testing.B) {
	p := demoPlan(b)
	vals := make([]float64, 200)
	cells := make([]features.Cell, 200*len(p.Inputs))
	for i := range vals {
		vals[i] = 1 / float64(i+3)
	}
	for i := range cells {
		cells[i] = features.Cell{Value: features.FloatValue(float64(i) / 7), Source: features.FromRedis}
	}
	for _, debug := range []bool{false, true} {
		res := []queryResult{{id: "q", model: "store_ranker", version: "1", scores: scores{vals: vals, width: 1}}}
		if debug {
			res[0].plan, res[0].cells = p, cells
		}
		b.Run(fmt.Sprintf("candidates=200/debug=%v", debug), func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = appendResults(buf[:0], res, true)
			}
		})
	}
}

// BenchmarkPrepareAssemble measures planning and assembling the
// 200-candidate query as the handler decodes it (a request feature per
// candidate), without Redis: every stored value takes its default.
func BenchmarkPrepareAssemble(b *testing.B) {
	p := demoPlan(b)
	req, err := decodeBody(rankingBody(false), predictBody)
	if err != nil {
		b.Fatal(err)
	}
	q, err := req.query(p, 0)
	if err != nil {
		b.Fatal(err)
	}
	var batch features.Batch
	x := make([]float64, q.Rows()*len(p.Inputs))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Prepare(&q, &batch); err != nil {
			b.Fatal(err)
		}
		p.Assemble(&q, &batch, x, nil)
	}
}

// featuresBodyOf is a /v1/features query of n stores and 3 features (two
// floats and an int), the shape of tools/bench_features.sh.
func featuresBodyOf(n int) string {
	var b strings.Builder
	b.WriteString(`{"queries": [{"features": ["store_avg_rating", "store_num_ratings", "store_delivery_minutes"], "candidates": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"entities": {"store": "%d"}}`, i*37%200)
	}
	b.WriteString(`]}]}`)
	return b.String()
}

// BenchmarkFeatures measures the whole /v1/features path of a 1- and a
// 100-entity query, without net/http: decode, plan, one pipelined HMGET
// per key against a real Redis, the cells and the JSON answer.
func BenchmarkFeatures(b *testing.B) {
	h := benchServer(b)
	for _, n := range []int{1, 100} {
		body := featuresBodyOf(n)
		b.Run(fmt.Sprintf("entities=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/features", strings.NewReader(body))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if body := w.Body.String(); w.Code != 200 || strings.Contains(body, `"degraded"`) || strings.Contains(body, `"default"`) {
					b.Fatalf("%d %s", w.Code, body[:min(300, len(body))])
				}
			}
		})
	}
}

// BenchmarkDecodeFeatures measures decoding a 100-entity /v1/features
// body with a pooled request, as the handler does.
func BenchmarkDecodeFeatures(b *testing.B) {
	body := featuresBodyOf(100)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := newRequest()
		req.body = body
		if err := req.decode(featuresBody, limits{}); err != nil {
			b.Fatal(err)
		}
		req.release()
	}
}
