package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/internal/oracle"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/serving"
)

// reloadSetup is a served model root watched every 50ms: the model
// "cancer" reads the 30 breast-cancer features of `row` entities, whose
// values Redis holds for the rows of two oracle input files.
type reloadSetup struct {
	dir, root string // the config's directory and the models root
	inst      *instance
	xgbIn     *oracle.Table // XGBoost cases' rows: ids 1000+r
	skIn      *oracle.Table // scikit-learn's gb_clf_binary rows: ids 2000+r
}

const (
	xgbRowBase = 1000
	skRowBase  = 2000
)

// cancerVersion describes a version of the model "cancer" to write.
type cancerVersion struct {
	artifact string // under ../../models/testdata
	format   string
	data     []byte           // the artifact's bytes when not the file's
	golden   []map[string]any // golden rows
}

// writeCancerVersion writes the version into root/cancer/<version> the way
// a deployment should: into a hidden directory beside it, renamed into
// place, so that a poll never sees half of it. An existing version is moved
// aside first.
func writeCancerVersion(t *testing.T, root, version string, v cancerVersion, header []string) {
	t.Helper()
	model := filepath.Join(root, "cancer")
	tmp := filepath.Join(model, ".incoming-"+version)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	data := v.data
	if data == nil {
		var err error
		if data, err = os.ReadFile(filepath.Join(modelsTestdata, v.artifact)); err != nil {
			t.Fatal(err)
		}
	}
	art := "model" + filepath.Ext(v.artifact)
	var inputs []map[string]string
	for _, col := range header {
		inputs = append(inputs, map[string]string{"name": featureName(col)})
	}
	man := map[string]any{"name": "cancer", "version": version, "format": v.format, "artifact": art, "inputs": inputs}
	if v.golden != nil {
		man["golden"] = v.golden
	}
	text, err := yaml.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, tmp, map[string]string{art: string(data), "manifest.yaml": string(text)})
	dst := filepath.Join(model, version)
	if _, err := os.Stat(dst); err == nil {
		old := filepath.Join(model, ".old-"+version)
		if err := os.Rename(dst, old); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// goldenRow is row r of in as a golden row scoring want.
func goldenRow(in *oracle.Table, r int, want float64) []map[string]any {
	inputs := map[string]any{}
	for j, col := range in.Header {
		if x := in.Rows[r][j]; !math.IsNaN(x) {
			inputs[featureName(col)] = x
		}
	}
	return []map[string]any{{"inputs": inputs, "scores": []float64{want}}}
}

func startReload(t *testing.T) *reloadSetup {
	t.Helper()
	rs := redistest.Start(t)
	s := &reloadSetup{dir: t.TempDir()}
	s.root = filepath.Join(s.dir, "models")
	s.xgbIn = oracle.Read(t, filepath.Join(modelsTestdata, "xgboost/cancer.input.tsv"))
	s.skIn = oracle.Read(t, filepath.Join(modelsTestdata, "sklearn/gb_clf_binary.input.tsv"))
	for j, col := range s.xgbIn.Header {
		if featureName(col) != featureName(s.skIn.Header[j]) {
			t.Fatalf("column %d: %q and %q", j, col, s.skIn.Header[j])
		}
	}
	var catalog strings.Builder
	catalog.WriteString("entities:\n  row: {key: \"row_{id}\"}\nfeatures:\n")
	for _, col := range s.xgbIn.Header {
		fmt.Fprintf(&catalog, "  - {name: %s, entity: row, type: float, store: main}\n", featureName(col))
	}
	writeFiles(t, s.dir, map[string]string{
		"catalog.yaml": catalog.String(),
		"seer.yaml": fmt.Sprintf(`listen: 127.0.0.1:0
catalog: catalog.yaml
models: models
models_poll: 50ms
stores:
  main: {mode: standalone, addr: %q, read_timeout: 2s}
predict:
  timeout: 5s
  retrieval_timeout: 2s
`, rs.Addr),
	})
	cfg := filepath.Join(s.dir, "seer.yaml")
	var files []string
	for _, up := range []struct {
		name string
		in   *oracle.Table
		base int
	}{{"xgb.csv", s.xgbIn, xgbRowBase}, {"sk.csv", s.skIn, skRowBase}} {
		var csv strings.Builder
		csv.WriteString("id")
		for _, col := range up.in.Header {
			csv.WriteString("," + featureName(col))
		}
		for r, row := range up.in.Rows {
			csv.WriteString("\n" + strconv.Itoa(up.base+r))
			for _, x := range row {
				csv.WriteString(",")
				if !math.IsNaN(x) {
					csv.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
				}
			}
		}
		writeFiles(t, s.dir, map[string]string{up.name: csv.String() + "\n"})
		files = append(files, filepath.Join(s.dir, up.name))
	}
	upload(t, cfg, "row", files...) // one generation of the features both files share
	xgbWant := oracle.Read(t, filepath.Join(modelsTestdata, "xgboost/binary_logistic.expected.tsv"))
	writeCancerVersion(t, s.root, "1", cancerVersion{artifact: "xgboost/binary_logistic.json", format: "xgboost",
		golden: goldenRow(s.xgbIn, 0, xgbWant.Rows[0][0])}, s.xgbIn.Header)
	s.inst = serve(t, cfg)
	return s
}

// predict scores rows base..base+n-1 with the model reference, returning
// the version that answered and the scores, or the status and error.
func (s *reloadSetup) predict(t *testing.T, ref string, base, n int) (string, []float64, int, string) {
	t.Helper()
	cands := make([]string, n)
	for r := range n {
		cands[r] = fmt.Sprintf(`{"entities": {"row": "%d"}}`, base+r)
	}
	body := fmt.Sprintf(`{"queries": [{"model": %q, "candidates": [%s]}]}`, ref, strings.Join(cands, ","))
	var ans predictAnswer
	code := post(t, s.inst.url+"/v1/predict", body, &ans)
	if code != 200 {
		return "", nil, code, ans.Error
	}
	return ans.Results[0].Version, floats(t, ans.Results[0].Scores), code, ""
}

// models returns /v1/models.
func (s *reloadSetup) models(t *testing.T) serving.ModelList {
	t.Helper()
	var body serving.ModelList
	if code := get(t, s.inst.url+"/v1/models", &body); code != 200 {
		t.Fatalf("/v1/models: status %d", code)
	}
	return body
}

// cancerVersions returns the loaded versions of "cancer" and its default.
func (s *reloadSetup) cancerVersions(t *testing.T) (versions []string, def string) {
	t.Helper()
	for _, m := range s.models(t).Models {
		if m.Name == "cancer" {
			for _, v := range m.Versions {
				versions = append(versions, v.Version)
			}
			return versions, m.Default
		}
	}
	return nil, ""
}

var failedLoads = regexp.MustCompile(`(?m)^seer_registry_loads_total\{result="failed"\} (\d+)$`)

// failedLoads returns seer_registry_loads_total{result="failed"}.
func (s *reloadSetup) failedLoads(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(s.inst.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := failedLoads.FindSubmatch(text)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// waitFor polls cond until it holds, failing the test after a deadline
// with cond's last description of what it saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up; last saw %s", what, saw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkScores compares scores with the first rows of an expected file.
func checkScores(t *testing.T, label string, got []float64, want *oracle.Table, close func(g, w float64) bool) {
	t.Helper()
	for r, g := range got {
		if w := want.Rows[r][0]; !close(g, w) {
			t.Errorf("%s: row %d: got %.17g, want %.17g", label, r+1, g, w)
		}
	}
}

// TestReloadEndToEnd swaps model versions under a running seer: a good
// version 2 replaces 1; a corrupt version 3, then one that fails its golden
// row, are refused while 2 keeps serving; a fixed 3 loads; removing 3
// unloads it; and an alias pins the bare name to 1. A client scores the
// bare name throughout and never sees an error.
func TestReloadEndToEnd(t *testing.T) {
	s := startReload(t)
	xgbWant := oracle.Read(t, filepath.Join(modelsTestdata, "xgboost/binary_logistic.expected.tsv"))
	skWant := oracle.Read(t, filepath.Join(modelsTestdata, "sklearn/gb_clf_binary.expected.tsv"))
	const n = 40

	ver, v1, code, msg := s.predict(t, "cancer", xgbRowBase, n)
	if code != 200 || ver != "1" {
		t.Fatalf("version 1: %d %s, version %q", code, msg, ver)
	}
	checkScores(t, "version 1", v1, xgbWant, xgbFloat32(true))
	_, v1sk, _, _ := s.predict(t, "cancer", skRowBase, n)

	// A client keeps scoring the bare name while versions come and go.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var clientMu sync.Mutex
	var clientErrs []string
	seen := map[string]int{}
	wg.Go(func() {
		body := fmt.Sprintf(`{"queries": [{"model": "cancer", "candidates": [{"entities": {"row": "%d"}}]}]}`, skRowBase)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Post(s.inst.url+"/v1/predict", "application/json", strings.NewReader(body))
			var ans predictAnswer
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&ans)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, ans.Error)
				}
			}
			clientMu.Lock()
			if err != nil {
				clientErrs = append(clientErrs, err.Error())
			} else {
				seen[ans.Results[0].Version]++
			}
			clientMu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	var once sync.Once
	stopClient := func() {
		once.Do(func() {
			close(stop)
			wg.Wait()
		})
	}
	t.Cleanup(stopClient) // before serve's cleanup stops the server
	clientSaw := func(v string) {
		t.Helper()
		waitFor(t, "the client to see version "+v, func() (bool, string) {
			clientMu.Lock()
			defer clientMu.Unlock()
			return seen[v] > 0, fmt.Sprintf("versions %v, errors %q", seen, clientErrs)
		})
	}
	clientSaw("1")

	// Version 2, another model (scikit-learn), becomes the default.
	writeCancerVersion(t, s.root, "2", cancerVersion{artifact: "sklearn/gb_clf_binary.json", format: "sklearn",
		golden: goldenRow(s.skIn, 0, skWant.Rows[0][0])}, s.skIn.Header)
	waitFor(t, "version 2 to be the default", func() (bool, string) {
		vs, def := s.cancerVersions(t)
		return def == "2", fmt.Sprintf("versions %v, default %q", vs, def)
	})
	ver, v2, code, msg := s.predict(t, "cancer", skRowBase, n)
	if code != 200 || ver != "2" {
		t.Fatalf("after adding 2: %d %s, version %q", code, msg, ver)
	}
	checkScores(t, "version 2", v2, skWant, sklearnClose)
	clientSaw("2")
	if slices.Equal(v2, v1sk) {
		t.Fatal("versions 1 and 2 give the same scores: the swap is not tested")
	}
	if ver, got, _, _ := s.predict(t, "cancer@1", xgbRowBase, n); ver != "1" || !slices.Equal(got, v1) {
		t.Errorf("cancer@1 after the swap: version %q, scores changed %v", ver, !slices.Equal(got, v1))
	}

	// refused checks that version 3 is listed as failed with the reason,
	// counted once more, and not served, while 2 keeps serving.
	refused := func(reason string, failedBefore int) {
		t.Helper()
		dir3 := filepath.Join("cancer", "3") // relative to the models root
		waitFor(t, "version 3 to be refused", func() (bool, string) {
			for _, f := range s.models(t).Failures {
				if f.Dir == dir3 && strings.Contains(strings.Join(f.Error, "; "), reason) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("failures %+v", s.models(t).Failures)
		})
		if got := s.failedLoads(t); got != failedBefore+1 {
			t.Errorf("seer_registry_loads_total{result=\"failed\"}: got %d, want %d", got, failedBefore+1)
		}
		if vs, def := s.cancerVersions(t); def != "2" || slices.Contains(vs, "3") {
			t.Errorf("versions %v, default %q; want 2 serving and no 3", vs, def)
		}
		ver, got, code, msg := s.predict(t, "cancer", skRowBase, n)
		if code != 200 || ver != "2" || !slices.Equal(got, v2) {
			t.Errorf("bare name: %d %s, version %q", code, msg, ver)
		}
		if _, _, code, msg := s.predict(t, "cancer@3", skRowBase, 1); code != http.StatusNotFound || !strings.Contains(msg, `unknown model version "3"`) {
			t.Errorf("cancer@3: got %d %q, want 404", code, msg)
		}
	}

	// A corrupt artifact: a truncated UBJSON model.
	ubj, err := os.ReadFile(filepath.Join(modelsTestdata, "xgboost/binary_logistic.ubj"))
	if err != nil {
		t.Fatal(err)
	}
	failed := s.failedLoads(t)
	good3 := cancerVersion{artifact: "xgboost/binary_logistic.ubj", format: "xgboost", golden: goldenRow(s.xgbIn, 1, xgbWant.Rows[1][0])}
	corrupt := good3
	corrupt.data = ubj[:len(ubj)*2/3]
	writeCancerVersion(t, s.root, "3", corrupt, s.xgbIn.Header)
	refused("load model.ubj: bad model artifact", failed)

	// A manifest whose golden row the model does not reproduce.
	failed = s.failedLoads(t)
	wrongGolden := good3
	wrongGolden.golden = goldenRow(s.xgbIn, 1, xgbWant.Rows[1][0]+0.01)
	writeCancerVersion(t, s.root, "3", wrongGolden, s.xgbIn.Header)
	refused("golden row 1", failed)

	// Fixed: version 3 loads and becomes the default.
	writeCancerVersion(t, s.root, "3", good3, s.xgbIn.Header)
	waitFor(t, "version 3 to load", func() (bool, string) {
		body := s.models(t)
		for _, m := range body.Models {
			if m.Name == "cancer" && m.Default == "3" {
				return len(body.Failures) == 0, fmt.Sprintf("failures %+v", body.Failures)
			}
		}
		return false, fmt.Sprintf("models %+v, failures %+v", body.Models, body.Failures)
	})
	ver, v3, code, msg := s.predict(t, "cancer", xgbRowBase, n)
	if code != 200 || ver != "3" {
		t.Fatalf("after fixing 3: %d %s, version %q", code, msg, ver)
	}
	checkScores(t, "version 3", v3, xgbWant, xgbFloat32(true))
	clientSaw("3")

	// Removing version 3 unloads it: 2 serves again.
	if err := os.RemoveAll(filepath.Join(s.root, "cancer", "3")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "version 3 to unload", func() (bool, string) {
		vs, def := s.cancerVersions(t)
		return def == "2" && !slices.Contains(vs, "3"), fmt.Sprintf("versions %v, default %q", vs, def)
	})
	if _, _, code, _ := s.predict(t, "cancer@3", skRowBase, 1); code != http.StatusNotFound {
		t.Errorf("cancer@3 after removal: status %d, want 404", code)
	}

	// aliases.yaml pins the bare name to version 1.
	alias := filepath.Join(s.root, "cancer", "aliases.yaml")
	writeFiles(t, filepath.Dir(alias), map[string]string{".aliases.tmp": "production: 1\ncanary: 2\n"})
	if err := os.Rename(filepath.Join(filepath.Dir(alias), ".aliases.tmp"), alias); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the alias to pin version 1", func() (bool, string) {
		vs, def := s.cancerVersions(t)
		return def == "1", fmt.Sprintf("versions %v, default %q", vs, def)
	})
	ver, got, code, msg := s.predict(t, "cancer", xgbRowBase, n)
	if code != 200 || ver != "1" || !slices.Equal(got, v1) {
		t.Errorf("pinned bare name: %d %s, version %q", code, msg, ver)
	}
	if ver, _, code, _ := s.predict(t, "cancer@canary", skRowBase, 1); code != 200 || ver != "2" {
		t.Errorf("cancer@canary: %d, version %q", code, ver)
	}
	stopClient()
	clientMu.Lock()
	defer clientMu.Unlock()
	if len(clientErrs) > 0 {
		t.Errorf("the client saw %d errors, first: %s", len(clientErrs), clientErrs[0])
	}
	t.Logf("client requests answered by version: %v", seen)
}
