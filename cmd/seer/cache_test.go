package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/serving"
)

const testToken = "s3cret"

// testService serves the quickstart (embedded store, seeded) with the
// given cache section, and returns its base URL, service and config path.
func testService(t *testing.T, cacheYAML string) (string, *serving.Server, string, *bytes.Buffer) {
	t.Helper()
	root, err := filepath.Abs("../../configs/quickstart")
	if err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, "", root, cacheYAML)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(bytes.Buffer)
	log := slog.New(slog.NewJSONHandler(logs, nil))
	metrics := prometheus.NewRegistry()
	srv, err := serving.Open(context.Background(), cfg.server(), serving.Options{Logger: log, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, srv, path, logs
}

// writeConfig writes a config serving the quickstart under root, into
// path (a new file when empty).
func writeConfig(t *testing.T, path, root, cacheYAML string) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "seer.yaml")
	}
	y := "catalog: " + root + "/catalog.yaml\nmodels: " + root + "/models\nmodels_poll: 0s\n" +
		"stores: {main: {mode: embedded}}\n" +
		"seed: [{entity: store, file: " + root + "/stores.csv}, {entity: consumer, file: " + root + "/consumers.jsonl}]\n" +
		"admin_token: " + testToken + "\n" + cacheYAML
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func cacheStats(t *testing.T, base string) retrieval.CacheStats {
	t.Helper()
	code, body := call(t, "GET", base+"/v1/admin/cache", testToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/admin/cache: %d %s", code, body)
	}
	var st retrieval.CacheStats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// sources asks /v1/features for one store's rating and returns its source.
func source(t *testing.T, base string) string {
	t.Helper()
	code, body := call(t, "POST", base+"/v1/features", "",
		`{"queries": [{"features": ["store_avg_rating"], "candidates": [{"entities": {"store": 1426727}}]}]}`)
	if code != http.StatusOK {
		t.Fatalf("/v1/features: %d %s", code, body)
	}
	var out struct {
		Results []struct {
			Rows []map[string]struct {
				Source string `json:"source"`
			} `json:"rows"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Results[0].Rows[0]["store_avg_rating"].Source
}

func TestAdminCache(t *testing.T) {
	base, _, _, logs := testService(t, "")
	for _, tt := range []struct{ method, token string }{
		{"GET", ""}, {"GET", "wrong"}, {"PUT", ""}, {"PUT", "wrong"},
	} {
		if code, body := call(t, tt.method, base+"/v1/admin/cache", tt.token, `{"mode": "live"}`); code != http.StatusUnauthorized {
			t.Errorf("%s with token %q: %d %s, want 401", tt.method, tt.token, code, body)
		}
	}
	st := cacheStats(t, base)
	// Seeding uploads each feature for the first time: no eviction.
	if f, ok := st.Features["store_avg_rating"]; !ok || f.Mode != "off" || !f.Batch || f.UploadVersion != 1 || f.MarkerEvictions != 0 {
		t.Fatalf("store_avg_rating before: %+v", f)
	}
	if got := source(t, base); got != "redis" {
		t.Fatalf("mode off: source %s", got)
	}

	code, body := call(t, "PUT", base+"/v1/admin/cache", testToken, `{"mode": "live", "live_percent": 100, "features": {"store_num_ratings": {"mode": "shadow"}}}`)
	if code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	source(t, base)
	if got := source(t, base); got != "cache" {
		t.Errorf("mode live: source %s, want cache", got)
	}
	st = cacheStats(t, base)
	f := st.Features["store_avg_rating"]
	if f.Mode != "live" || f.Hits != 1 || f.Misses != 1 {
		t.Errorf("store_avg_rating after: %+v", f)
	}
	if f := st.Features["store_num_ratings"]; f.Mode != "shadow" || f.Source != "flag" {
		t.Errorf("store_num_ratings: %+v", f)
	}
	// The cache adds an entry's weight in its maintenance, which may still
	// be running on another goroutine: the bytes may lag the entries.
	for start := time.Now(); st.Entries > 0 && st.Bytes == 0 && time.Since(start) < 5*time.Second; {
		time.Sleep(10 * time.Millisecond)
		st = cacheStats(t, base)
	}
	if st.Entries == 0 || st.Bytes == 0 || st.MaxBytes != 64<<20 {
		t.Errorf("entries %d, bytes %d, max %d", st.Entries, st.Bytes, st.MaxBytes)
	}
	for _, key := range []string{`"shadow_match"`, `"shadow_mismatch"`, `"marker_evictions"`, `"mismatch_samples"`, `"hits"`, `"misses"`} {
		if !strings.Contains(body, key) {
			t.Errorf("the report lacks %s", key)
		}
	}
	if !strings.Contains(logs.String(), "cache flags changed") {
		t.Errorf("the change was not logged:\n%s", logs)
	}

	// The kill switch.
	if code, body := call(t, "PUT", base+"/v1/admin/cache", testToken, `{"enabled": false}`); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if got := source(t, base); got != "redis" {
		t.Errorf("disabled: source %s", got)
	}

	for _, bad := range []string{`{"mode": "on"}`, `{"features": {"nope": {"mode": "live"}}}`, `{"live_percent": 101}`, `{"mood": "live"}`, `[`} {
		if code, body := call(t, "PUT", base+"/v1/admin/cache", testToken, bad); code != http.StatusBadRequest {
			t.Errorf("PUT %s: %d %s, want 400", bad, code, body)
		}
	}
	if st := cacheStats(t, base); st.Flags.Enabled || st.Flags.Mode != "live" {
		t.Errorf("bad updates changed the flags: %+v", st.Flags)
	}

	// Prometheus carries the totals.
	_, metrics := call(t, "GET", base+"/metrics", "", "")
	for _, want := range []string{
		`seer_cache_lookups_total{mode="live",result="hit",store="main"} 1`,
		"seer_cache_entries ", "seer_cache_bytes ", "seer_cache_shadow_dropped_total 0",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestReloadCache tests what SIGHUP does: read the file again, apply its
// cache section, and keep the running settings when the file is bad.
func TestReloadCache(t *testing.T) {
	base, srv, path, logs := testService(t, "cache: {mode: shadow}\n")
	log := slog.New(slog.NewJSONHandler(logs, nil))
	root, _ := filepath.Abs("../../configs/quickstart")
	if _, err := srv.Cache().Update(retrieval.FlagsUpdate{Mode: ptr("off")}, "admin"); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, path, root, "cache: {mode: live, live_percent: 50, max_bytes: 1048576, features: {store_cuisine: {mode: off}}}\n")
	if err := reload(srv, path, log); err != nil {
		t.Fatal(err)
	}
	st := cacheStats(t, base)
	if st.Flags.Mode != "live" || st.Flags.LivePercent != 50 || st.MaxBytes != 1<<20 || st.Features["store_cuisine"].Mode != "off" {
		t.Errorf("after reload: %+v, max %d", st.Flags, st.MaxBytes)
	}
	for _, bad := range []string{
		"cache: {mode: sometimes}\n",
		"cache: {features: {nope: {mode: live}}}\n",
		"cache: {mode: live, surprise: 1}\n",
	} {
		writeConfig(t, path, root, bad)
		if err := reload(srv, path, log); err == nil {
			t.Errorf("reload of %q: no error", bad)
		}
		if st := cacheStats(t, base); st.Flags.Mode != "live" || st.Flags.LivePercent != 50 {
			t.Errorf("a bad file changed the flags: %+v", st.Flags)
		}
	}
	if err := os.WriteFile(path, []byte("{{{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reload(srv, path, log); err == nil {
		t.Error("reload of a broken file: no error")
	}
	if !strings.Contains(logs.String(), "kept the cache settings") {
		t.Errorf("the failed reload was not logged:\n%s", logs)
	}
}

func ptr[T any](v T) *T { return &v }

func TestSimulateCommand(t *testing.T) {
	dir := t.TempDir()
	tracePath := filepath.Join(dir, "zipf.jsonl")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--zipf", "2000,1.1", "--reads", "8000", "--sizes", "10,100,10k", "--points", "4", "--write", tracePath}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 7 || !strings.Contains(lines[0], "8000 reads of") || !strings.Contains(lines[1], "10000") || !strings.HasPrefix(strings.TrimSpace(lines[6]), "total") {
		t.Fatalf("output:\n%s", out.String())
	}
	generated := out.String()

	// The written trace replays the same reads.
	out.Reset()
	if err := run(context.Background(), []string{"simulate", "--sizes", "10,100,10k", "--points", "4", tracePath}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if firstLine(out.String()) != firstLine(generated) {
		t.Errorf("replayed %q, generated %q", firstLine(out.String()), firstLine(generated))
	}

	// MONITOR output.
	monitor := filepath.Join(dir, "monitor.txt")
	m := "OK\n" + strings.Repeat(`1700000000.000001 [0 127.0.0.1:1234] "HMGET" "st_1" "1"`+"\n"+`1700000000.5 [0 127.0.0.1:1234] "HMGET" "st_2" "1"`+"\n", 50)
	if err := os.WriteFile(monitor, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"simulate", "--sizes", "1,2", "--points", "1", "--cumulative", monitor}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	// Two keys: a cache of 2 misses only their first reads.
	if !strings.Contains(out.String(), "100 reads of 2 keys") || !strings.Contains(out.String(), "0.980") {
		t.Errorf("MONITOR replay:\n%s", out.String())
	}

	for _, args := range [][]string{
		{"simulate"},
		{"simulate", "--zipf", "10"},
		{"simulate", "--zipf", "10,1", tracePath},
		{"simulate", "--sizes", "0", tracePath},
		{"simulate", "--sizes", "x", tracePath},
	} {
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if err := run(context.Background(), []string{"simulate", filepath.Join(dir, "none")}, &out, &errOut); err == nil {
		t.Error("a missing file: no error")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestReloadFeatureLog tests what SIGHUP does to the feature log: a new
// sample applies from the next query on; other feature_log changes, and
// turning it on or off, wait for a restart and say so.
func TestReloadFeatureLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "features.jsonl")
	section := func(extra string) string {
		return "feature_log: {path: " + logPath + ", sample: " + extra + "}\n"
	}
	base, srv, path, logs := testService(t, section("0"))
	log := slog.New(slog.NewJSONHandler(logs, nil))
	root, _ := filepath.Abs("../../configs/quickstart")
	predict := func(id string) {
		t.Helper()
		body := strings.Replace(learnBody, `"id": "q1"`, `"id": "`+id+`"`, 1)
		if code, out := call(t, "POST", base+"/v1/predict", "", body); code != 200 {
			t.Fatalf("predict: %d %s", code, out)
		}
	}
	// logged waits for n lines and returns their query ids. The log is
	// read while seer writes it: a last line without its newline is not
	// whole yet.
	logged := func(n int) []string {
		t.Helper()
		var ids []string
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			data, _ := os.ReadFile(logPath)
			ids = ids[:0]
			for l := range strings.Lines(string(data)) {
				if !strings.HasSuffix(l, "\n") {
					break
				}
				var line struct {
					QueryID string `json:"query_id"`
				}
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				ids = append(ids, line.QueryID)
			}
			if len(ids) >= n || time.Since(start) > 10*time.Second {
				return ids
			}
		}
	}
	apply := func(yaml string) {
		t.Helper()
		writeConfig(t, path, root, yaml)
		if err := reload(srv, path, log); err != nil {
			t.Fatal(err)
		}
	}

	predict("off")
	apply(section("1"))
	predict("on")
	predict("on")
	if ids := logged(2); !slices.Equal(ids, []string{"on", "on"}) {
		t.Fatalf("logged %v, want the two queries after sample 1", ids)
	}
	if strings.Contains(logs.String(), "need a restart") {
		t.Errorf("a change of sample alone warned of a restart:\n%s", logs)
	}
	apply("feature_log: {path: " + logPath + ", sample: 0, max_bytes: 1000000}\n")
	if !strings.Contains(logs.String(), "feature_log changes other than sample need a restart") {
		t.Errorf("a change of max_bytes was not warned of:\n%s", logs)
	}
	predict("off")
	apply(section("1"))
	predict("on")
	if ids := logged(3); !slices.Equal(ids, []string{"on", "on", "on"}) {
		t.Fatalf("logged %v, want the queries sent at sample 1", ids)
	}
	apply("")
	if !strings.Contains(logs.String(), "turning the feature log on or off needs a restart") {
		t.Errorf("turning the feature log off was not warned of:\n%s", logs)
	}
	predict("on")
	if ids := logged(4); len(ids) != 4 {
		t.Errorf("logged %v after a reload that would turn the log off: it stays on until a restart", ids)
	}
}

// TestReloadGuardrails tests what SIGHUP does to the guardrails: new
// thresholds apply at once; an override of a feature the catalog lacks is
// refused and changes nothing; a new window waits for a restart.
func TestReloadGuardrails(t *testing.T) {
	base := "guardrails: {default_rate: 0.5, window: 1m}\n"
	_, srv, path, logs := testService(t, base)
	log := slog.New(slog.NewJSONHandler(logs, nil))
	root, _ := filepath.Abs("../../configs/quickstart")
	threshold := func() *float64 {
		st, ok := srv.Guardrails().Status("store_avg_rating")
		if !ok {
			t.Fatal("no guardrail for store_avg_rating")
		}
		return st.Threshold
	}
	if th := threshold(); th == nil || *th != 0.5 {
		t.Fatalf("threshold %v, want 0.5", th)
	}
	writeConfig(t, path, root, "guardrails: {default_rate: 0.5, window: 1m, features: {store_avg_rating: {default_rate: 0.2}}}\n")
	if err := reload(srv, path, log); err != nil {
		t.Fatal(err)
	}
	if th := threshold(); th == nil || *th != 0.2 {
		t.Errorf("threshold %v after the reload, want 0.2", th)
	}
	writeConfig(t, path, root, "guardrails: {default_rate: 0.5, window: 1m, features: {nope: {default_rate: 0.2}}}\n")
	if err := reload(srv, path, log); err == nil || !strings.Contains(logs.String(), "kept the guardrail settings") {
		t.Errorf("reload naming a feature the catalog lacks: %v\n%s", err, logs)
	}
	if th := threshold(); th == nil || *th != 0.2 {
		t.Errorf("threshold %v after a refused reload, want 0.2 still", th)
	}
	writeConfig(t, path, root, "guardrails: {default_rate: 0.3, window: 2m}\n")
	if err := reload(srv, path, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "a new guardrails window needs a restart") {
		t.Errorf("a new window was not warned of:\n%s", logs)
	}
	if th := threshold(); th == nil || *th != 0.3 {
		t.Errorf("threshold %v, want 0.3: the rest of the section applies", th)
	}
}

// TestReloadShadows tests what SIGHUP does to the shadows section: a new
// sample applies from the next query on; other changes wait for a restart
// and say so; a bad sample is refused and changes nothing.
func TestReloadShadows(t *testing.T) {
	_, srv, path, logs := testService(t, "shadows: {sample: 0.5}\n")
	log := slog.New(slog.NewJSONHandler(logs, nil))
	root, _ := filepath.Abs("../../configs/quickstart")
	sample := func() float64 { return srv.ShadowsConfig().Sample }
	if got := sample(); got != 0.5 {
		t.Fatalf("sample %v at start, want 0.5", got)
	}
	writeConfig(t, path, root, "shadows: {sample: 0.25}\n")
	if err := reload(srv, path, log); err != nil {
		t.Fatal(err)
	}
	if got := sample(); got != 0.25 {
		t.Errorf("sample %v after the reload, want 0.25", got)
	}
	if strings.Contains(logs.String(), "need a restart") {
		t.Errorf("a change of sample alone warned of a restart:\n%s", logs)
	}
	writeConfig(t, path, root, "shadows: {sample: 0.1, queue: 5}\n")
	if err := reload(srv, path, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "shadows changes other than sample need a restart") {
		t.Errorf("a change of queue was not warned of:\n%s", logs)
	}
	if c := srv.ShadowsConfig(); c.Sample != 0.1 || c.Queue != 1024 {
		t.Errorf("sample %v, queue %d; want the new sample 0.1 and the queue as started, 1024", c.Sample, c.Queue)
	}
	writeConfig(t, path, root, "shadows: {sample: 2}\n")
	if err := reload(srv, path, log); err == nil || !strings.Contains(err.Error(), "sample: 2 is not between 0 and 1") {
		t.Errorf("reload of sample 2: %v", err)
	}
	if got := sample(); got != 0.1 {
		t.Errorf("sample %v after a refused reload, want 0.1 still", got)
	}
}
