package serving

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// openAPIDoc is the part of the document the test walks.
type openAPIDoc struct {
	Paths map[string]map[string]struct {
		Security    []map[string][]string `json:"security"`
		RequestBody *struct {
			Content map[string]struct {
				Examples map[string]struct{ Value json.RawMessage } `json:"examples"`
			} `json:"content"`
		} `json:"requestBody"`
		Responses map[string]struct {
			Content map[string]struct {
				Examples map[string]struct{ Value json.RawMessage } `json:"examples"`
			} `json:"content"`
		} `json:"responses"`
	} `json:"paths"`
}

// TestOpenAPIExamples sends every request the OpenAPI document shows to
// the real handlers (a server over a real Redis), and requires the status
// the document gives for that example and a body that validates against
// the response's schema; the document's own example answers must
// validate too. Operations without a request example are called bare and
// checked against their 200 example's schema.
func TestOpenAPIExamples(t *testing.T) {
	srv := testServer(t)
	srv.cfg.AdminToken = "s3cret"
	h := srv.Handler()

	var whole any
	if err := json.Unmarshal(openAPI, &whole); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("openapi.json", whole); err != nil {
		t.Fatal(err)
	}
	schemaOf := func(path, method, status, media string) *jsonschema.Schema {
		t.Helper()
		ptr := "openapi.json#/paths/" + strings.ReplaceAll(strings.ReplaceAll(path, "~", "~0"), "/", "~1") +
			"/" + method + "/responses/" + status + "/content/" + strings.ReplaceAll(media, "/", "~1") + "/schema"
		sch, err := c.Compile(ptr)
		if err != nil {
			t.Fatalf("schema %s: %v", ptr, err)
		}
		return sch
	}
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	// Every route of the handler is documented.
	for _, route := range []string{"/v1/predict", "/v1/features", "/v1/models", "/healthz", "/readyz", "/openapi.json",
		"/metrics", "/v1/admin/features", "/v1/admin/shadows", "/v1/admin/cache", "/debug/pprof/{profile}"} {
		if doc.Paths[route] == nil {
			t.Errorf("%s is not documented", route)
		}
	}
	sent := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			// The document's own answers validate against their schemas.
			statusOf := map[string]string{} // example name -> status
			for status, resp := range op.Responses {
				for media, content := range resp.Content {
					for name, ex := range content.Examples {
						statusOf[name] = status
						var v any
						if err := json.Unmarshal(ex.Value, &v); err != nil {
							t.Fatalf("%s %s %s example %s: %v", method, path, status, name, err)
						}
						if err := schemaOf(path, method, status, media).Validate(v); err != nil {
							t.Errorf("%s %s: the document's %s example %q does not validate: %v", method, path, status, name, err)
						}
					}
				}
			}
			requests := map[string]json.RawMessage{"": nil}
			if op.RequestBody != nil {
				requests = map[string]json.RawMessage{}
				for media, content := range op.RequestBody.Content {
					ptr := "openapi.json#/paths/" + strings.ReplaceAll(path, "/", "~1") + "/" + method +
						"/requestBody/content/" + strings.ReplaceAll(media, "/", "~1") + "/schema"
					sch, err := c.Compile(ptr)
					if err != nil {
						t.Fatalf("schema %s: %v", ptr, err)
					}
					for name, ex := range content.Examples {
						requests[name] = ex.Value
						var v any
						_ = json.Unmarshal(ex.Value, &v)
						// Examples of refused requests may break the schema; the
						// others must follow it.
						if err := sch.Validate(v); err != nil && statusOf[name] == "200" {
							t.Errorf("%s %s: request example %q does not validate: %v", method, path, name, err)
						}
					}
				}
			}
			target := strings.ReplaceAll(path, "{profile}", "heap")
			for name, body := range requests {
				want := "200"
				if name != "" {
					var ok bool
					if want, ok = statusOf[name]; !ok {
						t.Errorf("%s %s: request example %q has no answer", method, path, name)
						continue
					}
				}
				r := httptest.NewRequest(strings.ToUpper(method), target, bytes.NewReader(body))
				if len(op.Security) > 0 {
					r.Header.Set("Authorization", "Bearer s3cret")
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				sent++
				if strconv.Itoa(w.Code) != want {
					t.Errorf("%s %s example %q: status %d, documented %s: %s", method, path, name, w.Code, want, w.Body)
					continue
				}
				media := strings.TrimSpace(strings.Split(w.Header().Get("Content-Type"), ";")[0])
				if !slices.Contains([]string{"application/json"}, media) {
					if _, ok := op.Responses[want].Content[media]; !ok && !(media == "" && path == "/debug/pprof/{profile}") {
						t.Errorf("%s %s: content type %q is not documented", method, path, media)
					}
					continue
				}
				var got any
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
					t.Errorf("%s %s example %q: %v", method, path, name, err)
					continue
				}
				if err := schemaOf(path, method, want, media).Validate(got); err != nil {
					t.Errorf("%s %s example %q: the answer does not validate: %v\n%s", method, path, name, err, w.Body)
				}
			}
		}
	}
	if sent < 15 {
		t.Errorf("only %d requests sent", sent)
	}
}
