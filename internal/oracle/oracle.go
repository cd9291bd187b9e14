// Package oracle finds the shared model oracles (model files with the
// predictions their own libraries made) and reads their TSV files. Tests use
// it; the oracles are read in place, never copied into the repository.
package oracle

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seer-ml/seer/internal/testenv"
)

// EnvDir names the environment variable that overrides where the oracles are.
const EnvDir = "SEER_ORACLES"

// Dir returns the oracles directory: $SEER_ORACLES, or ../shared/oracles
// beside the repository. When it is missing the test fails under CI (the
// CI environment variable is set) and is skipped elsewhere, saying so in
// go test's output even without -v.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := find()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	return dir
}

// Find returns the oracles directory and true, or, when it is missing,
// fails the test under CI and elsewhere says so loudly (without skipping)
// and returns false: for a fuzz target that also has committed seeds.
func Find(t testing.TB) (string, bool) {
	t.Helper()
	dir, err := find()
	if err == nil {
		return dir, true
	}
	if os.Getenv("CI") != "" {
		t.Fatal(err)
	}
	testenv.Notice(t, err.Error()+"; fuzzing with the committed seeds only")
	return "", false
}

func find() (string, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", fmt.Errorf("oracles: %v", err)
		}
		dir = filepath.Join(root, "..", "shared", "oracles")
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("ORACLES MISSING: %v (set %s to the oracles directory)", err, EnvDir)
	}
	return dir, nil
}

// Path returns the path of a file under the oracles directory, failing the
// test (never skipping) when the directory exists but the file does not.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{Dir(t)}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("oracle file: %v", err)
	}
	return p
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Table is a TSV file of numbers with a header row.
type Table struct {
	Header []string
	Rows   [][]float64
}

// ReadTSV reads a tab-separated file whose first line names the columns and
// whose other lines are numbers; "NaN" (and an empty cell) is NaN.
func ReadTSV(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var t Table
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if line == 1 {
			t.Header = strings.Split(text, "\t")
			continue
		}
		if text == "" {
			continue
		}
		cells := strings.Split(text, "\t")
		if len(cells) != len(t.Header) {
			return nil, fmt.Errorf("%s:%d: %d cells, header has %d", path, line, len(cells), len(t.Header))
		}
		row := make([]float64, len(cells))
		for i, c := range cells {
			if c == "" || c == "NaN" || c == "nan" {
				row[i] = nan()
				continue
			}
			v, err := strconv.ParseFloat(c, 64)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: column %s: %v", path, line, t.Header[i], err)
			}
			row[i] = v
		}
		t.Rows = append(t.Rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if line == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return &t, nil
}

// Read is ReadTSV that fails the test on error.
func Read(t testing.TB, path string) *Table {
	t.Helper()
	tab, err := ReadTSV(path)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func nan() float64 { return math.NaN() }
