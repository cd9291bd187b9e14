package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/retrieval"
)

// whyCatalog adds to the demo catalog one feature per way a value can
// take its default, a cached one, and one in a store of its own.
const whyCatalog = demoCatalog + `  - {name: w_absent, entity: store, type: float, store: main, default: 1}
  - {name: w_corrupt, entity: store, type: float, store: main, default: 1}
  - {name: w_wrong, entity: store, type: float, store: main, default: 1}
  - {name: w_stale, entity: store, type: float, store: main, default: 1, max_age: 1h}
  - {name: w_ok, entity: store, type: float, store: main, cache: {mode: live}}
  - {name: w_slow, entity: store, type: float, store: slow, default: 2}
  - {name: w_consumer, entity: consumer, type: float, store: main, default: 3}
`

// whyCell is a cell as the API writes it.
type whyCell struct {
	Value   any    `json:"value"`
	Source  string `json:"source"`
	Why     string `json:"why"`
	Updated string `json:"updated"`
}

// TestWhy produces every reason a value takes its default against real
// Redis and reads it back through /v1/features and the debug rows of
// /v1/predict, with the upload time of the values that were found, from
// Redis and from the cache.
func TestWhy(t *testing.T) {
	slow := redistest.Start(t)
	names := []string{"w_absent", "w_corrupt", "w_wrong", "w_stale", "w_ok", "w_slow", "w_consumer"}
	inputs := make([]string, len(names))
	for i, n := range names {
		inputs[i] = "{name: " + n + "}"
	}
	f := newLearnFixture(t, map[string]string{
		"catalog.yaml": whyCatalog,
		"models/why/1/manifest.yaml": "name: why\nversion: \"1\"\nformat: linear\ninputs: [" + strings.Join(inputs, ", ") + "]\n" +
			"linear: {link: identity, weights: {w_ok: 1}}\n",
	}, func(cfg *Config) {
		cfg.Stores["slow"] = retrieval.Config{Mode: "standalone", Addr: slow.Addr}
		// The paused store costs every request this budget; a healthy one
		// meets it on a loaded machine.
		cfg.Predict.RetrievalTimeout = time.Second
	})
	ctx := context.Background()
	rc := f.rs.Client()
	written := time.Date(2025, 3, 1, 12, 30, 45, 0, time.UTC)
	hset := func(key, name string, b []byte) {
		t.Helper()
		if err := rc.HSet(ctx, key, features.Field(name), b).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hset("st_500", "w_corrupt", []byte{0xff, 0x13, 0x37})
	hset("st_500", "w_wrong", features.EncodeStamped(nil, features.StringValue("4.5"), written.Unix()))
	hset("st_500", "w_stale", features.EncodeStamped(nil, features.FloatValue(9), time.Now().Add(-2*time.Hour).Unix()))
	hset("st_500", "w_ok", features.EncodeStamped(nil, features.FloatValue(7.5), written.Unix()))
	if err := rc.Set(ctx, "st_501", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slow.Pause()
	defer slow.Resume()

	want := map[string]whyCell{
		"w_absent":   {Value: 1.0, Source: "default", Why: "absent"},
		"w_corrupt":  {Value: 1.0, Source: "default", Why: "corrupt"},
		"w_wrong":    {Value: 1.0, Source: "default", Why: "wrong_type"},
		"w_stale":    {Value: 1.0, Source: "default", Why: "stale"},
		"w_ok":       {Value: 7.5, Source: "redis", Updated: "2025-03-01T12:30:45Z"},
		"w_slow":     {Value: 2.0, Source: "default", Why: "store_degraded"},
		"w_consumer": {Value: 3.0, Source: "default", Why: "no_entity"},
	}
	featuresBody := fmt.Sprintf(`{"queries": [{"features": ["%s"], "context": {"store": "500"}}]}`, strings.Join(names, `", "`))
	check := func(what string, row map[string]whyCell, want map[string]whyCell) {
		t.Helper()
		for name, w := range want {
			if got := row[name]; got != w {
				t.Errorf("%s: %s = %+v, want %+v", what, name, got, w)
			}
		}
	}
	var fr struct {
		Results []struct {
			Rows     []map[string]whyCell `json:"rows"`
			Degraded []string             `json:"degraded_stores"`
		} `json:"results"`
	}
	code, body := f.post(t, "/v1/features", featuresBody)
	if err := json.Unmarshal(body, &fr); code != 200 || err != nil {
		t.Fatalf("/v1/features: %d %s %v", code, body, err)
	}
	check("/v1/features", fr.Results[0].Rows[0], want)
	if d := fr.Results[0].Degraded; len(d) != 1 || d[0] != "slow" {
		t.Errorf("degraded stores %v, want [slow]", d)
	}
	// Request values carry neither why nor updated.
	if cell := fr.Results[0].Rows[0]["w_ok"]; strings.Contains(string(body), `"why":""`) || cell.Why != "" {
		t.Errorf("an empty why was written: %s", body)
	}

	// From now on w_ok comes from the cache, with its upload time still.
	cached := want["w_ok"]
	cached.Source = "cache"
	want["w_ok"] = cached

	// gRPC gives the same reasons and times.
	client := seerv1.NewSeerClient(grpcClient(t, f.srv))
	gr, err := client.GetFeatures(ctx, &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{
		Features: names, Context: map[string]string{"store": "500"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		c := gr.Results[0].Rows[0].Cells[name]
		updated := ""
		if c.GetUpdated() != nil {
			updated = c.GetUpdated().AsTime().Format(time.RFC3339)
		}
		if c.GetWhy() != w.Why || c.GetSource() != w.Source || updated != w.Updated {
			t.Errorf("gRPC %s: why %q source %q updated %q, want %+v", name, c.GetWhy(), c.GetSource(), updated, w)
		}
	}

	// The same cells in the debug rows of a prediction.
	var pr struct {
		Results []struct {
			Debug []map[string]whyCell `json:"debug"`
		} `json:"results"`
	}
	predictBody := `{"debug": true, "queries": [{"model": "why", "context": {"store": "500"},
		"candidates": [{}, {"entities": {"store": "501"}}, {"features": {"w_absent": 0.5}}]}]}`
	if err := json.Unmarshal(f.predict(t, predictBody), &pr); err != nil {
		t.Fatal(err)
	}
	rows := pr.Results[0].Debug
	check("debug row 0", rows[0], want)
	// A key that is not a hash: every value of the key is corrupt.
	check("debug row 1", rows[1], map[string]whyCell{
		"w_absent": {Value: 1.0, Source: "default", Why: "corrupt"},
		"w_ok":     {Value: nil, Source: "default", Why: "corrupt"},
	})
	check("debug row 2", rows[2], map[string]whyCell{"w_absent": {Value: 0.5, Source: "request"}})
}
