package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/seer-ml/seer/serving"
)

// TestDocsConfigKeys holds docs/config.md to the configuration file's
// keys: every key seer reads has a row in one of its tables, and every
// row names a key seer reads. A row names a key from its section's root
// (`tls.ca_file` under Stores), so a row matches a key whose path ends
// with it.
func TestDocsConfigKeys(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, m := range regexp.MustCompile("(?m)^\\| (`[^|]*`) \\|").FindAllStringSubmatch(string(doc), -1) {
		for _, k := range strings.Split(m[1], ", ") {
			rows = append(rows, strings.Trim(k, "`"))
		}
	}
	if len(rows) < 50 {
		t.Fatalf("%d rows of keys in docs/config.md: its tables have changed shape", len(rows))
	}
	var keys, leaves []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for _, f := range reflect.VisibleFields(typ) {
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || f.Anonymous {
				continue
			}
			if strings.Contains(opts, "inline") {
				walk(prefix, f.Type)
				continue
			}
			key := prefix + name
			keys = append(keys, key)
			elem := f.Type
			for elem.Kind() == reflect.Pointer || elem.Kind() == reflect.Slice || elem.Kind() == reflect.Map {
				elem = elem.Elem()
			}
			if elem.Kind() == reflect.Struct && elem.PkgPath() != "time" && elem != reflect.TypeFor[serving.Seed]() {
				walk(key+".", elem)
			} else {
				leaves = append(leaves, key)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	names := func(key, row string) bool { return key == row || strings.HasSuffix(key, "."+row) }
	for _, k := range leaves {
		if k == "stores.password" {
			// Read only to be refused, which password_env's row says.
			if !strings.Contains(string(doc), "A `password` key is refused") {
				t.Errorf("%s: docs/config.md does not say it is refused", k)
			}
			continue
		}
		if !slices.ContainsFunc(rows, func(r string) bool { return names(k, r) }) {
			t.Errorf("%s: no row of docs/config.md", k)
		}
	}
	for _, r := range rows {
		if !slices.ContainsFunc(keys, func(k string) bool { return names(k, r) }) {
			t.Errorf("docs/config.md has a row of %s, which seer does not read", r)
		}
	}
}

// TestDocsMetrics holds docs/api.md's list of metrics (under GET /metrics)
// to the metrics seer's code declares: every name given to a Prometheus
// metric in a non-test source file is in it, and every seer_ name in it
// is declared.
func TestDocsMetrics(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	name := regexp.MustCompile(`\bName:\s+"(seer_[a-z0-9_]+)"`)
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return fs.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		for _, m := range name.FindAllSubmatch(src, -1) {
			declared[string(m[1])] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(declared) < 30 {
		t.Fatalf("%d metrics declared: the pattern no longer finds them", len(declared))
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(seer_[a-z0-9_]+)[`{]").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	for n := range declared {
		if !documented[n] {
			t.Errorf("%s: not in docs/api.md", n)
		}
	}
	for n := range documented {
		if !declared[n] {
			t.Errorf("docs/api.md names %s, which seer does not declare", n)
		}
	}
}
