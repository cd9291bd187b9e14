package serving

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seer-ml/seer/internal/testenv"
	"github.com/seer-ml/seer/registry"
)

// BenchmarkLearning measures what learning from traffic costs the request
// path: the 200-candidate query of BenchmarkPredict through the handler,
// with the feature log, a shadow model and guardrails off and on. Run the
// variants interleaved and compare them with benchstat -col /learn.
func BenchmarkLearning(b *testing.B) {
	body := rankingBody(false)
	for _, v := range []struct {
		name  string
		files map[string]string
		edit  func(*Config)
	}{
		{"off", nil, nil},
		{"log-0.05", nil, func(c *Config) {
			c.FeatureLog.Path, c.FeatureLog.Sample = filepath.Join(c.Models, "..", "features.jsonl"), 0.05
		}},
		{"log-1", nil, func(c *Config) {
			c.FeatureLog.Path, c.FeatureLog.Sample = filepath.Join(c.Models, "..", "features.jsonl"), 1
		}},
		{"shadow", map[string]string{
			"models/store_ranker/2/manifest.yaml":        rawManifest(b, "store_ranker", "2"),
			"models/store_ranker/2/model.txt":            treeModel(b, func(_ int, v float64) float64 { return v }),
			"models/store_ranker/" + registry.ShadowFile: "shadows: [store_ranker@2]\n",
		}, nil},
		{"guardrails", nil, func(c *Config) {
			c.Guardrails.DefaultRate, c.Guardrails.Window = 0.5, 3*time.Second
		}},
	} {
		b.Run("learn="+v.name, func(b *testing.B) {
			f := newLearnFixture(b, v.files, v.edit)
			h := f.srv.Handler()
			b.ReportAllocs()
			cpu := testenv.CPUTime()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 || strings.Contains(w.Body.String(), `"degraded"`) {
					b.Fatalf("%d %.200s", w.Code, w.Body)
				}
			}
			if v.name == "shadow" {
				// Let the queued shadows finish: their CPU counts.
				deadline := time.Now().Add(time.Minute)
				for time.Now().Before(deadline) {
					p := f.srv.ShadowStats()[0]
					if p.Queries+p.Errors+p.Dropped >= uint64(b.N) {
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
			if strings.HasPrefix(v.name, "log") {
				f.srv.learn.log.Close() // write out the queue: the file holds what was logged
			}
			testenv.ReportCPU(b, cpu)
			b.StopTimer()
			if v.name == "shadow" {
				for _, p := range f.srv.ShadowStats() {
					b.ReportMetric(float64(p.Dropped)/float64(b.N), "shadow-dropped/op")
				}
			}
			if strings.HasPrefix(v.name, "log") {
				if info, err := os.Stat(filepath.Join(f.dir, "features.jsonl")); err == nil {
					b.ReportMetric(float64(info.Size())/float64(b.N), "log-B/op")
				}
			}
		})
	}
}

// BenchmarkFlatten is what the request path pays per shadow to copy the
// 200-candidate query (typed for the shadow) out of the request.
func BenchmarkFlatten(b *testing.B) {
	p := demoPlan(b)
	req, err := decodeBody(rankingBody(false), predictBody)
	if err != nil {
		b.Fatal(err)
	}
	q, err := req.query(p, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		flatten(&q)
	}
}
