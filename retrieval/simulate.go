package retrieval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/maypok86/otter/v2"
)

// The simulator replays a trace of feature reads through caches of several
// sizes, each keyed as the real cache is (store, entity key and the
// features read together) and evicting by the same policy, and reports the
// hit rate as the trace goes on: the estimate to make before turning a
// cache on.

// SimRead is one read of a trace as the simulator sees it.
type SimRead struct {
	Key  uint64 // hash of the store, the entity key and the fields
	Time int64  // unix nanoseconds
}

// SimKey returns the simulator's key of a read.
func SimKey(r TraceRecord) uint64 {
	d := xxhash.New()
	d.WriteString(r.Store)
	d.Write([]byte{0})
	d.WriteString(r.Key)
	for _, f := range r.Fields {
		d.Write([]byte{0})
		d.WriteString(f)
	}
	return d.Sum64()
}

// Simulation is the result of Simulate.
type Simulation struct {
	Sizes    []int      // cache sizes, in entries
	Reads    int        // reads replayed
	Keys     int        // distinct keys among them
	Start    time.Time  // the time of the first read
	Points   []SimPoint // the curve, one point per window
	HitRates []float64  // over the whole trace, per size
	// Ideal is the hit rate of an unbounded cache: every read but the
	// first of each key hits.
	Ideal float64
}

// SimPoint is the hit rates of one window of the trace.
type SimPoint struct {
	Reads  int       // reads from the start to the end of the window
	Time   time.Time // the time of the window's last read
	Window []float64 // hit rate within the window, per size
	Total  []float64 // hit rate from the start, per size
	// Ideal and IdealTotal are an unbounded cache's hit rates within the
	// window and from the start.
	Ideal, IdealTotal float64
}

// Simulate replays reads through an otter cache of each size (in entries)
// and returns the hit-rate curve in points windows of equal read counts.
func Simulate(reads []SimRead, sizes []int, points int) (Simulation, error) {
	if len(sizes) == 0 || slices.ContainsFunc(sizes, func(n int) bool { return n <= 0 }) {
		return Simulation{}, errors.New("simulate: cache sizes must be positive")
	}
	if len(reads) == 0 {
		return Simulation{}, errors.New("simulate: the trace has no reads")
	}
	points = max(1, min(points, len(reads)))
	sim := Simulation{Sizes: sizes, Reads: len(reads), Start: time.Unix(0, reads[0].Time).UTC(),
		HitRates: make([]float64, len(sizes)), Points: make([]SimPoint, points)}
	bounds := make([]int, points) // end of each window
	for p := range points {
		bounds[p] = (p + 1) * len(reads) / points
	}
	for p := range sim.Points {
		sim.Points[p] = SimPoint{Reads: bounds[p], Time: time.Unix(0, reads[bounds[p]-1].Time).UTC(),
			Window: make([]float64, len(sizes)), Total: make([]float64, len(sizes))}
	}
	// An unbounded cache.
	seen := make(map[uint64]struct{})
	start, hits := 0, 0
	for p, end := range bounds {
		w := 0
		for _, r := range reads[start:end] {
			if _, ok := seen[r.Key]; ok {
				w++
			} else {
				seen[r.Key] = struct{}{}
			}
		}
		hits += w
		sim.Points[p].Ideal = float64(w) / float64(end-start)
		sim.Points[p].IdealTotal = float64(hits) / float64(end)
		start = end
	}
	sim.Keys, sim.Ideal = len(seen), float64(hits)/float64(len(reads))
	for si, size := range sizes {
		c := otter.Must(&otter.Options[uint64, struct{}]{
			MaximumSize: size,
			// Maintenance on the caller keeps the replay deterministic.
			Executor: func(fn func()) { fn() },
		})
		start, total := 0, 0
		for p, end := range bounds {
			w := 0
			for _, r := range reads[start:end] {
				if _, ok := c.GetIfPresent(r.Key); ok {
					w++
				} else {
					c.Set(r.Key, struct{}{})
				}
			}
			total += w
			sim.Points[p].Window[si] = float64(w) / float64(end-start)
			sim.Points[p].Total[si] = float64(total) / float64(end)
			start = end
		}
		sim.HitRates[si] = float64(total) / float64(len(reads))
		c.StopAllGoroutines()
	}
	return sim, nil
}

// Zipf draws ranks 0..n-1 with probability proportional to 1/(rank+1)^s,
// for any s > 0 (math/rand's Zipf needs s > 1).
type Zipf struct {
	cdf []float64
	rng *rand.Rand
}

// maxZipfKeys bounds the keys of a generated trace (its table takes 8
// bytes a key).
const maxZipfKeys = 100_000_000

// NewZipf returns a Zipf distribution over n keys with exponent s, drawn
// from a generator seeded with seed.
func NewZipf(n int, s float64, seed uint64) (*Zipf, error) {
	if n <= 0 || n > maxZipfKeys || !(s > 0) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("zipf: want 1 to %d keys and an exponent above 0, got %d and %v", maxZipfKeys, n, s)
	}
	z := &Zipf{cdf: make([]float64, n), rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	sum := 0.0
	for i := range z.cdf {
		sum += math.Pow(float64(i+1), -s)
		z.cdf[i] = sum
	}
	for i := range z.cdf {
		z.cdf[i] /= sum
	}
	return z, nil
}

// Next returns the next rank.
func (z *Zipf) Next() int {
	u := z.rng.Float64()
	i, _ := slices.BinarySearch(z.cdf, u)
	return min(i, len(z.cdf)-1)
}

// ZipfTrace generates reads reads of n store keys (st_1 is the most
// popular) with Zipf exponent s, rate reads a second from start, each
// reading the given fields from store main, and calls fn for each.
func ZipfTrace(n int, s float64, reads int, rate float64, seed uint64, start time.Time, fields []string, fn func(TraceRecord) error) error {
	z, err := NewZipf(n, s, seed)
	if err != nil {
		return err
	}
	if reads <= 0 || !(rate > 0) {
		return errors.New("zipf: reads and rate must be positive")
	}
	step := time.Duration(float64(time.Second) / rate)
	buf := make([]byte, 0, 24)
	for i := range reads {
		buf = strconv.AppendInt(append(buf[:0], "st_"...), int64(z.Next()+1), 10)
		rec := TraceRecord{Time: start.Add(time.Duration(i) * step), Store: "main", Key: string(buf), Fields: fields}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}
