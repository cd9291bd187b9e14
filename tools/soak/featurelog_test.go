package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogCheck holds the feature log's checker to lines that are right and
// lines that are wrong in each way it looks for.
func TestLogCheck(t *testing.T) {
	e := &env{epoch: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), storeRest: make([]string, numStores)}
	store := storeID(0)
	e.storeRest[0] = "2,thai,true"
	e.vals.Store(&storeValues{cur: map[string][3]float64{store: {4.5, 120, 30.5}}})
	e.consumerVals = map[string]consumerValues{"9": {orders: 7, spend: 12.25}}
	e.bodies = [][]byte{[]byte(`{"queries":[{"model":"m","context":{"consumer":"9"},"features":{"hour_of_day":13},
		"candidates":[{"entities":{"store":"` + store + `"},"features":{"distance_km":1.5}}]}]}`)}
	e.sent.add("r1", answered{body: 0, n: 1, scores: scoresHash([]float64{0.25})})

	row := func(inputs, sources, why, scores string) string {
		return `{"time":"2026-01-01T00:00:10Z","request_id":"r1","model":"m","version":"1","rows":[{"entities":{"consumer":"9","store":"` + store + `"},` +
			`"inputs":{` + inputs + `},"sources":{` + sources + `},` + why + `"scores":[` + scores + `]}]`
	}
	const (
		inputs  = `"store_avg_rating":4.5,"store_num_ratings":120,"store_cuisine":"thai","store_is_open":true,"consumer_avg_spend":12.25,"hour_of_day":13,"distance_km":1.5`
		sources = `"store_avg_rating":"redis","store_num_ratings":"cache","store_cuisine":"redis","store_is_open":"redis","consumer_avg_spend":"redis","hour_of_day":"request","distance_km":"request"`
	)
	for _, tc := range []struct {
		name, line, wrong string // wrong: what the failure names, "" for none
	}{
		{"right", row(inputs, sources, "", "0.25") + "}", ""},
		{"degraded", row(strings.Replace(inputs, "4.5", "0", 1), strings.Replace(sources, `"store_avg_rating":"redis"`, `"store_avg_rating":"default"`, 1),
			`"why":{"store_avg_rating":"store_degraded"},`, "0.25") + `,"degraded_values":1,"degraded_stores":["main"]}`, ""},
		{"store value", row(strings.Replace(inputs, "4.5", "4.6", 1), sources, "", "0.25") + "}", "store_avg_rating 4.6"},
		{"store string", row(strings.Replace(inputs, `"thai"`, `"sushi"`, 1), sources, "", "0.25") + "}", "store_cuisine"},
		{"consumer value", row(strings.Replace(inputs, "12.25", "12.5", 1), sources, "", "0.25") + "}", "consumer_avg_spend"},
		{"score", row(inputs, sources, "", "0.5") + "}", "logged scores [0.5] are not those answered"},
		{"null score", row(inputs, sources, "", "null") + "}", "logged scores [NaN] are not those answered"},
		{"request feature", row(strings.Replace(inputs, `"hour_of_day":13`, `"hour_of_day":12`, 1), sources, "", "0.25") + "}", "hour_of_day 12"},
		{"degraded count", row(inputs, sources, "", "0.25") + `,"degraded_values":3}`, "degraded_values 3"},
		{"not JSON", `{"time":`, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "features.jsonl")
			if err := os.WriteFile(path, []byte(tc.line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := &phaseResult{}
			c := logCheck{e: e, p: p}
			if err := c.file(path); err != nil {
				t.Fatal(err)
			}
			if c.lines != 1 {
				t.Errorf("%d lines read, want 1", c.lines)
			}
			switch {
			case tc.wrong == "" && len(p.failures) > 0:
				t.Errorf("failures %q, want none", p.failures)
			case tc.wrong != "" && (len(p.failures) != 1 || !strings.Contains(p.failures[0], tc.wrong)):
				t.Errorf("failures %q, want one naming %q", p.failures, tc.wrong)
			}
			want := 5 // the degraded line has one stored input fewer
			if tc.name == "degraded" {
				want = 4
			}
			if tc.wrong == "" && (c.matched != 1 || c.stored != want) {
				t.Errorf("%d lines matched to requests and %d stored inputs checked, want 1 and %d", c.matched, c.stored, want)
			}
		})
	}
}
