package serving

import (
	"net/http/httptest"
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
