package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seer-ml/seer/internal/redistest"
)

// testCommandLine runs the binary with good and bad command lines: exit
// status 0, 1 or 2, errors of one line ending in a newline, help on
// stdout.
func testCommandLine(t *testing.T, bin string) {
	root, _ := filepath.Abs("../../configs/quickstart")
	version := root + "/models/store_ranker/1"
	tests := []struct {
		args   []string
		code   int
		stdout string // a substring of stdout
		stderr string // a substring of the one line on stderr
	}{
		{[]string{"--help"}, 0, "usage: seer <command>", ""},
		{[]string{"--version"}, 0, "seer ", ""},
		{[]string{"version"}, 0, "seer ", ""},
		{[]string{"serve", "--help"}, 0, "usage: seer serve --config FILE", ""},
		{[]string{"upload", "-h"}, 0, "arguments:\n  FILE|DIR...", ""},
		{[]string{"validate", "--help"}, 0, "  DIR  a model version directory", ""},
		{[]string{"simulate", "--help"}, 0, "TRACE...", ""},
		{[]string{"validate", version, "--catalog", root + "/catalog.yaml"}, 0, "ok: store_ranker@1", ""},
		{[]string{"validate", "--catalog", root + "/catalog.yaml", "--", version}, 0, "ok: store_ranker@1", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"serve", "--bogus"}, 2, "", "serve: flag provided but not defined: -bogus (seer serve --help)"},
		{[]string{"serve", "extra", "--config", "x.yaml"}, 2, "", `serve takes no arguments, got "extra"`},
		{[]string{"upload", "--config", "x.yaml"}, 2, "", "upload needs --config FILE, --entity NAME and at least one file"},
		{[]string{"validate", "a", "b"}, 2, "", "validate needs one model version directory"},
		{[]string{"validate", root + "/nowhere"}, 1, "", "nowhere"},
		{[]string{"serve", "--config", root + "/none.yaml"}, 1, "", "config: open"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, tt.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) {
			t.Errorf("seer %v: exit %d, stdout %q; want %d and %q", tt.args, code, stdout.String(), tt.code, tt.stdout)
		}
		if tt.code == 0 {
			continue
		}
		// One line (after the validate problems or the usage, if any),
		// ending in a newline, without a repeated prefix.
		out := stderr.String()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		last := lines[len(lines)-1]
		if !strings.HasSuffix(out, "\n") || !strings.HasPrefix(last, "seer: ") || !strings.Contains(last, tt.stderr) ||
			strings.Count(last, "seer: ") != 1 || strings.Contains(last, "usage: ") {
			t.Errorf("seer %v: stderr %q, want one line with %q", tt.args, out, tt.stderr)
		}
	}
}

// TestUploadFlagsAnywhere: seer upload takes its flags after the files.
func TestUploadFlagsAnywhere(t *testing.T) {
	rs := redistest.Start(t)
	cfg := demoSetup(t, rs.Addr, demoCatalog)
	dir := filepath.Dir(cfg)
	writeFiles(t, dir, map[string]string{"s.csv": "id,store_avg_rating\n1,4.5\n2,3\n"})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"upload", filepath.Join(dir, "s.csv"), "--entity", "store", "--config", cfg}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2 rows") {
		t.Errorf("output %q", out.String())
	}
	if n, _ := rs.Client().Exists(context.Background(), "st_1", "st_2").Result(); n != 2 {
		t.Errorf("%d of the 2 store keys written", n)
	}
}
