package serving

import (
	"errors"
	"os"
	"testing"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
)

// demoPlan compiles the quickstart model's inputs against its catalog.
func demoPlan(t testing.TB) *features.Plan {
	t.Helper()
	data, err := os.ReadFile("../configs/quickstart/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := features.ParseCatalog(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	mdata, err := os.ReadFile("../configs/quickstart/models/store_ranker/1/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.ParseManifest(mdata)
	if err != nil {
		t.Fatal(err)
	}
	p, err := features.Compile(c, m.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzDecodeRequest decodes arbitrary bodies as /v1/predict and
// /v1/features bodies with the request decoder and with the encoding/json
// decoder it replaced (reference_test.go), and requires the same outcome:
// the same request and the same queries typed by two plans, or the same
// error. Then it plans and assembles each query: nothing may panic, and
// every error must be a client error.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(rankingBody(false)))
	f.Add([]byte(`{"queries": [{"id": "q1", "model": "store_ranker", "context": {"consumer": "1001"}, "features": {"hour_of_day": 13},
	  "candidates": [{"entities": {"store": "1426727"}, "features": {"distance_km": 1.2, "store_cuisine": "thai"}}, {"entities": {"store": 5}}]}]}`))
	f.Add([]byte(`{"queries": [{"model": "m", "context": {"store": 1.5}}]}`))
	f.Add([]byte(`{"queries": [{"model": "m", "features": {"store_avg_rating": [1, 2]}}], "debug": true}`))
	f.Add([]byte(`{"queries": [{"model": "m", "context": {"shop": "1"}, "candidates": [{}]}]}`))
	f.Add([]byte(`{"queries": [{"model": "m", "features": {"hour_of_day": 1e400}}]}`))
	f.Add([]byte(`{"queries": [{"features": ["store_avg_rating", "consumer_embedding"], "context": {"consumer": "1001"},
	  "candidates": [{"entities": {"store": "1"}, "features": {"consumer_embedding": [1, 2.5e-3], "consumer_recent_cuisines": ["a"], "store_is_open": true}}]}]}`))
	f.Add([]byte(`{"Queries": [{"id": "a\u00e9\ud83d\ude00\ud800", "MODEL": "m"}, null, {"id": "b"}], "queries": [{"model": "n"}], "debug": null}`))
	f.Add([]byte(`{"queries": [{"candidates": [{"id": "1", "features": {"distance_km": 1}}, {}], "candidates": [{"features": {"hour_of_day": "x"}}]}]}`))
	f.Add([]byte(`{"queries": [{"context": {"store": 1, "store": "", "consumer": -0}, "features": {"distance_km": null}}]} `))
	f.Add([]byte(`{"queries": [{"model": 7, "context": 5}], "x": [1, {"y": [true, false, null]}]}`))
	f.Add([]byte(`{"queries": [{"features": ["a", null, 1]}]}]`))
	f.Add([]byte(`{"on_degraded": "fail", "queries": [{"model": "m", "on_degraded": "defaults"}, {"ON_DEGRADED": null}, {"on_degraded": 1}]}`))
	plans := []*features.Plan{demoPlan(f), displayPlan(f)}
	plan := plans[0]
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, kind := range []bodyKind{predictBody, featuresBody} {
			checkDecode(t, body, kind, plans)
		}
		req, err := decodeBody(string(body), predictBody)
		defer req.release()
		if err != nil {
			return
		}
		for i := range req.nq {
			fq, err := req.query(plan, i)
			if err != nil {
				if !errors.Is(err, ErrBadRequest) {
					t.Fatalf("build error %v is not a bad request", err)
				}
				continue
			}
			var b features.Batch
			if err := plan.Prepare(&fq, &b); err != nil {
				if !errors.Is(err, features.ErrQuery) {
					t.Fatalf("prepare error %v is not a query error", err)
				}
				continue
			}
			x := make([]float64, fq.Rows()*len(plan.Inputs))
			plan.Assemble(&fq, &b, x, make([]features.Cell, len(x)))
		}
	})
}
