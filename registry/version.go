package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
)

// ManifestFile is the name of the manifest in a model version directory.
const ManifestFile = "manifest.yaml"

// Version is one loaded model version: its manifest, its model and the plan
// that fills the model's inputs.
type Version struct {
	Name     string
	Version  string
	Dir      string
	Manifest *models.Manifest
	Model    models.Model
	Plan     *features.Plan
	// Verified says on what the artifact's reference evaluator agreed with
	// Model (see models.Verify); its Rows are 0 when the format has none.
	Verified models.Verification
	// Warnings are what validation could not check, for seer validate to
	// print and the registry to log; they do not stop the version.
	Warnings []string
	LoadedAt time.Time
	// stamp identifies the files the version was loaded from, so that a
	// poll can tell whether they changed.
	stamp string
}

// Problems is every problem found in one model version directory.
type Problems []error

func (p Problems) Error() string {
	msgs := make([]string, len(p))
	for i, e := range p {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.Is see every problem.
func (p Problems) Unwrap() []error { return p }

// LoadVersion loads and validates the model version in dir against the
// catalog: the manifest parses, names the directory's model and version,
// every input resolves, the artifact parses and has as many columns as the
// manifest has inputs, with the same names in the same order when the
// artifact names them, the golden rows reproduce, and where the format has
// a second, independent evaluator (LightGBM: leaves) it agrees with the
// model on the golden rows and on probe rows. On failure the error is
// Problems, listing everything found.
//
// The models root is taken to be dir's grandparent (<root>/<model>/<version>):
// the files are read as the registry reads them (see fileReader).
func LoadVersion(dir string, c *features.Catalog) (*Version, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, Problems{fmt.Errorf("%w: %v", ErrInvalid, err)}
	}
	fr, err := newFileReader(filepath.Dir(filepath.Dir(abs)))
	if err != nil {
		return nil, Problems{fmt.Errorf("%w: %v", ErrInvalid, err)}
	}
	return loadVersion(fr, dir, c)
}

func loadVersion(fr *fileReader, dir string, c *features.Catalog) (*Version, error) {
	var probs Problems
	fail := func(err error) (*Version, error) {
		probs = append(probs, err)
		return nil, probs
	}
	data, err := fr.read(filepath.Join(dir, ManifestFile), models.MaxManifestSize, 0, nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	m, err := models.ParseManifest(data)
	if err != nil {
		return fail(err)
	}
	v := &Version{Name: m.Name, Version: m.Version, Dir: dir, Manifest: m}
	if base := filepath.Base(dir); base != m.Version {
		probs = append(probs, fmt.Errorf("%w: manifest version %q is not its directory's %q", ErrInvalid, m.Version, base))
	}
	if parent := filepath.Base(filepath.Dir(dir)); parent != m.Name {
		probs = append(probs, fmt.Errorf("%w: manifest name %q is not its directory's %q", ErrInvalid, m.Name, parent))
	}
	v.Plan, err = features.Compile(c, m.Inputs)
	if err != nil {
		probs = append(probs, err)
	}
	art, err := artifact(fr, dir, m)
	if err != nil {
		return fail(err)
	}
	if len(art) >= largeArtifact {
		// The buffer is garbage once the version is built or refused, but
		// the collector sized its goal to it: left alone, the serving
		// process's own garbage grows the heap to about twice the
		// artifact before the next collection notices.
		defer func() {
			art = nil
			debug.FreeOSMemory()
		}()
	}
	opt := m.Options()
	columns := len(m.Inputs)
	if v.Plan != nil {
		// What the inputs fill, so that a format that checks widths
		// (ONNX graph inputs) can.
		opt.Widths, opt.Integer = make([]int, len(m.Inputs)), make([]bool, len(m.Inputs))
		for i := range m.Inputs {
			in := v.Plan.Inputs[i]
			opt.Widths[i], opt.Integer[i] = in.Width, in.Integer()
		}
		columns = v.Plan.Columns()
	}
	v.Model, err = models.Load(m.Format, art, opt)
	if err != nil {
		return fail(fmt.Errorf("load %s: %w", m.Artifact, err))
	}
	switch n := v.Model.NumFeatures(); {
	case n != columns:
		probs = append(probs, fmt.Errorf("%w: the model reads %d columns but the manifest's inputs fill %d", ErrInvalid, n, columns))
	case m.Format == models.FormatLinear:
		// A linear model's weights are matched to the inputs by name.
	case columns != len(m.Inputs):
		// An input fills several columns: the artifact's names, one per
		// column, cannot be the manifest's.
		v.Warnings = append(v.Warnings, "an input fills several columns, so the artifact's column names are not checked: "+
			"only golden rows can catch inputs listed in the wrong order")
	default:
		named, err := models.CheckInputNames(v.Model, opt.Inputs)
		if err != nil {
			probs = append(probs, fmt.Errorf("%w: %v", ErrInvalid, err))
		} else if !named {
			v.Warnings = append(v.Warnings, "the artifact does not name its input columns: "+
				"only golden rows can catch inputs listed in the wrong order")
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	var golden []float64 // the golden rows that assemble, for the second evaluation
	ngolden := 0
	for i, g := range m.Golden {
		row, err := goldenRow(v.Plan, g)
		if err == nil {
			golden = append(golden, row...)
			ngolden++
			err = checkGolden(v, row, g)
		}
		if err != nil {
			probs = append(probs, fmt.Errorf("%w: golden row %d: %v", ErrInvalid, i+1, err))
		}
	}
	v.Verified, err = models.Verify(m.Format, art, opt, v.Model, golden, ngolden)
	if err != nil {
		probs = append(probs, fmt.Errorf("%w: second evaluation: %v", ErrInvalid, err))
	}
	if u := v.Verified.Unchecked; u != "" && len(m.Golden) == 0 {
		v.Warnings = append(v.Warnings, "the second evaluation does not check "+u+
			"; only golden rows do, and the manifest has none")
	}
	if len(probs) > 0 {
		return nil, probs
	}
	v.LoadedAt = time.Now()
	return v, nil
}

// largeArtifact is the size from which the memory an artifact's buffer
// held is given back to the system once its version is loaded or refused.
const largeArtifact = 16 << 20

// artifact reads the model file a manifest names, which must be named
// inside the version directory, or encodes an inline linear model. The file
// must not be larger than its format's cap, and its first bytes must fit
// its format.
func artifact(fr *fileReader, dir string, m *models.Manifest) ([]byte, error) {
	if m.Artifact == "" {
		b, err := json.Marshal(m.Linear)
		if err != nil {
			return nil, fmt.Errorf("%w: linear: %v", ErrInvalid, err)
		}
		return b, nil
	}
	if !filepath.IsLocal(m.Artifact) {
		return nil, fmt.Errorf("%w: artifact %q must be a file inside the version directory", ErrInvalid, m.Artifact)
	}
	check := func(head []byte) error { return models.CheckHead(m.Format, head) }
	b, err := fr.read(filepath.Join(dir, m.Artifact), models.MaxSize(m.Format), models.HeadSize, check)
	if err != nil {
		return nil, fmt.Errorf("%w: artifact: %v", ErrInvalid, err)
	}
	return b, nil
}

// goldenRow assembles the model columns of a golden row as a request with
// these features would: inputs it leaves out take their defaults, vectors
// fill their columns, derived inputs come from their operands.
func goldenRow(p *features.Plan, g models.Golden) ([]float64, error) {
	q := &features.Query{Features: make(map[string]features.Value, len(g.Inputs))}
	for name, x := range g.Inputs {
		k := p.Input(name)
		if k < 0 {
			return nil, fmt.Errorf("input %s is not a model input", name)
		}
		in := p.Inputs[k]
		if x == nil {
			continue
		}
		if in.Derived() {
			return nil, fmt.Errorf("input %s is derived: give its operands", name)
		}
		val, err := features.Coerce(in.Type, x)
		if err != nil {
			return nil, fmt.Errorf("input %s: %v", in.Name, err)
		}
		q.Features[name] = val
	}
	var b features.Batch
	if err := p.Prepare(q, &b); err != nil {
		return nil, err
	}
	row := make([]float64, p.Columns())
	p.Assemble(q, &b, row, nil)
	return row, nil
}

// checkGolden scores one golden row and compares it with its scores.
func checkGolden(v *Version, row []float64, g models.Golden) error {
	out := make([]float64, v.Model.NumOutputs())
	if err := v.Model.Predict(out, row, 1); err != nil {
		return err
	}
	if len(g.Scores) != len(out) {
		return fmt.Errorf("%d scores listed, the model gives %d", len(g.Scores), len(out))
	}
	tol := g.Tolerance
	if tol == 0 {
		tol = 1e-6
	}
	for i, want := range g.Scores {
		got := out[i]
		if math.Abs(got-want) > tol*max(1, math.Abs(want)) && !(math.IsNaN(got) && math.IsNaN(want)) {
			return fmt.Errorf("score %d: got %.17g, want %.17g (tolerance %g)", i, got, want, tol)
		}
	}
	return nil
}

// ProblemLines returns an error's problems, one line each: the problems of
// a Problems list and of joined errors are listed one by one.
func ProblemLines(err error) []string {
	var p Problems
	if !errors.As(err, &p) {
		p = Problems{err}
	}
	var out []string
	for _, e := range p {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				out = append(out, inner.Error())
			}
			continue
		}
		out = append(out, e.Error())
	}
	return out
}
