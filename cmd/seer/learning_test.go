package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// quickstartConfig writes a config in a temporary directory that serves
// the quickstart's catalog, models and seeds, with extra keys appended,
// and returns its path.
func quickstartConfig(t *testing.T, extra string) string {
	t.Helper()
	qs, err := filepath.Abs("../../configs/quickstart")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`catalog: %[1]s/catalog.yaml
models: %[1]s/models
stores: {main: {mode: embedded}}
seed: [{entity: store, file: %[1]s/stores.csv}, {entity: consumer, file: %[1]s/consumers.jsonl}]
`, qs) + extra
	p := filepath.Join(t.TempDir(), "seer.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const learnBody = `{"queries": [{"id": "q1", "model": "store_ranker", "context": {"consumer": "1001"},
  "candidates": [{"entities": {"store": "1"}, "features": {"distance_km": 1.5}}, {"entities": {"store": "2"}}]}]}`

// TestFeatureLogPath serves a config whose feature log path is relative:
// the log lands beside the config file, its directory made, and every
// line is written by the time serve returns.
func TestFeatureLogPath(t *testing.T) {
	cfg := quickstartConfig(t, "feature_log: {path: logs/today/features.jsonl, sample: 1}\n")
	inst := serve(t, cfg)
	for range 3 {
		if code := post(t, inst.url+"/v1/predict", learnBody, nil); code != 200 {
			t.Fatalf("predict: %d", code)
		}
	}
	inst.stop()
	data, err := os.ReadFile(filepath.Join(filepath.Dir(cfg), "logs", "today", "features.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), data)
	}
	var line struct {
		QueryID string `json:"query_id"`
		Model   string `json:"model"`
		Rows    []struct {
			Scores []float64 `json:"scores"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line.QueryID != "q1" || line.Model != "store_ranker" || len(line.Rows) != 2 || len(line.Rows[0].Scores) != 1 {
		t.Errorf("line %s", lines[0])
	}
}

// TestFeatureLogStdout logs to standard output after the listening line.
func TestFeatureLogStdout(t *testing.T) {
	cfg := quickstartConfig(t, "feature_log: {path: '-'}\nshutdown_delay: 0s\n")
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &lockedWriter{w: new(bytes.Buffer)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfg, "--listen", "127.0.0.1:0"}, stdout, io.Discard)
	}()
	var url string
	deadline := time.Now().Add(30 * time.Second)
	for url == "" {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("seer did not start: %s", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
		if _, rest, ok := strings.Cut(stdout.String(), "seer: listening on "); ok {
			url, _, _ = strings.Cut(rest, "\n")
		}
	}
	if code := post(t, url+"/v1/predict", learnBody, nil); code != 200 {
		t.Fatalf("predict: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	if !strings.Contains(out, `"query_id":"q1","model":"store_ranker"`) {
		t.Errorf("stdout has no feature log line:\n%s", out)
	}
}

// TestFeatureLogUnwritable refuses to start when the log's directory
// cannot be made.
func TestFeatureLogUnwritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := quickstartConfig(t, "feature_log: {path: "+filepath.Join(file, "logs", "f.jsonl")+"}\n")
	err := run(context.Background(), []string{"serve", "--config", cfg, "--listen", "127.0.0.1:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "feature log") || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("got %v, want a feature log error", err)
	}
}
