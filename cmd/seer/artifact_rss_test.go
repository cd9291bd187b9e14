package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/seer-ml/seer/models"
)

// TestJunkArtifactPeakRSS drops junk artifacts of every format into a
// models root and has the real binary load each (seer validate runs the
// registry's load), measuring the child's peak RSS (getrusage's ru_maxrss,
// the kernel's VmHWM of the process). Refusing junk may cost the file's
// bytes and at most 64 MiB more. The files are 100 MiB, so that an extra
// copy of them would break the bound; docs/models.md promises the looser
// format cap + 64 MiB.
func TestJunkArtifactPeakRSS(t *testing.T) {
	bin := buildSeer(t)
	const catalog = "../../configs/quickstart/catalog.yaml"
	quick := "../../configs/quickstart/models/store_ranker/1"
	root := t.TempDir()

	const size = 100 << 20
	const slack = 64 << 20
	lgb := readTestFile(t, filepath.Join(quick, "model.txt"))
	xgbJSON := readTestFile(t, "../../models/testdata/xgboost/binary_logistic.json")
	xgbUBJ := readTestFile(t, "../../models/testdata/xgboost/binary_logistic.ubj")
	skl := readTestFile(t, "../../models/testdata/sklearn/dt_reg.json")
	onnx := readTestFile(t, "../../models/testdata/onnx/mlp_64_256_128_1.opset17.onnx")
	tests := []struct {
		name, format, file string
		size               int64 // the artifact's size
		write              func(w io.Writer)
		want               string // in the error
	}{
		{"lightgbm-random", models.FormatLightGBM, "model.txt", size, nil, "not a LightGBM text model"},
		{"lightgbm-oversized", models.FormatLightGBM, "model.txt", 8 << 30, nil, "over the limit"},
		{"lightgbm-prefix", models.FormatLightGBM, "model.txt", size, prefixThenJunk(lgb[:bytes.Index(lgb, []byte("Tree=1"))]), "truncated"},
		{"lightgbm-newlines", models.FormatLightGBM, "model.txt", size, prefixThenRepeat(lgb[:bytes.Index(lgb, []byte("Tree=0"))], "\n"), "no trees"},
		{"lightgbm-truncated", models.FormatLightGBM, "model.txt", size, lightGBMTrees(lgb, size, ""), "truncated"},
		{"lightgbm-broken-tail", models.FormatLightGBM, "model.txt", size, lightGBMTrees(lgb, size, "num_leaves=-1\nnum_cat=0"), "num_leaves -1"},
		{"xgboost-random", models.FormatXGBoost, "model.json", size, nil, "not an XGBoost model"},
		{"xgboost-oversized", models.FormatXGBoost, "model.json", 8 << 30, nil, "over the limit"},
		{"xgboost-prefix", models.FormatXGBoost, "model.json", size, prefixThenJunk(xgbJSON[:len(xgbJSON)/2]), "xgboost"},
		{"xgboost-truncated", models.FormatXGBoost, "model.json", size, jsonArrayRepeat(xgbJSON, `"trees":[`), "unexpected end"},
		{"xgboost-ubj-prefix", models.FormatXGBoost, "model.ubj", size, prefixThenJunk(xgbUBJ[:len(xgbUBJ)/2]), "xgboost"},
		{"sklearn-random", models.FormatSklearn, "model.json", size, nil, "want a JSON object"},
		{"sklearn-prefix", models.FormatSklearn, "model.json", size, prefixThenJunk(skl[:len(skl)/2]), "sklearn"},
		{"sklearn-truncated", models.FormatSklearn, "model.json", size, jsonArrayRepeat(skl, `"trees":[`), "unexpected end"},
		{"linear-truncated", models.FormatLinear, "model.json", models.MaxLinearSize, jsonWeights(), "unexpected end"},
		{"linear-oversized", models.FormatLinear, "model.json", 1 << 30, nil, "over the limit"},
		{"onnx-random", models.FormatONNX, "model.onnx", size, nil, "not an ONNX model"},
		{"onnx-oversized", models.FormatONNX, "model.onnx", 8 << 30, nil, "over the limit"},
		{"onnx-prefix", models.FormatONNX, "model.onnx", size, prefixThenJunk(onnx[:len(onnx)/2]), "onnx: bad ONNX model"},
	}
	manifest := string(readTestFile(t, filepath.Join(quick, "manifest.yaml")))
	good := filepath.Join(root, "store_ranker", "good")
	copyFile(t, filepath.Join(quick, "model.txt"), filepath.Join(good, "model.txt"))
	writeFiles(t, good, map[string]string{"manifest.yaml": strings.Replace(manifest, `version: "1"`, `version: "good"`, 1)})
	base, out := peakRSS(t, bin, "validate", "--catalog", catalog, good)
	if !strings.HasPrefix(out, "ok:") {
		t.Fatalf("validate the good version: %s", out)
	}
	t.Logf("baseline: a good version loads with a peak RSS of %.1f MiB", float64(base)/(1<<20))

	for _, tt := range tests {
		dir := filepath.Join(root, "store_ranker", tt.name)
		m := strings.Replace(manifest, `version: "1"`, `version: "`+tt.name+`"`, 1)
		m = strings.Replace(m, "format: lightgbm", "format: "+tt.format, 1)
		m = strings.Replace(m, "artifact: model.txt", "artifact: "+tt.file, 1)
		writeFiles(t, dir, map[string]string{"manifest.yaml": m})
		writeJunk(t, filepath.Join(dir, tt.file), tt.size, tt.write)

		peak, out := peakRSS(t, bin, "validate", "--catalog", catalog, dir)
		if !strings.Contains(out, tt.want) || strings.HasPrefix(out, "ok:") {
			t.Errorf("%s: the error does not mention %q:\n%s", tt.name, tt.want, out)
		}
		read := min(tt.size, models.MaxSize(tt.format))
		if tt.size > models.MaxSize(tt.format) {
			read = 0 // refused by its size before a byte is read
		}
		t.Logf("%-20s %5d MiB: peak RSS %+7.1f MiB over the baseline (bound %d MiB)",
			tt.name, tt.size>>20, float64(peak-base)/(1<<20), (read+slack)>>20)
		if peak-base > read+slack {
			t.Errorf("%s: refusing %d MiB of junk raised the peak RSS by %.1f MiB, more than %d MiB",
				tt.name, tt.size>>20, float64(peak-base)/(1<<20), (read+slack)>>20)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
}

// buildSeer builds the seer binary without the race detector, whose
// shadow memory would swamp what is measured.
func buildSeer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "seer")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// peakRSS runs bin and returns its peak resident set size in bytes and
// its combined output.
func peakRSS(t *testing.T, bin string, args ...string) (int64, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("%s did not run: %s", bin, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Skip("no rusage on this platform")
	}
	return ru.Maxrss << 10, string(out) // Linux reports kilobytes
}

func readTestFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeJunk writes size bytes to path: those write gives (cut or padded
// with random bytes), random bytes when write is nil, or a hole of size
// bytes when size is over 1 GiB (a sparse file: only its size matters).
func writeJunk(t *testing.T, path string, size int64, write func(io.Writer)) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if size > 1<<30 {
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		return
	}
	w := &cutWriter{w: f, left: size}
	if write != nil {
		write(w)
	}
	rnd := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for w.left > 0 {
		rnd.Read(buf)
		if _, err := w.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
}

// cutWriter writes at most left bytes to w and drops the rest.
type cutWriter struct {
	w    io.Writer
	left int64
	err  error
}

func (c *cutWriter) Write(p []byte) (int, error) {
	n := len(p)
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	if len(p) > 0 && c.err == nil {
		_, c.err = c.w.Write(p)
	}
	c.left -= int64(len(p))
	return n, nil
}

func (c *cutWriter) full() bool { return c.left <= 0 }

// prefixThenJunk writes prefix; the rest is random bytes.
func prefixThenJunk(prefix []byte) func(io.Writer) {
	return func(w io.Writer) { w.Write(prefix) }
}

// prefixThenRepeat writes prefix, then s until the file is full.
func prefixThenRepeat(prefix []byte, s string) func(io.Writer) {
	return func(w io.Writer) {
		w.Write(prefix)
		chunk := []byte(strings.Repeat(s, (1<<20)/len(s)))
		for !w.(*cutWriter).full() {
			w.Write(chunk)
		}
	}
}

// lightGBMTrees writes model's header, its tree_sizes listing more trees
// than fit in size bytes, and then its trees again and again, renumbered,
// until the file is full: a model that is valid up to where it is cut.
// With tail, the last tree that fits whole is followed by a tree holding
// only tail, and nothing else.
func lightGBMTrees(model []byte, size int64, tail string) func(io.Writer) {
	return func(w io.Writer) {
		start := bytes.Index(model, []byte("Tree=0"))
		end := bytes.Index(model, []byte("end of trees"))
		var trees [][]byte
		for _, block := range bytes.Split(model[start:end], []byte("Tree=")) {
			if len(block) > 0 {
				trees = append(trees, block[bytes.IndexByte(block, '\n'):])
			}
		}
		n := int(size)/len(trees[0]) + 1
		var head []byte
		for line := range bytes.Lines(model[:start]) {
			if bytes.HasPrefix(line, []byte("tree_sizes=")) {
				line = []byte("tree_sizes=" + strings.Repeat("900 ", n) + "\n")
			}
			head = append(head, line...)
		}
		cw := w.(*cutWriter)
		cw.Write(head)
		room := int64(len(tail) + 20)
		for i := 0; !cw.full(); i++ {
			tree := trees[i%len(trees)]
			if tail != "" && cw.left < int64(len(tree))+room {
				fmt.Fprintf(cw, "Tree=%d\n%s\n\n", i, tail)
				cw.left = 0 // nothing after it
				return
			}
			fmt.Fprintf(cw, "Tree=%d", i)
			cw.Write(tree)
		}
	}
}

// jsonArrayRepeat writes doc up to the end of the array that opens with
// key, then that array's first element again and again until the file is
// full: a document that is valid up to where it is cut.
func jsonArrayRepeat(doc []byte, key string) func(io.Writer) {
	return func(w io.Writer) {
		open := bytes.Index(doc, []byte(key)) + len(key)
		elem := firstJSONValue(doc[open:])
		w.Write(doc[:open])
		w.Write(elem)
		for !w.(*cutWriter).full() {
			w.Write([]byte(","))
			w.Write(elem)
		}
	}
}

// firstJSONValue returns the object or array at the start of b.
func firstJSONValue(b []byte) []byte {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return b[:i+1]
			}
		}
	}
	return b
}

// jsonWeights writes a linear model whose weights go on until the file is
// full.
func jsonWeights() func(io.Writer) {
	return func(w io.Writer) {
		w.Write([]byte(`{"link": "logistic", "weights": {`))
		for i := 0; !w.(*cutWriter).full(); i++ {
			fmt.Fprintf(w, `"feature_%d": 0.125, `, i)
		}
	}
}
