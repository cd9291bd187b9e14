package retrieval

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the package's dependencies pointing one way: of seer's
// packages, retrieval imports features only (its tests may use
// internal/redistest).
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/seer-ml/seer/"
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(path, module) {
				continue
			}
			allowed := path == module+"features" ||
				(strings.HasSuffix(name, "_test.go") && path == module+"internal/redistest")
			if !allowed {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}
