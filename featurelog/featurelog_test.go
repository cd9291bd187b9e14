package featurelog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/seer-ml/seer/features"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const catalog = `
entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: rating, entity: store, type: float, store: main, default: 4.2}
  - {name: orders, entity: consumer, type: int, store: main}
  - {name: cuisine, entity: store, type: string, store: main, default: ""}
  - {name: open, entity: store, type: bool, store: main, default: true}
`

// testPlan compiles the inputs every test logs: four catalog features and
// a request input with a transform.
func testPlan(t testing.TB) *features.Plan {
	t.Helper()
	c, err := features.ParseCatalog([]byte(catalog), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := features.Compile(c, []features.InputDecl{
		{Name: "rating"}, {Name: "orders"},
		{Name: "cuisine", Categories: []string{"pizza", "thai"}},
		{Name: "open"},
		{Name: "distance", Source: features.SourceRequest, Type: "float", Transform: "log1p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// line is a feature log line as a training job reads it.
type line struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	QueryID   string    `json:"query_id"`
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Rows      []struct {
		Entities map[string]string `json:"entities"`
		Inputs   map[string]any    `json:"inputs"`
		Sources  map[string]string `json:"sources"`
		Why      map[string]string `json:"why"`
		Scores   []*float64        `json:"scores"`
	} `json:"rows"`
	DegradedValues int      `json:"degraded_values"`
	Degraded       []string `json:"degraded_stores"`
}

// twoRows is a query of two candidates with every kind of value and
// origin, and its scores.
func twoRows(p *features.Plan, id string) *Query {
	body := `{"s1": "thai"}` // request strings are substrings of a body
	q := &features.Query{
		Context: map[string]string{"consumer": "c9", "store": "ctx"},
		Candidates: []features.Candidate{
			{Entities: map[string]string{"store": "s1"}},
			{Entities: map[string]string{"store": `s"2`}},
		},
	}
	cells := []features.Cell{
		{Value: features.FloatValue(4.75), Source: features.FromRedis},
		{Value: features.IntValue(1 << 60), Source: features.FromCache},
		{Value: features.StringValue(body[8:12]), Source: features.FromRequest},
		{Value: features.BoolValue(false), Source: features.FromRedis},
		{Value: features.FloatValue(0.1), Source: features.FromRequest},

		{Value: features.FloatValue(4.2), Source: features.FromDefault, Why: features.ReasonStoreDegraded},
		{Value: features.Value{}, Source: features.FromDefault, Why: features.ReasonAbsent},
		{Value: features.StringValue("sushi"), Source: features.FromRedis},
		{Value: features.BoolValue(true), Source: features.FromDefault, Why: features.ReasonStoreDegraded},
		{Value: features.FloatValue(1e-300), Source: features.FromRequest},
	}
	return &Query{
		Time: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC), RequestID: "req-1", QueryID: id,
		Model: "ranker", Version: "3", Plan: p, Query: q, Cells: cells,
		Scores: []float64{math.Nextafter(0.3, 1), math.NaN()}, Outputs: 1, Degraded: []string{"main"},
	}
}

