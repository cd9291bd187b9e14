package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seer-ml/seer/internal/redistest"
)

// uploadCmd runs seer upload with args and returns its output and error.
func uploadCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), append([]string{"upload"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

// TestUploadGenerationsCLI goes through an upload's life from the command
// line against a serving seer: upload, a second generation with a
// progress line, --status, --rollback, --dry-run, --gc.
func TestUploadGenerationsCLI(t *testing.T) {
	rs := redistest.Start(t)
	cfg := demoSetup(t, rs.Addr, demoCatalog)
	dir := filepath.Dir(cfg)
	var v1, v2 strings.Builder
	v1.WriteString("id,store_avg_rating,store_num_ratings\n")
	v2.WriteString("id,store_avg_rating\n")
	for id := 1; id <= 300; id++ {
		fmt.Fprintf(&v1, "%d,%d.5,%d\n", id, id%5, id)
		fmt.Fprintf(&v2, "%d,%d.25\n", id, id%5)
	}
	writeFiles(t, dir, map[string]string{"v1.csv": v1.String(), "v2.csv": v2.String()})
	out, _, err := uploadCmd(t, "--config", cfg, "--entity", "store", filepath.Join(dir, "v1.csv"))
	if err != nil || !strings.Contains(out, "v1.csv: 300 rows, 600 values") || !strings.Contains(out, "switched to generation 1 on store main") {
		t.Fatalf("first upload: %v\n%s", err, out)
	}
	inst := serve(t, cfg)
	read := func() string {
		var ans struct {
			Results []struct {
				Rows []map[string]struct {
					Value  any
					Source string
				}
			}
		}
		body := `{"queries": [{"features": ["store_avg_rating", "store_num_ratings"], "context": {"store": 7}}]}`
		if code := post(t, inst.url+"/v1/features", body, &ans); code != 200 {
			t.Fatalf("status %d", code)
		}
		row := ans.Results[0].Rows[0]
		return fmt.Sprint(row["store_avg_rating"].Value, " ", row["store_num_ratings"].Value)
	}
	eventually := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := read(); got != want; got = read() {
			if time.Now().After(deadline) {
				t.Fatalf("served %s, want %s", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually("2.5 7")

	// The second generation, with its progress line.
	out, errOut, err := uploadCmd(t, "--config", cfg, "--entity", "store", "--progress", "on", filepath.Join(dir, "v2.csv"))
	if err != nil || !strings.Contains(out, "switched to generation 2 on store main") {
		t.Fatalf("second upload: %v\n%s", err, out)
	}
	if !strings.Contains(errOut, "rows, ") || !strings.Contains(errOut, "values/s") || !strings.HasPrefix(errOut, "\r") {
		t.Errorf("progress line: %q", errOut)
	}
	eventually("2.25 7") // store_num_ratings keeps its generation

	out, _, err = uploadCmd(t, "--config", cfg, "--status", "store_avg_rating", "store_num_ratings")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "FEATURE") ||
		!strings.Contains(strings.Join(strings.Fields(lines[1]), " "), "store_avg_rating main 2 ") ||
		!strings.Contains(lines[1], " 300 ") || !strings.Contains(strings.Join(strings.Fields(lines[2]), " "), "store_num_ratings main 1 ") {
		t.Errorf("status:\n%s", out)
	}

	out, _, err = uploadCmd(t, "--config", cfg, "--rollback", "store_avg_rating")
	if err != nil || !strings.Contains(out, "store_avg_rating: generation 1 is current again (was 2)") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	eventually("2.5 7")

	// A dry run of a bad file: an error, nothing written.
	writeFiles(t, dir, map[string]string{"bad.csv": "id,store_avg_rating\n1,x\n"})
	if _, _, err := uploadCmd(t, "--config", cfg, "--entity", "store", "--dry-run", filepath.Join(dir, "bad.csv")); err == nil || !strings.Contains(err.Error(), "bad.csv:2: column store_avg_rating") {
		t.Errorf("dry run of a bad file: %v", err)
	}
	out, _, err = uploadCmd(t, "--config", cfg, "--entity", "store", "--dry-run", filepath.Join(dir, "v2.csv"))
	if err != nil || !strings.Contains(out, "checked (dry run, nothing written) 300 rows") {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	// Generation 0 of store_avg_rating stopped being served at the second
	// upload: kept for a minute by default, at once with --gc-grace 0.
	out, _, err = uploadCmd(t, "--config", cfg, "--gc")
	if err != nil || !strings.Contains(out, "collected 0 generations") {
		t.Errorf("gc: %v\n%s", err, out)
	}
	out, _, err = uploadCmd(t, "--config", cfg, "--gc", "--gc-grace", "0s")
	if err != nil || !strings.Contains(out, "collected 1 generations") {
		t.Errorf("gc --gc-grace 0s: %v\n%s", err, out)
	}
	eventually("2.5 7")

	for _, args := range [][]string{
		{"--config", cfg, "--rollback"},
		{"--config", cfg, "--status", "--gc"},
		{"--config", cfg, "--entity", "store", "--status"},
		{"--config", cfg, "--entity", "store", "--dry-run", "--in-place", "x.csv"},
		{"--config", cfg, "--gc", "--gc-grace", "-1s"},
	} {
		if _, _, err := uploadCmd(t, args...); err == nil || !strings.Contains(err.Error(), "upload") {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
