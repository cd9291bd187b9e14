// Package models holds seer's Model interface, the model manifest, and one
// loader and evaluator per artifact format: LightGBM text, XGBoost JSON and
// UBJSON and scikit-learn through seer's JSON export (the tree formats, all
// scored by Forest), linear models, and ONNX graphs (evaluated by
// models/onnx). LightGBM models also load into leaves, the independent
// second evaluation validation compares Forest with (Verify).
//
// It imports features only; it must not import retrieval, registry or cmd.
package models

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/seer-ml/seer/models/onnx"
)

// ErrArtifact is wrapped by every error that rejects a model artifact.
var ErrArtifact = errors.New("bad model artifact")

// Caps on the bytes of an artifact, per format. The registry compares a
// file's size with its format's cap before reading any of it, and Load
// refuses more bytes than the cap. Loading holds the whole artifact in
// memory, so the cap is also about what a junk file dropped into the models
// root can cost (docs/models.md says what was measured).
const (
	MaxLightGBMSize = 256 << 20
	MaxXGBoostSize  = 256 << 20
	MaxSklearnSize  = 256 << 20
	MaxLinearSize   = 16 << 20
	MaxONNXSize     = 256 << 20
)

// MaxSize returns the cap on the bytes of an artifact of format, or 0 for
// a format seer does not know.
func MaxSize(format string) int64 {
	switch format {
	case FormatLightGBM:
		return MaxLightGBMSize
	case FormatXGBoost:
		return MaxXGBoostSize
	case FormatSklearn:
		return MaxSklearnSize
	case FormatLinear:
		return MaxLinearSize
	case FormatONNX:
		return MaxONNXSize
	}
	return 0
}

// Model scores rows of model inputs.
type Model interface {
	// NumFeatures returns the number of input columns of a row.
	NumFeatures() int
	// NumOutputs returns the number of scores per row.
	NumOutputs() int
	// Predict scores nrows rows held row-major in x (nrows*NumFeatures
	// values; NaN is missing) into dst (nrows*NumOutputs values).
	Predict(dst, x []float64, nrows int) error
}

// Formats of model artifacts, as a manifest names them.
const (
	FormatLightGBM = "lightgbm"
	FormatXGBoost  = "xgboost"
	FormatSklearn  = "sklearn"
	FormatLinear   = "linear"
	FormatONNX     = "onnx"
)

// Outputs a manifest may ask for.
const (
	OutputTransformed = "transformed" // the library's own output: probabilities, predictions
	OutputProbability = "probability" // the same as transformed
	OutputRaw         = "raw"         // margins before the objective's link
)

// Options tune how an artifact is loaded.
type Options struct {
	// Raw asks for margins instead of the library's transformed output.
	Raw bool
	// Iterations, when positive, limits a boosted model to its first
	// iterations (early-stopping style).
	Iterations int
	// Inputs names the manifest's inputs in column order. Formats that
	// address features by name (linear weights) map through it; others
	// may check it against the names they carry.
	Inputs []string
	// Widths, when not nil, gives the columns each input fills (a vector
	// fills its dimension); nil means one each.
	Widths []int
	// Tensors names, per input, the ONNX graph input it fills ("" when
	// the graph has one input).
	Tensors []string
	// Integer, when not nil, says per input whether its columns are
	// always whole numbers (int features, categories with a default
	// code), which an ONNX int64 graph input needs.
	Integer []bool
	// OutputTensor names the ONNX graph output to score; "" is the first.
	OutputTensor string
}

