package main

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
	data, err := os.ReadFile("../../configs/quickstart/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := features.ParseCatalog(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	mdata, err := os.ReadFile("../../configs/quickstart/models/store_ranker/1/manifest.yaml")
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

// FuzzDecodeRequest feeds arbitrary bodies through the request decoder and
// the query builder, then plans the query: nothing may panic, and every
// error must be a client error.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(rankingBody(false)))
	f.Add([]byte(`{"queries": [{"id": "q1", "model": "store_ranker", "context": {"consumer": "1001"}, "features": {"hour_of_day": 13},
	  "candidates": [{"entities": {"store": "1426727"}, "features": {"distance_km": 1.2, "store_cuisine": "thai"}}, {"entities": {"store": 5}}]}]}`))
	f.Add([]byte(`{"queries": [{"model": "m", "context": {"store": 1.5}}]}`))
	f.Add([]byte(`{"queries": [{"model": "m", "features": {"store_avg_rating": [1, 2]}}], "debug": true}`))
	f.Add([]byte(`{"queries": [{"model": "m", "context": {"shop": "1"}, "candidates": [{}]}]}`))
	f.Add([]byte(`{"queries": [{"model": "m", "features": {"hour_of_day": 1e400}}]}`))
	plan := demoPlan(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req predictRequest
		if err := decodeJSON(body, &req); err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("decode error %v is not a bad request", err)
			}
			return
		}
		for _, q := range req.Queries {
			fq, err := buildQuery(plan, "q", q.Context, q.Features, q.Candidates)
			if err != nil {
				if !errors.Is(err, errBadRequest) {
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
