package serving

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestRouteSets checks which routes each handler serves, and that pprof is
// behind the admin token.
func TestRouteSets(t *testing.T) {
	srv := testServer(t)
	srv.cfg.AdminToken = "s3cret"
	for _, tt := range []struct {
		name    string
		handler string
		path    string
		token   string
		want    int
	}{
		{"api on all", "all", "/healthz", "", 200},
		{"metrics on all", "all", "/metrics", "", 200},
		{"pprof without token", "all", "/debug/pprof/heap", "", 401},
		{"pprof with token", "all", "/debug/pprof/heap", "s3cret", 200},
		{"pprof index", "admin", "/debug/pprof/", "s3cret", 200},
		{"api has no metrics", "api", "/metrics", "", 404},
		{"api has no admin", "api", "/v1/admin/cache", "s3cret", 404},
		{"api has no pprof", "api", "/debug/pprof/heap", "s3cret", 404},
		{"api serves models", "api", "/v1/models", "", 200},
		{"admin has no api", "admin", "/v1/models", "", 404},
		{"admin serves cache", "admin", "/v1/admin/cache", "s3cret", 200},
		{"admin serves metrics", "admin", "/metrics", "", 200},
	} {
		handler := srv.Handler()
		switch tt.handler {
		case "api":
			handler = srv.APIHandler()
		case "admin":
			handler = srv.AdminHandler()
		}
		req := httptest.NewRequest("GET", tt.path, nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("%s: GET %s: %d, want %d", tt.name, tt.path, w.Code, tt.want)
		}
	}
}

// TestModelsRelativePaths: /v1/models names failed versions by their path
// under the models root, never by where the server's files are.
func TestModelsRelativePaths(t *testing.T) {
	srv := testServer(t)
	root := srv.cfg.Models
	writeFiles(t, root, map[string]string{"store_ranker/2/manifest.yaml": "name: store_ranker\nversion: \"2\"\nformat: lightgbm\nartifact: model.txt\n"})
	_ = srv.Registry().Reload()
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/v1/models", nil))
	var body struct{ Failures []struct{ Dir string } }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Failures) != 1 || body.Failures[0].Dir != filepath.Join("store_ranker", "2") {
		t.Fatalf("failures %+v", body.Failures)
	}
	if strings.Contains(w.Body.String(), root) {
		t.Errorf("the answer shows the models root %s: %s", root, w.Body)
	}
}

// TestAnswerLength: answers, large and small, go out with their
// Content-Length, never in chunks.
func TestAnswerLength(t *testing.T) {
	hs := httptest.NewServer(testServer(t).Handler())
	defer hs.Close()
	for _, tt := range []struct{ path, body string }{
		{"/v1/predict", rankingBody(false)},
		{"/v1/predict", rankingBody(true)},
		{"/v1/features", `{"queries": [{"features": ["store_avg_rating"], "candidates": [{"entities": {"store": "1"}}]}]}`},
	} {
		resp, err := hs.Client().Post(hs.URL+tt.path, "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %v %.200s", tt.path, resp.StatusCode, err, body)
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
			t.Errorf("POST %s: a %d-byte answer with Content-Length %d, Transfer-Encoding %q", tt.path, len(body), resp.ContentLength, resp.TransferEncoding)
		}
	}
}