func open(t *testing.T, cfg Config, stdout io.Writer) (*Logger, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := Open(cfg, stdout, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, reg
}

func readLines(t *testing.T, data []byte) []line {
	t.Helper()
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result == "" || m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestLine(t *testing.T) {
	p := testPlan(t)
	path := filepath.Join(t.TempDir(), "logs", "deeper", "features.jsonl")
	cfg := DefaultConfig()
	cfg.Path = path
	l, reg := open(t, cfg, nil)
	q := twoRows(p, "q1")
	l.Log(q)
	// Log copied everything: the caller may reuse its memory at once.
	clear(q.Cells)
	clear(q.Scores)
	q.Query.Context["store"] = "changed"
	q.Query.Candidates[0].Entities["store"] = "changed"
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"time":"2024-05-06T07:08:09.123456789Z","request_id":"req-1","query_id":"q1","model":"ranker","version":"3","rows":[` +
		`{"entities":{"consumer":"c9","store":"s1"},"inputs":{"rating":4.75,"orders":1152921504606846976,"cuisine":"thai","open":false,"distance":0.1},` +
		`"sources":{"rating":"redis","orders":"cache","cuisine":"request","open":"redis","distance":"request"},"scores":[0.30000000000000004]},` +
		`{"entities":{"consumer":"c9","store":"s\"2"},"inputs":{"rating":4.2,"orders":null,"cuisine":"sushi","open":true,"distance":1e-300},` +
		`"sources":{"rating":"default","orders":"default","cuisine":"redis","open":"default","distance":"request"},` +
		`"why":{"rating":"store_degraded","orders":"absent","open":"store_degraded"},"scores":[null]}` +
		`],"degraded_values":2,"degraded_stores":["main"]}` + "\n"
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("line (-want +got):\n%s", diff)
	}
	readLines(t, data) // valid JSON of the documented shape
	if got := counter(t, reg, "seer_feature_log_queries_total", "written"); got != 1 {
		t.Errorf("written = %v, want 1", got)
	}
}

func TestContextOnly(t *testing.T) {
	p := testPlan(t)
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.Path = "-"
	l, _ := open(t, cfg, &out)
	q := twoRows(p, "")
	q.Query.Candidates = nil
	q.Cells, q.Scores, q.Degraded = q.Cells[:5], []float64{2, 3}, nil
	q.Outputs = 2
	l.Log(q)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, out.Bytes())
	if len(lines) != 1 || len(lines[0].Rows) != 1 {
		t.Fatalf("got %+v, want one line of one row", lines)
	}
	row := lines[0].Rows[0]
	if diff := cmp.Diff(map[string]string{"consumer": "c9", "store": "ctx"}, row.Entities); diff != "" {
		t.Errorf("entities (-want +got):\n%s", diff)
	}
	if len(row.Scores) != 2 || *row.Scores[0] != 2 || *row.Scores[1] != 3 {
		t.Errorf("scores %v, want [2 3]", row.Scores)
	}
	if lines[0].Degraded != nil || lines[0].QueryID != "" {
		t.Errorf("got degraded %v and query id %q, want neither", lines[0].Degraded, lines[0].QueryID)
	}
}

func TestRotation(t *testing.T) {
	p := testPlan(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "f.jsonl")
	cfg := DefaultConfig()
	cfg.Path, cfg.MaxBytes, cfg.Keep = path, 2000, 2
	l, reg := open(t, cfg, nil)
	const n = 40
	for i := range n {
		l.Log(twoRows(p, fmt.Sprint(i)))
		if i%7 == 0 {
			time.Sleep(time.Millisecond) // let some lines go out alone, others in batches
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The files, oldest first, hold a contiguous run of the last queries,
	// whole lines only, none over max_bytes.
	var ids []string
	for _, name := range []string{path + ".2", path + ".1", path} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > int(cfg.MaxBytes) || len(data) == 0 {
			t.Errorf("%s: %d bytes, want 1 to %d", filepath.Base(name), len(data), cfg.MaxBytes)
		}
		for _, ln := range readLines(t, data) {
			ids = append(ids, ln.QueryID)
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.3 exists (keep is 2): %v", path, err)
	}
	if len(ids) == 0 || len(ids) >= n {
		t.Fatalf("%d lines kept of %d", len(ids), n)
	}
	for k, id := range ids {
		if want := fmt.Sprint(n - len(ids) + k); id != want {
			t.Fatalf("line %d is query %s, want %s (kept: %v)", k, id, want, ids)
		}
	}
	written := counter(t, reg, "seer_feature_log_queries_total", "written")
	rotations := counter(t, reg, "seer_feature_log_rotations_total", "")
	if written != n || rotations < 2 {
		t.Errorf("written %v, rotations %v; want %d and at least 2", written, rotations, n)
	}

	// A restart appends to the file and counts its size.
	before, _ := os.Stat(path)
	l2, _ := open(t, cfg, nil)
	l2.Log(twoRows(p, "again"))
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if after.Size() > cfg.MaxBytes {
		t.Errorf("after a restart the file grew to %d bytes, past max_bytes", after.Size())
	}
	if after.Size() > before.Size() {
		return // appended
	}
	if rotated, err := os.ReadFile(path + ".1"); err != nil || !bytes.Contains(rotated, []byte(`"query_id":"39"`)) {
		t.Errorf("the file neither grew nor rotated: %v", err)
	}
}

func TestKeepZero(t *testing.T) {
	p := testPlan(t)
	path := filepath.Join(t.TempDir(), "f.jsonl")
	cfg := DefaultConfig()
	cfg.Path, cfg.MaxBytes, cfg.Keep = path, 1000, 0
	l, _ := open(t, cfg, nil)
	for i := range 10 {
		l.Log(twoRows(p, fmt.Sprint(i)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("%d files, want only the log", len(entries))
	}
	data, _ := os.ReadFile(path)
	if lines := readLines(t, data); len(lines) != 1 || lines[0].QueryID != "9" {
		t.Errorf("kept %d lines, want query 9 alone", len(lines))
	}
}

// gate is a stdout that blocks every write until it is opened.
type gate struct {
	mu      sync.Mutex
	out     bytes.Buffer
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(p)
}

func TestDropsWhenFull(t *testing.T) {
	p := testPlan(t)
	g := newGate()
	cfg := DefaultConfig()
	cfg.Path, cfg.Queue = "-", 2
	l, reg := open(t, cfg, g)
	l.Log(twoRows(p, "first"))
	<-g.entered // the writer is stuck in its first flush
	start := time.Now()
	for i := range 10 {
		l.Log(twoRows(p, fmt.Sprint(i)))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Log blocked for %v behind a stuck writer", d)
	}
	if got := counter(t, reg, "seer_feature_log_queries_total", "dropped"); got != 8 {
		t.Errorf("dropped = %v, want 8 (queue of 2)", got)
	}
	close(g.open)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ln := range readLines(t, g.out.Bytes()) {
		ids = append(ids, ln.QueryID)
	}
	if diff := cmp.Diff([]string{"first", "0", "1"}, ids); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
	if got := counter(t, reg, "seer_feature_log_queries_total", "written"); got != 3 {
		t.Errorf("written = %v, want 3", got)
	}
	// After Close, queries are dropped.
	l.Log(twoRows(p, "late"))
	if got := counter(t, reg, "seer_feature_log_queries_total", "dropped"); got != 9 {
		t.Errorf("dropped = %v after Close, want 9", got)
	}
}

func TestDropsOverBytes(t *testing.T) {
	p := testPlan(t)
	g := newGate()
	cfg := DefaultConfig()
	cfg.Path, cfg.QueueBytes = "-", 3000
	l, reg := open(t, cfg, g)
	l.Log(twoRows(p, "first"))
	<-g.entered
	for i := range 10 {
		l.Log(twoRows(p, fmt.Sprint(i)))
	}
	dropped := counter(t, reg, "seer_feature_log_queries_total", "dropped")
	if dropped < 5 || dropped == 10 {
		t.Errorf("dropped %v of 10 queries of about 1.4 KB each behind a 3000-byte budget", dropped)
	}
	if q := l.queued.Load(); q > cfg.QueueBytes {
		t.Errorf("%d bytes queued, over the budget of %d", q, cfg.QueueBytes)
	}
	close(g.open)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if q := l.queued.Load(); q != 0 {
		t.Errorf("%d bytes still counted after the queue emptied", q)
	}
	if got := counter(t, reg, "seer_feature_log_queries_total", "written"); got != 11-dropped {
		t.Errorf("written %v, want %v", got, 11-dropped)
	}
}

func TestWriteErrors(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("needs /dev/full to fail writes:", err)
	}
	p := testPlan(t)
	cfg := DefaultConfig()
	cfg.Path = "/dev/full"
	l, reg := open(t, cfg, nil)
	for i := range 5 {
		l.Log(twoRows(p, fmt.Sprint(i)))
	}
	l.Close()
	failed := counter(t, reg, "seer_feature_log_queries_total", "failed")
	errs := counter(t, reg, "seer_feature_log_write_errors_total", "")
	written := counter(t, reg, "seer_feature_log_queries_total", "written")
	if failed != 5 || errs < 1 || written != 0 {
		t.Errorf("failed %v, write errors %v, written %v; want 5, at least 1, 0", failed, errs, written)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no path", func(c *Config) { c.Path = "" }, "path: missing"},
		{"sample", func(c *Config) { c.Sample = 1.5 }, "sample: 1.5 is not between 0 and 1"},
		{"nan sample", func(c *Config) { c.Sample = math.NaN() }, "sample: NaN"},
		{"max bytes", func(c *Config) { c.MaxBytes = 0 }, "max_bytes: must be positive"},
		{"keep", func(c *Config) { c.Keep = -1 }, "keep: negative"},
		{"queue", func(c *Config) { c.Queue = 0 }, "queue and queue_bytes must be positive"},
		{"directory is a file", func(c *Config) { c.Path = filepath.Join(file, "f.jsonl") }, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Path = filepath.Join(dir, "f.jsonl")
			tc.edit(&cfg)
			l, err := Open(cfg, nil, nil, nil)
			if err == nil {
				l.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestSampled(t *testing.T) {
	var nilLogger *Logger
	if nilLogger.Sampled() {
		t.Error("a nil Logger samples")
	}
	for _, sample := range []float64{0, 0.05, 0.5, 1} {
		cfg := DefaultConfig()
		cfg.Path, cfg.Sample = "-", sample
		l, _ := open(t, cfg, io.Discard)
		const n = 200000
		hits := 0
		for range n {
			if l.Sampled() {
				hits++
			}
		}
		// Within 5 standard deviations of the binomial.
		mean, sd := n*sample, math.Sqrt(n*sample*(1-sample))
		if math.Abs(float64(hits)-mean) > 5*sd {
			t.Errorf("sample %v: %d of %d, want about %v", sample, hits, n, mean)
		}
	}
}

// hundredRows is a query of 100 candidates over the test plan.
func hundredRows(p *features.Plan) *Query {
	q := twoRows(p, "bench")
	q.Query.Candidates = make([]features.Candidate, 100)
	q.Cells = make([]features.Cell, 0, 100*len(p.Inputs))
	for i := range q.Query.Candidates {
		q.Query.Candidates[i].Entities = map[string]string{"store": fmt.Sprint(i)}
		q.Cells = append(q.Cells, twoRows(p, "").Cells[5*(i%2):5*(i%2)+5]...)
	}
	q.Scores = make([]float64, 100)
	return q
}

// BenchmarkFill is what the request path pays for a sampled query of 100
// candidates when the queue has room: the copy.
func BenchmarkFill(b *testing.B) {
	p := testPlan(b)
	q := hundredRows(p)
	e := new(entry)
	b.ReportAllocs()
	for b.Loop() {
		e.fill(q)
		e.reset()
	}
}

// BenchmarkLog logs queries of 100 candidates as fast as it can: most are
// dropped, since encoding is slower than copying (dropped/op).
func BenchmarkLog(b *testing.B) {
	p := testPlan(b)
	cfg := DefaultConfig()
	cfg.Path = "-"
	reg := prometheus.NewRegistry()
	l, err := Open(cfg, io.Discard, nil, reg)
	if err != nil {
		b.Fatal(err)
	}
	q := hundredRows(p)
	b.ReportAllocs()
	for b.Loop() {
		l.Log(q)
	}
	b.StopTimer()
	l.Close()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "seer_feature_log_queries_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "dropped" {
					b.ReportMetric(m.GetCounter().GetValue()/float64(b.N), "dropped/op")
				}
			}
		}
	}
}

// BenchmarkEncode is what the writer pays per query of 100 candidates.
func BenchmarkEncode(b *testing.B) {
	p := testPlan(b)
	var e entry
	e.fill(hundredRows(p))
	var buf []byte
	keys := newPlanKeys(p)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendJSON(buf[:0], keys)
	}
	b.SetBytes(int64(len(buf)))
}

// TestSetSample changes the share of a running Logger; a bad share is
// refused and changes nothing.
func TestSetSample(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path, cfg.Sample = "-", 0
	l, _ := open(t, cfg, io.Discard)
	share := func() float64 {
		const n = 100000
		hits := 0
		for range n {
			if l.Sampled() {
				hits++
			}
		}
		return float64(hits) / n
	}
	if got := share(); got != 0 {
		t.Fatalf("sample 0: %v logged", got)
	}
	for _, tt := range []struct{ set, min, max float64 }{
		{1, 1, 1},
		{0.5, 0.48, 0.52},
		{math.Nextafter(1, 0), 0.9999, 1}, // the largest share below 1
		{0, 0, 0},
	} {
		if err := l.SetSample(tt.set); err != nil {
			t.Fatal(err)
		}
		if got := share(); got < tt.min || got > tt.max {
			t.Errorf("SetSample(%v): %v logged, want %v to %v", tt.set, got, tt.min, tt.max)
		}
	}
	if err := l.SetSample(1); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float64{-0.1, 1.5, math.NaN()} {
		if err := l.SetSample(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("SetSample(%v) = %v, want ErrConfig", bad, err)
		}
	}
	if got := share(); got != 1 {
		t.Errorf("after refused shares: %v logged, want all", got)
	}
}
