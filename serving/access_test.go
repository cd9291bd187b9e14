package serving

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
)

// logBuffer collects JSON log lines from concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log records whose msg is msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (l *logBuffer) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// TestRequestIDs: X-Request-Id is taken from the request or made, echoed,
// put in error bodies and in the log lines of the request.
func TestRequestIDs(t *testing.T) {
	logs := new(logBuffer)
	srv := testServerWith(t, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	srv.cfg.AccessLog.Sample = 1
	h := srv.Handler()
	do := func(id, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body))
		if id != "" {
			r.Header.Set("X-Request-Id", id)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := do("abc-123", rankingBody(false))
	if w.Code != 200 || w.Header().Get("X-Request-Id") != "abc-123" {
		t.Fatalf("%d, X-Request-Id %q", w.Code, w.Header().Get("X-Request-Id"))
	}
	access := logs.lines(t, "access")
	if len(access) != 1 {
		t.Fatalf("%d access lines", len(access))
	}
	a := access[0]
	if a["request_id"] != "abc-123" || a["route"] != "/v1/predict" || a["status"] != 200.0 || a["transport"] != "http" ||
		a["candidates"] != 200.0 || a["level"] != "INFO" || a["elapsed_seconds"].(float64) <= 0 {
		t.Errorf("access line %v", a)
	}
	if models := a["models"].([]any); len(models) != 1 || models[0] != "store_ranker@1" {
		t.Errorf("models %v", a["models"])
	}

	// Made when absent or unusable; in the error body too.
	for _, sent := range []string{"", "has space", strings.Repeat("x", 129)} {
		w = do(sent, `{"queries": [{"model": "nope"}]}`)
		id := w.Header().Get("X-Request-Id")
		var body struct {
			Error     string
			RequestID string `json:"request_id"`
		}
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != 404 || id == "" || id == sent || body.RequestID != id {
			t.Errorf("sent %q: %d, header %q, body %s", sent, w.Code, id, w.Body)
		}
	}
	if a := do("", `{"queries": [{"model": "nope"}]}`).Header().Get("X-Request-Id"); a == do("", `{}`).Header().Get("X-Request-Id") {
		t.Errorf("two requests got the id %q", a)
	}
}

// TestAccessLogSampling: with sampling off, only 5xx are logged; degraded
// answers have their own rate-limited lines (TestDegradedLog), and the
// access log carries their stores and values when it samples them.
func TestAccessLogSampling(t *testing.T) {
	logs := new(logBuffer)
	srv := testServerWith(t, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	srv.cfg.AccessLog.Sample = 0
	h := srv.Handler()
	for _, body := range []string{rankingBody(false), `{"queries": [{"model": "nope"}]}`} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body)))
	}
	if n := len(logs.lines(t, "access")); n != 0 {
		t.Errorf("sampling off: %d access lines for a 200 and a 404", n)
	}
	// A retrieval budget nothing meets: every answer is degraded.
	srv.cfg.Predict.RetrievalTimeout = time.Nanosecond
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/predict", strings.NewReader(rankingBody(false))))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"degraded":true`) {
		t.Fatalf("%d %.100s", w.Code, w.Body)
	}
	if n := len(logs.lines(t, "access")); n != 0 {
		t.Errorf("sampling off: %d access lines for a degraded answer", n)
	}
	if n := len(logs.lines(t, "degraded")); n != 1 {
		t.Errorf("%d degraded lines, want 1", n)
	}
	// Sampled, the access line has the stores and values.
	srv.cfg.AccessLog.Sample = 1
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/predict", strings.NewReader(rankingBody(false))))
	access := logs.lines(t, "access")
	if w.Code != 200 || len(access) != 1 {
		t.Fatalf("%d; %d access lines", w.Code, len(access))
	}
	// 200 rows of five store inputs, and the consumer's two.
	if a := access[0]; a["level"] != "WARN" || a["degraded_stores"].([]any)[0] != "main" || a["degraded_values"] != float64(200*7) {
		t.Errorf("degraded access line %v", a)
	}
}

// TestModelMetrics counts requests per model, version and status class,
// over both transports.
func TestModelMetrics(t *testing.T) {
	logs := new(logBuffer)
	srv := testServerWith(t, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	srv.cfg.AccessLog.Sample = 1
	h := srv.Handler()
	for _, body := range []string{
		rankingBody(false),
		`{"queries": [{"model": "store_ranker", "features": {"hour_of_day": "x"}}]}`,
		`{"queries": [{"model": "nope"}]}`,
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/predict", strings.NewReader(body)))
	}
	client := seerv1.NewSeerClient(grpcClient(t, srv))
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "grpc-7")
	if _, err := client.Predict(ctx, rankingProto(false), grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-request-id"); len(got) != 1 || got[0] != "grpc-7" {
		t.Errorf("gRPC x-request-id %v", got)
	}
	for _, tt := range []struct {
		code string
		want float64
	}{{"2xx", 2}, {"4xx", 1}} {
		if got := testutil.ToFloat64(srv.models.requests.WithLabelValues("store_ranker", "1", tt.code)); got != tt.want {
			t.Errorf("store_ranker %s: %v, want %v", tt.code, got, tt.want)
		}
	}
	if n := testutil.CollectAndCount(srv.models.duration); n != 1 {
		t.Errorf("%d latency series, want 1 (unknown models have none)", n)
	}
	var grpcLine map[string]any
	for _, a := range logs.lines(t, "access") {
		if a["transport"] == "grpc" {
			grpcLine = a
		}
	}
	if grpcLine == nil || grpcLine["request_id"] != "grpc-7" || grpcLine["code"] != "OK" || grpcLine["route"] != "/seer.v1.Seer/Predict" {
		t.Errorf("gRPC access line %v", grpcLine)
	}
}
