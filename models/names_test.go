package models

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/seer-ml/seer/internal/oracle"
)

// TestInputNames reads the names each format's artifacts give their input
// columns, and checks manifests against them.
func TestInputNames(t *testing.T) {
	demo := readFile(t, "../configs/quickstart/models/store_ranker/1/model.txt")
	demoNames := []string{
		"store_avg_rating", "store_num_ratings", "store_delivery_minutes", "store_price_level",
		"store_cuisine", "consumer_order_count", "consumer_avg_spend", "hour_of_day", "distance_km",
	}
	audit, err := os.ReadFile(oracle.Path(t, "xgboost", "BinomialClassificationAudit.json"))
	if err != nil {
		t.Fatal(err)
	}
	auditNames := oracle.Read(t, oracle.Path(t, "xgboost", "BinomialClassificationAudit.input.tsv")).Header
	linear, err := os.ReadFile(oracle.Path(t, "xgboost", "LinearRegressionAuto.json"))
	if err != nil {
		t.Fatal(err)
	}
	linearNames := oracle.Read(t, oracle.Path(t, "xgboost", "LinearRegressionAuto.input.tsv")).Header
	unnamed := strings.Replace(string(demo), "feature_names="+strings.Join(demoNames, " "),
		"feature_names=Column_0 Column_1 Column_2 Column_3 Column_4 Column_5 Column_6 Column_7 Column_8", 1)
	cases := []struct {
		name   string
		format string
		data   []byte
		want   []string // nil: the artifact names no columns
	}{
		{"lightgbm", FormatLightGBM, demo, demoNames},
		{"lightgbm without names", FormatLightGBM, []byte(unnamed), nil},
		{"xgboost gbtree", FormatXGBoost, audit, auditNames},
		{"xgboost gblinear", FormatXGBoost, linear, linearNames},
		{"xgboost ubjson", FormatXGBoost, readNumeric200(t), []string{"f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10", "f11", "f12", "f13", "f14", "f15"}},
		{"xgboost without names", FormatXGBoost, readFile(t, "testdata/xgboost/binary_logistic.ubj"), nil},
		{"sklearn", FormatSklearn, readFile(t, "testdata/sklearn/gb_clf_binary.json"), oracle.Read(t, "testdata/sklearn/gb_clf_binary.input.tsv").Header},
		{"sklearn scaled, without names", FormatSklearn, readFile(t, "testdata/sklearn/ridge_scaled.json"), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(c.format, c.data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := InputNames(m); !slices.Equal(got, c.want) {
				t.Fatalf("names %q, want %q", got, c.want)
			}
			named, err := CheckInputNames(m, c.want)
			if named != (c.want != nil) || err != nil {
				t.Fatalf("the artifact's own names: named %v, %v", named, err)
			}
			if c.want == nil {
				return
			}
			swapped := slices.Clone(c.want)
			swapped[0], swapped[2] = swapped[2], swapped[0]
			renamed := slices.Clone(c.want)
			renamed[1] = "not_a_column"
			for _, bad := range []struct {
				inputs []string
				want   string
			}{
				{swapped, "column 1 is " + swapped[0] + " in the manifest, " + c.want[0] + " in the artifact (which has " + swapped[0] + " as column 3); column 3 is"},
				{renamed, "column 2 is not_a_column in the manifest, " + c.want[1] + " in the artifact (which has no column not_a_column)"},
				{c.want[1:], "the artifact names"},
			} {
				named, err := CheckInputNames(m, bad.inputs)
				if !named || !errors.Is(err, ErrInputNames) || !strings.Contains(err.Error(), bad.want) {
					t.Errorf("inputs %q: named %v, error %v; want one containing %q", bad.inputs, named, err, bad.want)
				}
			}
		})
	}
}
