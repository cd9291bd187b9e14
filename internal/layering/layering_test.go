// Package layering holds the test that keeps seer's package dependencies
// pointing one way: features <- models <- registry; features <- retrieval;
// features <- featurelog; features <- guardrail; shadow imports none;
// serving uses them all; cmd/seer imports them all and nothing imports cmd.
package layering

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/seer-ml/seer"

// allowed lists, for each package, the seer packages it may import.
var allowed = map[string][]string{
	"features": {},
	"models":   {"features", "models/onnx"},
	// The ONNX evaluator stands alone: protobuf decoding and kernels.
	"models/onnx": {},
	"registry":    {"features", "models"},
	"retrieval":   {"features"},
	"featurelog":  {"features"},
	"shadow":      {},
	"guardrail":   {"features"},
	"api/seer/v1": {},
	"serving":     {"features", "models", "registry", "retrieval", "featurelog", "shadow", "guardrail", "api/seer/v1"},
	"cmd/seer":    {"features", "models", "registry", "retrieval", "featurelog", "shadow", "guardrail", "serving"},
	// Tools generate test and benchmark data from the documents alone.
	"tools/uploadgen": {},
	// The load generator speaks the gRPC API through its generated code.
	"tools/grpcload": {"api/seer/v1"},
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		ok, listed := allowed[rel]
		if !listed {
			continue
		}
		seen++
		for _, imp := range append(p.Imports, p.TestImports...) {
			dep, isOurs := strings.CutPrefix(imp, module+"/")
			if !isOurs || strings.HasPrefix(dep, "internal/") {
				continue
			}
			if !contains(ok, dep) {
				t.Errorf("%s imports %s; allowed: %v", rel, dep, ok)
			}
		}
	}
	if seen != len(allowed) {
		t.Errorf("found %d of the %d layered packages", seen, len(allowed))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
