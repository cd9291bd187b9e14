package sample

import (
	"math"
	"testing"
)

func TestRate(t *testing.T) {
	var zero Rate
	if zero.Draw() || zero.Share() != 0 {
		t.Error("the zero Rate draws")
	}
	for _, tt := range []struct {
		share    float64
		min, max int // of 10,000 draws; bounds over five standard deviations
	}{
		{1, 10_000, 10_000}, {2, 10_000, 10_000}, {0, 0, 0}, {-1, 0, 0}, {math.NaN(), 0, 0},
		{0.5, 4_750, 5_250}, {0.01, 50, 150},
	} {
		r := NewRate(tt.share)
		n := 0
		for range 10_000 {
			if r.Draw() {
				n++
			}
		}
		if n < tt.min || n > tt.max {
			t.Errorf("share %v: %d of 10000 drawn, want %d to %d", tt.share, n, tt.min, tt.max)
		}
		if s := r.Share(); s != tt.share && !(math.IsNaN(s) && math.IsNaN(tt.share)) {
			t.Errorf("Share() = %v, want %v", s, tt.share)
		}
	}
	if Limit(0.5) != 1<<63 || Limit(0.25) != 1<<62 {
		t.Errorf("Limit(0.5) = %d, Limit(0.25) = %d", Limit(0.5), Limit(0.25))
	}
}
