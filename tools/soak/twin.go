package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// The model's twin: the same artifact under another name, its shadow
// (shadows.yaml) for a fiftieth of the live queries. Scored on the same
// request values and the same stored ones, a twin can differ from the
// live model only when its rows are not the live rows: on a quiet phase
// every score must be the same.
const (
	twin         = model + "_twin"
	shadowSample = 0.02
)

// writeTwin writes the twin beside the model's version 1, and the
// model's shadows.yaml naming it.
func (e *env) writeTwin() error {
	src, dst := filepath.Join(e.work, "models", model, "1"), filepath.Join(e.work, "models", twin, "1")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(src, "manifest.yaml"))
	if err != nil {
		return err
	}
	renamed := strings.Replace(string(manifest), "\nname: "+model+"\n", "\nname: "+twin+"\n", 1)
	if renamed == string(manifest) {
		return fmt.Errorf("%s: no line %q", filepath.Join(src, "manifest.yaml"), "name: "+model)
	}
	artifact, err := os.ReadFile(filepath.Join(src, "model.txt"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "manifest.yaml"), []byte(renamed), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "model.txt"), artifact, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.work, "models", model, "shadows.yaml"), []byte("shadows: ["+twin+"]\n"), 0o644)
}

// shadowPair is a pair of /v1/admin/shadows, over every query since it
// was first seen.
type shadowPair struct {
	Live            string   `json:"live"`
	Shadow          string   `json:"shadow"`
	Queries         uint64   `json:"queries"`
	Rows            uint64   `json:"rows"`
	Errors          uint64   `json:"errors"`
	Dropped         uint64   `json:"dropped"`
	MaxAbsDiff      *float64 `json:"max_abs_diff"`
	TopKOverlap     *float64 `json:"topk_overlap"`
	RankCorrelation *float64 `json:"rank_correlation"`
}

// checkTwin checks, at the end of the control phase (the pair's statistics
// then cover it alone), that the twin scored some of the live queries and
// gave every row the live score.
func (e *env) checkTwin(p *phaseResult) {
	req, err := http.NewRequest(http.MethodGet, e.seerURL+"/v1/admin/shadows", nil)
	if err != nil {
		p.check(false, "shadows: %v", err)
		return
	}
	req.Header.Set("Authorization", "Bearer soak")
	resp, err := e.client.Do(req)
	if err != nil {
		p.check(false, "shadows: %v", err)
		return
	}
	defer resp.Body.Close()
	var body struct {
		Pairs []shadowPair `json:"pairs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		p.check(false, "/v1/admin/shadows: %s, %v", resp.Status, err)
		return
	}
	var pair *shadowPair
	for i := range body.Pairs {
		if body.Pairs[i].Live == model+"@1" && body.Pairs[i].Shadow == twin+"@1" {
			pair = &body.Pairs[i]
		}
	}
	if pair == nil {
		p.check(false, "no shadow pair %s@1 > %s@1 in /v1/admin/shadows", model, twin)
		return
	}
	f := func(v *float64) string {
		if v == nil {
			return "null"
		}
		return fmt.Sprint(*v)
	}
	p.check(pair.Queries > 0 && pair.Errors == 0 && pair.MaxAbsDiff != nil && *pair.MaxAbsDiff == 0,
		"the model's twin as its shadow: %d queries, %d errors, max_abs_diff %s (want some queries, no error, 0)",
		pair.Queries, pair.Errors, f(pair.MaxAbsDiff))
	p.note("the model's twin shadowed %d queries (%d rows, %d dropped, %d errors): max_abs_diff %s, topk_overlap %s, rank_correlation %s",
		pair.Queries, pair.Rows, pair.Dropped, pair.Errors, f(pair.MaxAbsDiff), f(pair.TopKOverlap), f(pair.RankCorrelation))
}
