package main

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// TestQuickstart serves configs/quickstart.yaml, whose embedded store seeds
// itself, and posts the README's example: the answer must be the one the
// README shows.
func TestQuickstart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)curl -s localhost:8080/v1/predict -d '(.*?)'\n# (\{.*?\})\n`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no predict example with its answer")
	}
	inst := serve(t, "../../configs/quickstart.yaml")
	var got, want predictAnswer
	if code := post(t, inst.url+"/v1/predict", string(m[1]), &got); code != 200 {
		t.Fatalf("status %d: %s", code, got.Error)
	}
	if err := json.Unmarshal(m[2], &want); err != nil {
		t.Fatal(err)
	}
	g, w := floats(t, got.Results[0].Scores), floats(t, want.Results[0].Scores)
	if len(g) != len(w) {
		t.Fatalf("got %v, want %v", g, w)
	}
	for i := range w {
		if g[i] != w[i] {
			t.Errorf("score %d: got %v, README says %v", i, g[i], w[i])
		}
	}
}