// Load parses an artifact of the given format. It never panics: a panic in
// a loader is returned as an error wrapping ErrArtifact.
func Load(format string, data []byte, opt Options) (m Model, err error) {
	if limit := MaxSize(format); int64(len(data)) > limit && limit > 0 {
		return nil, fmt.Errorf("%w: %d bytes is over the %s limit of %d", ErrArtifact, len(data), format, limit)
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %s loader panicked: %v", ErrArtifact, format, r)
		}
	}()
	if err := CheckHead(format, data[:min(len(data), HeadSize)]); err != nil {
		return nil, err
	}
	switch format {
	case FormatLightGBM:
		return loadLightGBM(data, opt)
	case FormatXGBoost:
		return loadXGBoost(data, opt)
	case FormatSklearn:
		return loadSklearn(data, opt)
	case FormatLinear:
		return loadLinear(data, opt)
	case FormatONNX:
		return loadONNX(data, opt)
	}
	return nil, fmt.Errorf("%w: unknown format %q (want lightgbm, xgboost, sklearn, linear or onnx)", ErrArtifact, format)
}

// HeadSize is how many of an artifact's first bytes Sniff and CheckHead
// look at.
const HeadSize = 4096

// CheckHead checks that head, the first bytes of an artifact (HeadSize of
// them, or the whole artifact when it is shorter), can begin an artifact of
// format, so that a file of the wrong kind is refused before the rest of
// it is read. Errors wrap ErrArtifact.
func CheckHead(format string, head []byte) error {
	head = head[:min(len(head), HeadSize)]
	got := Sniff(head)
	switch {
	case got == format:
		return nil
	case got != "":
		return fmt.Errorf("%w: the artifact is %s (detected from its bytes), but the format is %s", ErrArtifact, describeSniffed(got), format)
	}
	switch format {
	case FormatLightGBM:
		return fmt.Errorf("%w: not a LightGBM text model (want a line %q, then %q)", ErrArtifact, "tree", "version=")
	case FormatXGBoost:
		if _, err := xgbDecoder(head); err != nil {
			return fmt.Errorf("%w: xgboost: %w", ErrArtifact, err)
		}
	case FormatSklearn, FormatLinear:
		text := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
		if len(text) == 0 || text[0] != '{' {
			return fmt.Errorf("%w: not %s: want a JSON object", ErrArtifact, describeSniffed(format))
		}
	case FormatONNX:
		return fmt.Errorf("%w: not an ONNX model (want a protobuf ModelProto starting with its ir_version)", ErrArtifact)
	}
	return nil
}

// formatXGBoostBinary is what Sniff says of XGBoost's old binary format.
const formatXGBoostBinary = "xgboost-binary"

// Sniff detects an artifact's format from its first bytes: lightgbm,
// xgboost (JSON or UBJSON), sklearn (seer's export), linear, onnx, or
// xgboost-binary (XGBoost's old binary format, which seer refuses); ""
// when it cannot tell.
func Sniff(data []byte) string {
	head := data[:min(len(data), HeadSize)]
	if onnx.Sniff(head) {
		return FormatONNX
	}
	text := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case bytes.HasPrefix(text, []byte("tree\n")) || bytes.HasPrefix(text, []byte("tree\r\n")):
		return FormatLightGBM
	case len(text) == 0:
		return ""
	case text[0] != '{':
		if isOldXGBoost(head) {
			return formatXGBoostBinary
		}
		return ""
	}
	if d, err := xgbDecoder(head); err == nil {
		if _, ubj := d.(*ubjDecoder); ubj {
			return FormatXGBoost
		}
	}
	switch {
	case bytes.Contains(head, []byte(`"learner"`)):
		return FormatXGBoost
	case bytes.Contains(head, []byte(`"seer-sklearn"`)):
		return FormatSklearn
	case bytes.Contains(head, []byte(`"weights"`)):
		return FormatLinear
	}
	return ""
}

func describeSniffed(format string) string {
	switch format {
	case FormatLightGBM:
		return "a LightGBM text model"
	case FormatXGBoost:
		return "an XGBoost JSON or UBJSON model"
	case FormatSklearn:
		return "a scikit-learn export"
	case FormatLinear:
		return "a linear model"
	case FormatONNX:
		return "an ONNX model"
	case formatXGBoostBinary:
		return "an old binary XGBoost model (re-save it from XGBoost as JSON: booster.save_model(\"model.json\"))"
	}
	return format
}
