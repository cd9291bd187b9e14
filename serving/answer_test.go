package serving

import (
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/seer-ml/seer/features"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestFeaturesAnswerGolden pins the bytes of a representative
// /v1/features answer: 100 rows of every quickstart feature, floats
// uploaded with six decimals and others of every magnitude, ints,
// strings, the stamps of two uploads, every origin and reason, and a
// degraded query. testdata/features_answer.json was written before the
// answer writer was tuned; go test -run FeaturesAnswerGolden -update
// rewrites it.
func TestFeaturesAnswerGolden(t *testing.T) {
	p := displayPlan(t)
	r := rand.New(rand.NewPCG(9, 9))
	rows := 100
	cells := make([]features.Cell, rows*len(p.Inputs))
	for i := range cells {
		c := &cells[i]
		switch p.Inputs[i%len(p.Inputs)].Type {
		case features.Float:
			f, _ := strconv.ParseFloat(strconv.FormatFloat(r.Float64()*math.Pow10(r.IntN(12)-5), 'f', 6, 64), 64)
			if i%7 == 0 {
				f = r.NormFloat64() * math.Pow10(r.IntN(40)-20)
			}
			c.Value = features.FloatValue(f)
		case features.Int:
			c.Value = features.IntValue(r.Int64N(2000) - 1000)
		case features.String:
			c.Value = features.StringValue([]string{"pizza", "<sushi>", "thaï"}[r.IntN(3)])
		case features.Bool:
			c.Value = features.BoolValue(r.IntN(2) == 1)
		case features.Vector:
			c.Value = features.VectorValue([]float32{r.Float32(), -1.5, 1e-9})
		case features.List:
			c.Value = features.ListValue([]string{"a", "b&c"})
		}
		c.Source = features.Origin(r.IntN(5))
		if c.Source == features.FromDefault {
			c.Why = features.Reason(1 + r.IntN(6))
		}
		if c.Source == features.FromRedis || c.Source == features.FromCache {
			c.Updated = features.Stamp(1_790_000_000 + 3600*r.IntN(2))
		}
	}
	res := []queryResult{
		{id: "drivers", plan: p, cells: cells},
		{plan: p, cells: cells[:2*len(p.Inputs)], degraded: []string{"main"}, degradedValues: 3},
	}
	got := appendResults(nil, res, false)
	const golden = "testdata/features_answer.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("the answer differs from %s at byte %d:\n got %s\nwant %s", golden, i, got[max(0, i-80):min(len(got), i+80)], want[max(0, i-80):min(len(want), i+80)])
			}
		}
		t.Fatalf("the answer is %d bytes, %s %d", len(got), golden, len(want))
	}
}
