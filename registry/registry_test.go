package registry

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
)

const quickstart = "../configs/quickstart"

func catalog(t *testing.T) *features.Catalog {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(quickstart, "catalog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := features.ParseCatalog(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeVersion copies the quickstart's store_ranker version 1 into
// root/store_ranker/<version>, rewriting the manifest's version, and lets
// edit change the manifest text.
func writeVersion(t *testing.T, root, version string, edit func(string) string) string {
	t.Helper()
	src := filepath.Join(quickstart, "models", "store_ranker", "1")
	dst := filepath.Join(root, "store_ranker", version)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.txt", ManifestFile} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == ManifestFile {
			text := strings.Replace(string(data), `version: "1"`, `version: "`+version+`"`, 1)
			if edit != nil {
				text = edit(text)
			}
			data = []byte(text)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func resolveVersion(t *testing.T, r *Registry, ref string) string {
	t.Helper()
	v, err := r.Snapshot().Resolve(ref)
	if err != nil {
		t.Fatalf("resolve %s: %v", ref, err)
	}
	return v.Version
}

func TestOpenResolve(t *testing.T) {
	root := t.TempDir()
	writeVersion(t, root, "1", nil)
	writeVersion(t, root, "2", nil)
	writeVersion(t, root, "10", nil)
	r, err := Open(catalog(t), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := resolveVersion(t, r, "store_ranker"); got != "10" {
		t.Errorf("default version: got %s, want 10 (numeric order)", got)
	}
	if got := resolveVersion(t, r, "store_ranker@2"); got != "2" {
		t.Errorf("pinned: got %s, want 2", got)
	}
	for ref, want := range map[string]error{
		"nope":            ErrUnknownModel,
		"store_ranker@9":  ErrUnknownVersion,
		"nope@1":          ErrUnknownModel,
		"store_ranker@":   ErrUnknownVersion,
		"@1":              ErrUnknownModel,
		"store_ranker@v1": ErrUnknownVersion,
	} {
		if _, err := r.Snapshot().Resolve(ref); !errors.Is(err, want) {
			t.Errorf("resolve %q: got %v, want %v", ref, err, want)
		}
	}
}

func TestAliasPinsDefault(t *testing.T) {
	root := t.TempDir()
	writeVersion(t, root, "1", nil)
	writeVersion(t, root, "2", nil)
	alias := filepath.Join(root, "store_ranker", AliasFile)
	if err := os.WriteFile(alias, []byte("production: 1\ncanary: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(catalog(t), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := resolveVersion(t, r, "store_ranker"); got != "1" {
		t.Errorf("default: got %s, want the pinned 1", got)
	}
	if got := resolveVersion(t, r, "store_ranker@canary"); got != "2" {
		t.Errorf("canary: got %s, want 2", got)
	}
	// Pinning a version that is not loaded keeps the previous default and
	// reports the problem.
	if err := os.WriteFile(alias, []byte("production: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := resolveVersion(t, r, "store_ranker"); got != "1" {
		t.Errorf("after a bad pin: got %s, want 1 still", got)
	}
	if f := r.Snapshot().Failures(); len(f) != 1 || !strings.Contains(f[0].Error[0], `"7"`) {
		t.Errorf("failures: got %+v, want the bad pin", f)
	}
}

func TestOpenRefusesBadVersion(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"unknown feature", func(s string) string {
			return strings.Replace(s, "- name: store_num_ratings", "- name: store_num_ratingz", 1)
		}, "store_num_ratingz"},
		{"input count", func(s string) string {
			return strings.Replace(s, "  - name: store_num_ratings\n", "", 1)
		}, "8 inputs"},
		{"golden mismatch", func(s string) string {
			return strings.Replace(s, "0.45205320553386213", "0.5", 1)
		}, "golden row 1"},
		{"artifact escapes", func(s string) string {
			return strings.Replace(s, "artifact: model.txt", "artifact: ../1/model.txt", 1)
		}, "inside the version directory"},
		{"unknown key", func(s string) string { return s + "extra: 1\n" }, "extra"},
		{"wrong format", func(s string) string {
			return strings.Replace(s, "format: lightgbm", "format: xgboost", 1)
		}, "xgboost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeVersion(t, root, "1", tt.edit)
			_, err := Open(catalog(t), Options{Root: root})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadVersionListsEveryProblem(t *testing.T) {
	root := t.TempDir()
	dir := writeVersion(t, root, "1", func(s string) string {
		s = strings.Replace(s, `version: "1"`, `version: "2"`, 1)
		return strings.Replace(s, "- name: store_num_ratings", "- name: store_num_ratingz", 1)
	})
	_, err := LoadVersion(dir, catalog(t))
	lines := ProblemLines(err)
	if len(lines) < 2 {
		t.Fatalf("got %q, want the version mismatch and the unknown feature", lines)
	}
	if !errors.Is(err, features.ErrPlan) || !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not wrap both ErrPlan and ErrInvalid", err)
	}
}

// TestReload swaps a good new version in, keeps it serving when a corrupt
// change to it is refused, and unloads a removed version.
func TestReload(t *testing.T) {
	root := t.TempDir()
	writeVersion(t, root, "1", nil)
	r, err := Open(catalog(t), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	before := r.Snapshot()

	dir2 := writeVersion(t, root, "2", nil)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := resolveVersion(t, r, "store_ranker"); got != "2" {
		t.Fatalf("after adding 2: default %s", got)
	}
	if _, err := before.Resolve("store_ranker@2"); err == nil {
		t.Error("an old snapshot changed: snapshots must be immutable")
	}
	good, _ := r.Snapshot().Resolve("store_ranker@2")

	// Corrupt version 2's artifact: the reload reports it and 2 keeps serving.
	later := time.Now().Add(time.Second)
	if err := os.WriteFile(filepath.Join(dir2, "model.txt"), []byte("tree\nversion=v3\nnum_class=1\ngarbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir2, "model.txt"), later, later)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	got, err := r.Snapshot().Resolve("store_ranker@2")
	if err != nil || got != good {
		t.Fatalf("after a corrupt change: got %v, %v; want the good version 2 still serving", got, err)
	}
	if f := r.Snapshot().Failures(); len(f) != 1 || f[0].Dir != dir2 {
		t.Fatalf("failures: got %+v, want version 2's", f)
	}
	// Polling again does not retry the unchanged broken files.
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if f := r.Snapshot().Failures(); len(f) != 1 {
		t.Fatalf("failures after a second poll: %+v", f)
	}

	// Removing a version unloads it.
	if err := os.RemoveAll(dir2); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := resolveVersion(t, r, "store_ranker"); got != "1" {
		t.Fatalf("after removing 2: default %s, want 1", got)
	}
	if f := r.Snapshot().Failures(); len(f) != 0 {
		t.Fatalf("failures after removal: %+v", f)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"2", "10", -1}, {"10", "2", 1}, {"3", "3", 0}, {"2", "a", -1}, {"b", "a", 1}, {"2024-01", "2024-02", -1},
	} {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestLoadVersionSecondEvaluation loads LightGBM versions whose model is
// also scored by leaves: the quickstart's agrees on its golden rows and
// the probe rows; one where the two evaluators part ways is refused.
func TestLoadVersionSecondEvaluation(t *testing.T) {
	v, err := LoadVersion(writeVersion(t, t.TempDir(), "1", nil), catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + models.ProbeCount; v.Verified.Rows != want || v.Verified.Unchecked != "" || v.Warnings != nil {
		t.Errorf("verified %+v, warnings %q; want %d rows, nothing unchecked, no warnings", v.Verified, v.Warnings, want)
	}

	// LightGBM counts inputs within ±1e-35 as float32 (1.0000000180025095e-35)
	// as missing in a split with zero as missing, and leaves within ±1e-35:
	// on 1.000000001e-35, the first split of this model goes its default
	// way (left) for seer and LightGBM, right for leaves.
	tiny, err := os.ReadFile("../models/testdata/lightgbm/tiny.txt")
	if err != nil {
		t.Fatal(err)
	}
	model := strings.Replace(string(tiny), "threshold=0.5 0 10", "threshold=-1 0 10", 1)
	model = strings.Replace(model, "decision_type=2 9 10", "decision_type=6 9 10", 1)
	dir := filepath.Join(t.TempDir(), "tiny", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `name: tiny
version: "1"
format: lightgbm
artifact: model.txt
inputs:
  - {name: amount, source: request, type: float}
  - {name: category, source: request, type: float}
  - {name: score, source: request, type: float}
golden:
  - inputs: {amount: 1.000000001e-35, category: 3, score: 1}
    scores: [0.53991488455556569] # sigmoid(0.1 + 0.05 + 0.01)
`
	for name, text := range map[string]string{"model.txt": model, ManifestFile: manifest} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = LoadVersion(dir, catalog(t))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want a problem wrapping ErrInvalid", err)
	}
	lines := ProblemLines(err)
	if len(lines) != 1 || !strings.Contains(lines[0], "second evaluation: evaluators disagree: row 1, output 0") {
		t.Errorf("problems %q, want one naming the second evaluation and the golden row", lines)
	}
}

// TestLargeArtifactMemoryReturned loads a version whose 64 MiB artifact
// is a valid beginning followed by junk: once it is refused, the
// collector's goal no longer counts the artifact's buffer, so that a
// serving process's own garbage cannot grow the heap to twice the
// artifact's size (issue 8: the soak run saw +399 MiB of RSS for a
// 200 MiB file).
func TestLargeArtifactMemoryReturned(t *testing.T) {
	root := t.TempDir()
	dir := writeVersion(t, root, "2", nil)
	good, err := os.ReadFile(filepath.Join(dir, "model.txt"))
	if err != nil {
		t.Fatal(err)
	}
	junk := append(good[:len(good)/2:len(good)/2], bytes.Repeat([]byte("junk "), 64<<20/5)...)
	if err := os.WriteFile(filepath.Join(dir, "model.txt"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	junk, good = nil, nil
	runtime.GC()
	if _, err := LoadVersion(dir, catalog(t)); !errors.Is(err, models.ErrArtifact) {
		t.Fatalf("LoadVersion = %v, want an error wrapping models.ErrArtifact", err)
	}
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if goal := s[0].Value.Uint64(); goal > 32<<20 {
		t.Errorf("after a 64 MiB artifact was refused the heap goal is %d MiB, want at most 32", goal>>20)
	}
}
