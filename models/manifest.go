package models

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/features"
)

// ErrManifest is wrapped by every error that rejects a manifest.
var ErrManifest = errors.New("bad manifest")

// MaxManifestSize caps the bytes of a manifest.
const MaxManifestSize = 16 << 20

// Manifest describes one model version: what the artifact is and which
// features, in which order, it reads.
type Manifest struct {
	Name        string `yaml:"name"`
	Version     string `yaml:"version"`
	Description string `yaml:"description"`
	Format      string `yaml:"format"`
	// Artifact is the model file, relative to the manifest's directory.
	// Linear models may instead be written inline under Linear.
	Artifact string `yaml:"artifact"`
	// Output is raw (margins) or transformed (the library's own output;
	// "probability" is a synonym). The default is transformed.
	Output string `yaml:"output"`
	// Iterations, when positive, scores only the first iterations.
	Iterations int `yaml:"iterations"`
	// OutputTensor names the ONNX graph output to score; the default is
	// the graph's first output.
	OutputTensor string               `yaml:"output_tensor"`
	Inputs       []features.InputDecl `yaml:"inputs"`
	// Linear is an inline linear model (format linear, no artifact).
	Linear map[string]any `yaml:"linear"`
	// Golden rows: inputs by name and the scores the model must give.
	Golden []Golden `yaml:"golden"`
}

// Golden is one input row with the scores the model must reproduce.
type Golden struct {
	Inputs    map[string]any `yaml:"inputs"`
	Scores    []float64      `yaml:"scores"`
	Tolerance float64        `yaml:"tolerance"` // relative and absolute; default 1e-6
}

var (
	modelName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	versionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// ParseManifest parses and checks a manifest in YAML. Unknown keys are
// errors; errors wrap ErrManifest.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes is over the limit of %d", ErrManifest, len(data), MaxManifestSize)
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if !modelName.MatchString(m.Name) {
		return nil, fmt.Errorf("%w: name %q: want letters, digits, _ . -", ErrManifest, m.Name)
	}
	if !versionName.MatchString(m.Version) {
		return nil, fmt.Errorf("%w: version %q: want letters, digits, _ . -", ErrManifest, m.Version)
	}
	switch m.Format {
	case FormatLightGBM, FormatXGBoost, FormatSklearn, FormatLinear, FormatONNX:
	default:
		return nil, fmt.Errorf("%w: format %q (want lightgbm, xgboost, sklearn, linear or onnx)", ErrManifest, m.Format)
	}
	switch m.Output {
	case "":
		m.Output = OutputTransformed
	case OutputTransformed, OutputProbability, OutputRaw:
	default:
		return nil, fmt.Errorf("%w: output %q (want raw, transformed or probability)", ErrManifest, m.Output)
	}
	if m.Artifact == "" && (m.Format != FormatLinear || m.Linear == nil) {
		return nil, fmt.Errorf("%w: no artifact", ErrManifest)
	}
	if m.Linear != nil && m.Format != FormatLinear {
		return nil, fmt.Errorf("%w: linear: only for format linear", ErrManifest)
	}
	if len(m.Inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrManifest)
	}
	if m.Iterations < 0 {
		return nil, fmt.Errorf("%w: iterations %d is negative", ErrManifest, m.Iterations)
	}
	if m.Format == FormatONNX {
		if m.Output == OutputRaw {
			return nil, fmt.Errorf("%w: output raw: an ONNX model scores the graph output it names (output_tensor)", ErrManifest)
		}
		if m.Iterations != 0 {
			return nil, fmt.Errorf("%w: iterations: only for boosted trees, not onnx", ErrManifest)
		}
	} else {
		if m.OutputTensor != "" {
			return nil, fmt.Errorf("%w: output_tensor: only for format onnx", ErrManifest)
		}
		for _, in := range m.Inputs {
			if in.Tensor != "" {
				return nil, fmt.Errorf("%w: input %s: tensor: only for format onnx", ErrManifest, in.Name)
			}
		}
	}
	for i, g := range m.Golden {
		if len(g.Scores) == 0 {
			return nil, fmt.Errorf("%w: golden row %d: no scores", ErrManifest, i+1)
		}
	}
	return &m, nil
}

// Options returns the load options the manifest asks for.
func (m *Manifest) Options() Options {
	names := make([]string, len(m.Inputs))
	var tensors []string
	for i, in := range m.Inputs {
		names[i] = in.Name
		if in.Column != "" {
			names[i] = in.Column
		}
		if in.Tensor != "" {
			if tensors == nil {
				tensors = make([]string, len(m.Inputs))
			}
			tensors[i] = in.Tensor
		}
	}
	return Options{Raw: m.Output == OutputRaw, Iterations: m.Iterations, Inputs: names, Tensors: tensors, OutputTensor: m.OutputTensor}
}
