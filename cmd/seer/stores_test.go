package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/serving"
)

type modesAnswer struct {
	Results []struct {
		Scores         []float64                    `json:"scores"`
		Degraded       bool                         `json:"degraded"`
		DegradedStores []string                     `json:"degraded_stores"`
		Debug          []map[string]json.RawMessage `json:"debug"`
	} `json:"results"`
}

// predictAll scores every quickstart store for consumer 1001.
func predictAll(t *testing.T, url string) modesAnswer {
	t.Helper()
	data, err := os.ReadFile("../../configs/quickstart/stores.csv")
	if err != nil {
		t.Fatal(err)
	}
	var cands []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n")[1:] {
		id, _, _ := strings.Cut(line, ",")
		cands = append(cands, `{"entities": {"store": `+id+`}}`)
	}
	body := `{"debug": true, "queries": [{"model": "store_ranker", "context": {"consumer": 1001},
		"features": {"hour_of_day": 19}, "candidates": [` + strings.Join(cands, ",") + `]}]}`
	resp, err := http.Post(url+"/v1/predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("predict: %s: %s", resp.Status, raw)
	}
	var a modesAnswer
	if err := json.Unmarshal(raw, &a); err != nil || len(a.Results) != 1 || len(a.Results[0].Scores) != len(cands) {
		t.Fatalf("predict answer %s: %v", raw, err)
	}
	return a
}

// sources counts the rows whose store_num_ratings came from Redis and from
// its default.
func sources(a modesAnswer) (redis, def int) {
	for _, row := range a.Results[0].Debug {
		var cell struct{ Source string }
		_ = json.Unmarshal(row["store_num_ratings"], &cell)
		switch cell.Source {
		case "redis":
			redis++
		case "default":
			def++
		}
	}
	return redis, def
}

func ready(t *testing.T, url string) (int, serving.Readiness) {
	t.Helper()
	var body serving.Readiness
	code := get(t, url+"/readyz", &body)
	return code, body
}

// The budgets of the store tests: a retrieval timeout that a healthy store
// meets even on a loaded machine (the healthy answers are compared exactly,
// so none may degrade), and the margin by which an answer may overrun a
// deadline before the test calls it missed.
const (
	retrievalTimeout = 2 * time.Second
	deadlineMargin   = 3 * time.Second
)

// TestServeStoreModes loads the quickstart data with `seer upload` into a
// standalone Redis, a ring and a Redis Cluster, serves each with `seer
// serve`, and compares the scores; then kills one node of each and checks
// that predictions degrade, only by that node's features, and what
// /readyz says.
func TestServeStoreModes(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs("../../configs/quickstart/" + p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	var first []float64
	for _, tt := range []struct {
		mode     string
		required bool
	}{
		{retrieval.ModeStandalone, false},
		{retrieval.ModeRing, true},
		{retrieval.ModeCluster, false},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			var nodes []*redistest.Server
			var addrs string
			switch tt.mode {
			case retrieval.ModeStandalone:
				nodes = []*redistest.Server{redistest.Start(t)}
				addrs = "addr: " + nodes[0].Addr
			case retrieval.ModeRing:
				nodes = []*redistest.Server{redistest.Start(t), redistest.Start(t), redistest.Start(t)}
				addrs = fmt.Sprintf("addrs: [%s, %s, %s]", nodes[0].Addr, nodes[1].Addr, nodes[2].Addr)
			case retrieval.ModeCluster:
				c := redistest.StartCluster(t, 3)
				nodes = c.Servers
				addrs = "addrs: [" + strings.Join(c.Addrs(), ", ") + "]"
				for _, s := range nodes {
					if err := s.Client().ConfigSet(context.Background(), "cluster-allow-reads-when-down", "yes").Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
			config := fmt.Sprintf(`catalog: %s
models: %s
models_poll: 0s
log_level: warn
stores:
  main:
    mode: %s
    %s
    required: %v
    breaker: {failures: 3, cooldown: 5s}
predict:
  timeout: 5s
  retrieval_timeout: %s
`, abs("catalog.yaml"), abs("models"), tt.mode, addrs, tt.required, retrievalTimeout)
			path := filepath.Join(t.TempDir(), "seer.yaml")
			if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, up := range [][]string{{"store", abs("stores.csv")}, {"consumer", abs("consumers.jsonl")}} {
				var out bytes.Buffer
				if err := run(context.Background(), []string{"upload", "--config", path, "--entity", up[0], up[1]}, &out, io.Discard); err != nil {
					t.Fatalf("seer upload: %v", err)
				}
			}
			url := serve(t, path).url

			code, body := ready(t, url)
			if st := body.Stores["main"]; code != http.StatusOK || !body.Ready || st.Status != retrieval.StatusOK || st.Mode != tt.mode || len(st.Nodes) != len(nodes) || st.Required != tt.required {
				t.Errorf("/readyz: %d %+v", code, body)
			}
			a := predictAll(t, url)
			res := a.Results[0]
			if res.Degraded || len(res.DegradedStores) > 0 {
				t.Errorf("degraded %v", res.DegradedStores)
			}
			if r, d := sources(a); r != len(res.Scores) || d != 0 {
				t.Errorf("%d rows read from redis, %d from defaults", r, d)
			}
			if first == nil {
				first = res.Scores
			} else if diff := cmp.Diff(first, res.Scores); diff != "" {
				t.Errorf("scores differ from the standalone store's (-standalone +%s):\n%s", tt.mode, diff)
			}

			// One node dies: its features take defaults, the others'
			// are still read, and nothing fails.
			nodes[0].Kill()
			for i := range 5 { // past the breaker's threshold
				start := time.Now()
				a = predictAll(t, url)
				if d := time.Since(start); d > retrievalTimeout+deadlineMargin {
					t.Errorf("predict %d took %v with a node down: the retrieval timeout is %v", i, d, retrievalTimeout)
				}
			}
			res = a.Results[0]
			if !res.Degraded || !cmp.Equal(res.DegradedStores, []string{"main"}) {
				t.Errorf("with a node down: degraded %v %v", res.Degraded, res.DegradedStores)
			}
			r, d := sources(a)
			if tt.mode == retrieval.ModeStandalone && (r != 0 || d != len(res.Scores)) ||
				tt.mode != retrieval.ModeStandalone && (r == 0 || d == 0) {
				t.Errorf("with node 0 down: %d rows read from redis, %d from defaults", r, d)
			}
			code, body = ready(t, url)
			want := retrieval.StatusDegraded
			if tt.mode == retrieval.ModeStandalone {
				want = retrieval.StatusBreakerOpen
			}
			wantCode := http.StatusOK
			if tt.required {
				wantCode = http.StatusServiceUnavailable
			}
			if code != wantCode || body.Ready != !tt.required || body.Stores["main"].Status != want {
				t.Errorf("/readyz with a node down: %d %+v; want %d and status %s", code, body, wantCode, want)
			}
		})
	}
}
