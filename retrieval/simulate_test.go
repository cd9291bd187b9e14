package retrieval

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestReadTrace(t *testing.T) {
	in := `OK
1700000000.250000 [0 127.0.0.1:50000] "HMGET" "st_1" "1364148139" "42"
1700000001.000000 [0 127.0.0.1:50000] "PING"
1700000002.500000 [0 lua] "hmget" "cx \"q\"\\" "1"

1700000003.000000 [0 [::1]:6379] "HMGET" "k\xe2\x82\xac" "2"
{"time":"2024-01-02T03:04:05Z","store":"search","key":"st_9","fields":["7","8"]}
`
	var got []TraceRecord
	if err := ReadTrace(strings.NewReader(in), "main", func(r TraceRecord) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []TraceRecord{
		{Time: time.Unix(1700000000, 250000000).UTC(), Store: "main", Key: "st_1", Fields: []string{"1364148139", "42"}},
		{Time: time.Unix(1700000002, 500000000).UTC(), Store: "main", Key: `cx "q"\`, Fields: []string{"1"}},
		{Time: time.Unix(1700000003, 0).UTC(), Store: "main", Key: "k€", Fields: []string{"2"}},
		{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Store: "search", Key: "st_9", Fields: []string{"7", "8"}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Microsecond })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestReadTraceErrors(t *testing.T) {
	for _, in := range []string{
		"hello\n",
		"{\"key\": \"st_1\"}\n",
		"{\"key\": \"st_1\", \"fields\": [\"1\"], \"extra\": 1}\n",
		"{not json\n",
		"1700000000.1 [0 x] \"HMGET\" \"st_1\n",
		"1700000000.1 [0 x] \"HMGET\" \"st_1\"\n",
		"1700000000.1 [0 x] HMGET st_1 1\n",
		"1700000000.1 [0 x] \"HMGET\" \"st_\\x4\" \"1\"\n",
		"17e99 [0 x] \"HMGET\" \"st_1\" \"1\"\n",
		"1700000000.1 \"HMGET\" \"st_1\" \"1\"\n",
	} {
		err := ReadTrace(strings.NewReader(in), "main", func(TraceRecord) error { return nil })
		if !errors.Is(err, ErrTrace) {
			t.Errorf("%q: got %v, want ErrTrace", in, err)
		}
	}
	stop := errors.New("stop")
	if err := ReadTrace(strings.NewReader("1.5 [0 x] \"HMGET\" \"a\" \"1\"\n"), "main", func(TraceRecord) error { return stop }); err != stop {
		t.Errorf("fn's error: got %v", err)
	}
}

func FuzzReadTrace(f *testing.F) {
	f.Add("1700000000.250000 [0 127.0.0.1:50000] \"HMGET\" \"st_1\" \"1364148139\"\n")
	f.Add("{\"time\":\"2024-01-02T03:04:05Z\",\"store\":\"s\",\"key\":\"k\",\"fields\":[\"1\"]}\n")
	f.Add("1.0 [0 lua] \"hmget\" \"\\x00\\\"\" \"\\n\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		err := ReadTrace(strings.NewReader(in), "main", func(r TraceRecord) error {
			if r.Key == "" && len(r.Fields) == 0 {
				t.Fatalf("empty read from %q", in)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrTrace) {
			t.Fatalf("error %v does not wrap ErrTrace", err)
		}
	})
}

func TestZipf(t *testing.T) {
	const n, s, draws = 1000, 1.0, 200000
	z, err := NewZipf(n, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, n)
	for range draws {
		counts[z.Next()]++
	}
	h := 0.0
	for i := range n {
		h += 1 / math.Pow(float64(i+1), s)
	}
	for _, rank := range []int{0, 1, 9, 99} {
		want := draws / (h * math.Pow(float64(rank+1), s))
		if got := float64(counts[rank]); math.Abs(got-want) > 5*math.Sqrt(want) {
			t.Errorf("rank %d drawn %v times, want about %.0f", rank, got, want)
		}
	}
	for _, bad := range [][2]float64{{0, 1}, {10, 0}, {10, -1}, {10, math.NaN()}} {
		if _, err := NewZipf(int(bad[0]), bad[1], 1); err == nil {
			t.Errorf("NewZipf(%v, %v) accepted", bad[0], bad[1])
		}
	}
}

func TestSimulate(t *testing.T) {
	var reads []SimRead
	start := time.Unix(1700000000, 0)
	err := ZipfTrace(5000, 1.1, 40000, 1000, 7, start, []string{"1", "2"}, func(r TraceRecord) error {
		reads = append(reads, SimRead{Key: SimKey(r), Time: r.Time.UnixNano()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := Simulate(reads, []int{50, 500, 100000}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if sim.Reads != 40000 || len(sim.Points) != 10 || sim.Points[9].Reads != 40000 {
		t.Fatalf("%d reads, %d points", sim.Reads, len(sim.Points))
	}
	if got := sim.Points[9].Time; !got.Equal(start.Add(39999*time.Millisecond)) || !sim.Start.Equal(start) {
		t.Errorf("last point at %v", got)
	}
	h := sim.HitRates
	if !(h[0] < h[1] && h[1] <= h[2] && h[2] <= sim.Ideal+1e-9) {
		t.Errorf("hit rates %v (ideal %v): want them to grow with the cache", h, sim.Ideal)
	}
	// A cache larger than the keys is the unbounded cache.
	if math.Abs(h[2]-sim.Ideal) > 1e-9 {
		t.Errorf("a cache of every key hits %v, the ideal is %v", h[2], sim.Ideal)
	}
	// Warming up: the last window hits more than the first.
	if p := sim.Points; p[9].Window[1] <= p[0].Window[1] {
		t.Errorf("the 500-entry cache hit %v at the start and %v at the end", p[0].Window[1], p[9].Window[1])
	}
	// The same reads replay about the same way (otter seeds its sketch at
	// random).
	again, _ := Simulate(reads, []int{50, 500, 100000}, 10)
	if diff := cmp.Diff(sim.HitRates, again.HitRates, cmpopts.EquateApprox(0, 0.03)); diff != "" {
		t.Errorf("two replays differ:\n%s", diff)
	}
	// Keys are the store, the entity key and the fields together.
	a := SimKey(TraceRecord{Store: "main", Key: "st_1", Fields: []string{"1", "2"}})
	for _, r := range []TraceRecord{
		{Store: "search", Key: "st_1", Fields: []string{"1", "2"}},
		{Store: "main", Key: "st_1", Fields: []string{"1"}},
		{Store: "main", Key: "st_1", Fields: []string{"12"}},
		{Store: "main", Key: "st_11", Fields: []string{"2"}},
	} {
		if SimKey(r) == a {
			t.Errorf("%+v has the key of main/st_1/[1 2]", r)
		}
	}
	if _, err := Simulate(nil, []int{1}, 1); err == nil {
		t.Error("an empty trace was simulated")
	}
	if _, err := Simulate(reads, []int{0}, 1); err == nil {
		t.Error("a cache of size 0 was simulated")
	}
}
