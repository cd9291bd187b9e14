package models

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"testdata/lightgbm/tiny.txt", FormatLightGBM},
		{"testdata/xgboost/binary_logistic.json", FormatXGBoost},
		{"testdata/xgboost/binary_logistic.ubj", FormatXGBoost},
		{"testdata/xgboost/legacy.model", formatXGBoostBinary},
		{"testdata/onnx/two_tower.opset13.onnx", FormatONNX},
		{"testdata/onnx/mlp_64_256_128_1.opset17.onnx", FormatONNX},
	}
	for _, tt := range tests {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if got := Sniff(data); got != tt.want {
			t.Errorf("Sniff(%s) = %q, want %q", tt.file, got, tt.want)
		}
	}
	for text, want := range map[string]string{
		`{"format": "seer-sklearn", "version": 1}`:  FormatSklearn,
		`{"link": "identity", "weights": {"a": 1}}`: FormatLinear,
		``:                         "",
		`hello`:                    "",
		"\ufefftree\nversion=v3\n": FormatLightGBM,
	} {
		if got := Sniff([]byte(text)); got != want {
			t.Errorf("Sniff(%q) = %q, want %q", text, got, want)
		}
	}
}

// TestLoadRefusesMismatchedFormat: the manifest's format must agree with
// what the bytes are.
func TestLoadRefusesMismatchedFormat(t *testing.T) {
	for file, format := range map[string]string{
		"testdata/lightgbm/tiny.txt":            FormatXGBoost,
		"testdata/xgboost/binary_logistic.json": FormatLightGBM,
		"testdata/xgboost/binary_logistic.ubj":  FormatSklearn,
		"testdata/xgboost/legacy.model":         FormatLightGBM,
		"testdata/onnx/two_tower.opset13.onnx":  FormatXGBoost,
		"testdata/sklearn/dt_reg.json":          FormatONNX,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(format, data, Options{})
		if !errors.Is(err, ErrArtifact) || !strings.Contains(err.Error(), "detected from its bytes") {
			t.Errorf("%s as %s: got %v", file, format, err)
		}
	}
}
