package serving

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/seer-ml/seer/features"
)

// displayPlan reads every quickstart catalog feature, one of each value
// type, as /v1/features does.
func displayPlan(t testing.TB) *features.Plan {
	t.Helper()
	data, err := os.ReadFile("../configs/quickstart/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := features.ParseCatalog(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range c.Specs {
		names = append(names, s.Name)
	}
	p, err := c.DisplayPlan(names)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeBody decodes body with the request decoder.
func decodeBody(body string, kind bodyKind) (*request, error) {
	req := newRequest()
	req.body = body
	return req, req.decode(kind, limits{})
}

// The decoded request in one shape for both decoders, request features
// left out (they are compared typed).
type (
	plainRequest struct {
		Debug      bool
		OnDegraded string
		Queries    []plainQuery
	}
	plainQuery struct {
		ID, Model  string
		Debug      bool
		OnDegraded string
		Context    map[string]string
		Names      []string
		Cands      []plainCandidate
	}
	plainCandidate struct {
		ID       string
		Entities map[string]string
	}
)

func plainNew(req *request) plainRequest {
	out := plainRequest{Debug: req.debug, OnDegraded: req.onDegraded}
	for _, q := range req.queries[:req.nq] {
		pq := plainQuery{ID: q.id, Model: q.model, Debug: q.debug, OnDegraded: q.onDegraded, Names: q.names[:q.nn]}
		if q.context.set {
			pq.Context = q.context.m
		}
		for _, c := range q.cands[:q.nc] {
			pc := plainCandidate{ID: c.id}
			if c.entities.set {
				pc.Entities = c.entities.m
			}
			pq.Cands = append(pq.Cands, pc)
		}
		out.Queries = append(out.Queries, pq)
	}
	return out
}

func plainCands(cs []candidate) []plainCandidate {
	var out []plainCandidate
	for _, c := range cs {
		out = append(out, plainCandidate{ID: c.ID, Entities: c.Entities})
	}
	return out
}

var equalValues = cmp.Options{
	cmp.Comparer(func(a, b features.Value) bool { return a.Equal(b) }),
	cmpopts.EquateEmpty(),
}

// sameError reports whether two errors from decoding or typing a body are
// the same. encoding/json's decoder reported the first bad entry of an
// entity map or of request features in map order, so there only the path
// must agree.
func sameError(got, want error) bool {
	g, w := got.Error(), want.Error()
	if strings.HasPrefix(w, "body: entity ") {
		return strings.HasPrefix(g, "body: entity ")
	}
	// encoding/json named an unknown field without its path; the decoder
	// names the path, ending with the field.
	if quoted, ok := strings.CutPrefix(w, "body: json: unknown field "); ok {
		key, err := strconv.Unquote(quoted)
		return err == nil && (g == fieldText(key)+": unknown field" || strings.HasSuffix(g, "]."+fieldText(key)+": unknown field"))
	}
	if wp, _, ok := strings.Cut(w, ".features."); ok {
		gp, _, _ := strings.Cut(g, ".features.")
		return gp == wp
	}
	return g == w
}

// checkDecode decodes body as kind with the request decoder and with the
// reference, and fails unless both give the same request, and the same
// queries typed by each plan, or the same error.
func checkDecode(t *testing.T, body []byte, kind bodyKind, plans []*features.Plan) {
	t.Helper()
	req, err := decodeBody(string(body), kind)
	defer req.release()
	var (
		want    plainRequest
		refErr  error
		queries []predictQuery
	)
	switch kind {
	case predictBody:
		var ref predictRequest
		refErr = decodeJSON(body, &ref)
		queries, want.Debug, want.OnDegraded = ref.Queries, ref.Debug, ref.OnDegraded
		for _, q := range ref.Queries {
			want.Queries = append(want.Queries, plainQuery{ID: q.ID, Model: q.Model, Debug: q.Debug, OnDegraded: q.OnDegraded,
				Context: q.Context, Cands: plainCands(q.Candidates)})
		}
	case featuresBody:
		var ref featuresRequest
		refErr = decodeJSON(body, &ref)
		want.OnDegraded = ref.OnDegraded
		for _, q := range ref.Queries {
			want.Queries = append(want.Queries, plainQuery{ID: q.ID, OnDegraded: q.OnDegraded, Context: q.Context, Names: q.Features, Cands: plainCands(q.Candidates)})
			queries = append(queries, predictQuery{Context: q.Context, Candidates: q.Candidates})
		}
	}
	if err != nil || refErr != nil {
		if err == nil || refErr == nil || !sameError(err, refErr) {
			t.Fatalf("decode %q:\n got error %v\nwant error %v", body, err, refErr)
		}
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("decode error %v is not a bad request", err)
		}
		return
	}
	if diff := cmp.Diff(want, plainNew(req), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("decode %q: (-want +got)\n%s", body, diff)
	}
	for _, p := range plans {
		for i, q := range queries {
			wantQ, wantErr := buildQuery(p, fmt.Sprintf("queries[%d]", i), q.Context, q.Features, q.Candidates)
			gotQ, err := req.query(p, i)
			switch {
			case err != nil || wantErr != nil:
				if err == nil || wantErr == nil || !sameError(err, wantErr) {
					t.Fatalf("query %d of %q:\n got error %v\nwant error %v", i, body, err, wantErr)
				}
			default:
				if diff := cmp.Diff(wantQ, gotQ, equalValues); diff != "" {
					t.Fatalf("query %d of %q: (-want +got)\n%s", i, body, diff)
				}
			}
		}
	}
}

// TestDecodeMessages pins the errors of bad bodies, word for word, and
// checks that the reference gave the same.
func TestDecodeMessages(t *testing.T) {
	plans := []*features.Plan{demoPlan(t)}
	tests := []struct {
		name string
		kind bodyKind
		body string
		want string // "" for no error
	}{
		{"ok", predictBody, `{"queries": [{"model": "m"}]}`, ""},
		{"empty", predictBody, " \n", "body: empty"},
		{"unexpected end", predictBody, `{"queries": [`, "body: malformed JSON: unexpected end"},
		{"not json", predictBody, `hello`, "body: malformed JSON at byte 1: invalid character 'h' looking for beginning of value"},
		{"bad key", predictBody, `{"queries": [], x}`, "body: malformed JSON at byte 17: invalid character 'x' looking for beginning of object key string"},
		{"no colon", predictBody, `{"queries" 1}`, "body: malformed JSON at byte 12: invalid character '1' after object key"},
		{"after member", predictBody, `{"queries": [] "debug": true}`, "body: malformed JSON at byte 16: invalid character '\"' after object key:value pair"},
		{"after element", predictBody, `{"queries": [{} {}]}`, "body: malformed JSON at byte 17: invalid character '{' after array element"},
		{"trailing comma", predictBody, `{"queries": [{},]}`, "body: malformed JSON at byte 17: invalid character ']' looking for beginning of value"},
		{"control in string", predictBody, "{\"queries\": [{\"id\": \"a\tb\"}]}", `body: malformed JSON at byte 23: invalid character '\t' in string literal`},
		{"bad escape", predictBody, `{"queries": [{"id": "a\x"}]}`, "body: malformed JSON at byte 24: invalid character 'x' in string escape code"},
		{"bad unicode escape", predictBody, `{"queries": [{"id": "\u12g4"}]}`, `body: malformed JSON at byte 26: invalid character 'g' in \u hexadecimal character escape`},
		{"bad number", predictBody, `{"queries": [{"features": {"x": -a}}]}`, "body: malformed JSON at byte 34: invalid character 'a' in numeric literal"},
		{"bad fraction", predictBody, `{"queries": [{"features": {"x": 1.e5}}]}`, "body: malformed JSON at byte 35: invalid character 'e' after decimal point in numeric literal"},
		{"bad exponent", predictBody, `{"queries": [{"features": {"x": 1e+}}]}`, "body: malformed JSON at byte 36: invalid character '}' in exponent of numeric literal"},
		{"leading zero", predictBody, `{"queries": [{"features": {"x": 01}}]}`, "body: malformed JSON at byte 34: invalid character '1' after object key:value pair"},
		{"bad literal", predictBody, `{"debug": tru}`, "body: malformed JSON at byte 14: invalid character '}' in literal true (expecting 'e')"},
		{"non-ASCII character", predictBody, "{\"queries\": \xc3\xa9}", "body: malformed JSON at byte 13: invalid character 'Ã' looking for beginning of value"},
		{"too deep", predictBody, `{"queries": [{"features": {"x": ` + strings.Repeat("[", 10000), "body: malformed JSON at byte 10029: invalid character '[' exceeded max depth"},
		{"unknown field", predictBody, `{"queries": [{"model": "store_ranker", "candidatez": []}]}`, `queries[0].candidatez: unknown field`},
		{"unknown top field", featuresBody, `{"debug": true, "queries": []}`, `debug: unknown field`},
		{"model on features", featuresBody, `{"queries": [{"model": "m"}]}`, `queries[0].model: unknown field`},
		{"unknown candidate field", predictBody, `{"queries": [{}, {"candidates": [{}, {}, {"entity": {}}]}]}`, `queries[1].candidates[2].entity: unknown field`},
		{"unknown odd field", predictBody, `{"queries": [{"con text": 1}]}`, `queries[0]."con text": unknown field`},
		{"unknown field after a query", predictBody, `{"queries": [{"candidates": [{}]}], "contxt": {}}`, `contxt: unknown field`},
		{"field type", predictBody, `{"queries": [{"model": 7}]}`, "queries.model: want string, got JSON number"},
		{"queries type", predictBody, `{"queries": {}}`, "queries: want []serving.predictQuery, got JSON object"},
		{"query type", featuresBody, `{"queries": [true]}`, "queries: want serving.featuresQuery, got JSON bool"},
		{"features type", predictBody, `{"queries": [{"features": []}]}`, "queries.features: want map[string]interface {}, got JSON array"},
		{"names type", featuresBody, `{"queries": [{"features": "x"}]}`, "queries.features: want []string, got JSON string"},
		{"name type", featuresBody, `{"queries": [{"features": ["x", 1]}]}`, "queries.features: want string, got JSON number"},
		{"candidate id type", predictBody, `{"queries": [{"candidates": [{"id": {}}]}]}`, "queries.candidates.id: want string, got JSON object"},
		{"candidate type", predictBody, `{"queries": [{"candidates": ["x"]}]}`, "queries.candidates: want serving.candidate, got JSON string"},
		{"debug type", predictBody, `{"debug": "yes"}`, "debug: want bool, got JSON string"},
		{"on_degraded type", predictBody, `{"on_degraded": true}`, "on_degraded: want string, got JSON bool"},
		{"query on_degraded type", featuresBody, `{"queries": [{"on_degraded": 1}]}`, "queries.on_degraded: want string, got JSON number"},
		{"on_degraded", predictBody, `{"on_degraded": "fail", "queries": [{"on_degraded": "defaults"}, {"On_Degraded": null}]}`, ""},
		{"features on_degraded", featuresBody, `{"queries": [{"on_degraded": "fail"}], "on_degraded": "defaults"}`, ""},
		{"body type", predictBody, `[1]`, "body: want serving.predictRequest, got JSON array"},
		{"body number", featuresBody, `5x`, "body: want serving.featuresRequest, got JSON number"},
		{"first type error", predictBody, `{"debug": 1, "queries": 2}`, "debug: want bool, got JSON number"},
		{"syntax error wins", predictBody, `{"debug": 1, "queries": [{"context": 5}], "x": }`, "body: malformed JSON at byte 48: invalid character '}' looking for beginning of value"},
		{"entity error wins", predictBody, `{"debug": 1, "queries": [{"context": 5}]}`, "body: entities: want an object of entity type to id"},
		{"entity float", predictBody, `{"queries": [{"context": {"store": 1.5}}]}`, "body: entity store: want a string or integer id, got 1.5"},
		{"entity empty", predictBody, `{"queries": [{"candidates": [{"entities": {"store": ""}}]}]}`, "body: entity store: want a non-empty id"},
		{"entity null id", predictBody, `{"queries": [{"context": {"store": null}}]}`, "body: entity store: want a string or integer id, got null"},
		{"entity long", predictBody, `{"queries": [{"context": {"store": [` + strings.Repeat("1,", 30) + `1]}}]}`, "body: entity store: want a string or integer id, got [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1..."},
		{"entity colon", predictBody, `{"queries": [{"context": {"store": "1:2"}}]}`, "body: entity store: bad entity id: ':' at byte 1 (it separates the parts of composite keys)"},
		{"entity brace", predictBody, `{"queries": [{"candidates": [{"entities": {"store": "{7}"}}]}]}`, "body: entity store: bad entity id: '{' at byte 0 (braces would make a Redis hash tag of part of the key)"},
		{"entity control", predictBody, `{"queries": [{"context": {"consumer": "a\u0000"}}]}`, "body: entity consumer: bad entity id: control byte 0x00 at byte 1"},
		{"entity too long", predictBody, `{"queries": [{"context": {"store": "` + strings.Repeat("x", 1025) + `"}}]}`, "body: entity store: bad entity id: 1025 bytes is over the limit of 1024"},
		{"entity longest", predictBody, `{"queries": [{"context": {"store": "` + strings.Repeat("x", 1024) + `"}}]}`, ""},
		{"entity repeated", predictBody, `{"queries": [{"context": {"store": 1.5, "store": "1"}}]}`, ""},
		{"entity repeated bad", predictBody, `{"queries": [{"context": {"consumer": "7", "store": "1", "store": true}}]}`, "body: entity store: want a string or integer id, got true"},
		{"trailing", predictBody, `{"queries": [{"model": "store_ranker"}]} {}`, "body: data after the JSON object"},
		{"trailing brace", predictBody, `{"queries": []}}`, "body: data after the JSON object"},
		{"trailing after null", predictBody, `null x`, "body: data after the JSON object"},
		{"null body", predictBody, `null`, ""},
		{"case-insensitive", predictBody, `{"QUERIES": [{"Model": "m", "CONTEXT": {"store": 1}}], "Debug": true}`, ""},
		{"long s", predictBody, `{"querieſ": []}`, ""},
		{"wrong type query", predictBody, `{"queries": [{"features": {"hour_of_day": 1.5}}]}`, `queries[0].features.hour_of_day: want int, got number 1.5`},
		{"wrong type", predictBody, `{"queries": [{"candidates": [{}, {"features": {"distance_km": "far"}}]}]}`, `queries[0].candidates[1].features.distance_km: want float, got string "far"`},
		{"out of range", predictBody, `{"queries": [{"features": {"distance_km": 1e400}}]}`, `queries[0].features.distance_km: want float, got number 1e400`},
		{"bad category", predictBody, `{"queries": [{"features": {"store_cuisine": 3}}]}`, `queries[0].features.store_cuisine: want string, got number 3`},
		{"last value wins", predictBody, `{"queries": [{"features": {"distance_km": "far", "distance_km": 2}}]}`, ""},
		{"null not given", predictBody, `{"queries": [{"features": {"distance_km": 2, "distance_km": null}}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecode(t, []byte(tt.body), tt.kind, plans)
			req, err := decodeBody(tt.body, tt.kind)
			defer req.release()
			if err == nil && req.nq > 0 {
				_, err = req.query(plans[0], 0)
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDecodeValues checks request features typed by the plan, and the
// repeated fields encoding/json merged.
func TestDecodeValues(t *testing.T) {
	p := displayPlan(t)
	body := `{"queries": [{"model": "m", "context": {"consumer": 42},
	  "features": {"store_avg_rating": 4, "store_num_ratings": 1e3, "store_is_open": false, "unknown": {"x": [1]},
	               "store_cuisine": "th\u00e1i \ud83c\udf5c \ud800", "consumer_embedding": [0.5, -1],
	               "consumer_recent_cuisines": ["a", "b"]},
	  "candidates": [{"entities": {"store": "s1"}}, {"entities": {"store": -7}, "features": {"store_num_ratings": -0}}],
	  "features": {"consumer_avg_spend": 2.5, "store_avg_rating": null}}]}`
	req, err := decodeBody(body, predictBody)
	defer req.release()
	if err != nil {
		t.Fatal(err)
	}
	got, err := req.query(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := features.Query{
		Context: map[string]string{"consumer": "42"},
		Features: map[string]features.Value{
			"store_num_ratings":        features.IntValue(1000),
			"store_is_open":            features.BoolValue(false),
			"store_cuisine":            features.StringValue("thái 🍜 \ufffd"),
			"consumer_embedding":       features.VectorValue([]float32{0.5, -1}),
			"consumer_recent_cuisines": features.ListValue([]string{"a", "b"}),
			"consumer_avg_spend":       features.FloatValue(2.5),
		},
		Candidates: []features.Candidate{
			{Entities: map[string]string{"store": "s1"}},
			{Entities: map[string]string{"store": "-7"}, Features: map[string]features.Value{"store_num_ratings": features.IntValue(0)}},
		},
	}
	if diff := cmp.Diff(want, got, equalValues); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	checkDecode(t, []byte(body), predictBody, []*features.Plan{p})

	// A list field given again decodes into the elements before it, and
	// elements once decoded come back when the list grows again, as with
	// encoding/json.
	for _, body := range []string{
		`{"queries": [{"id": "a", "model": "m"}, {"id": "b"}], "queries": [{"model": "n"}]}`,
		`{"queries": [{"id": "a"}, {"id": "b"}], "queries": [null], "queries": [{}, {}]}`,
		`{"queries": [{"id": "a"}, {"id": "b"}], "queries": [], "queries": [{}, {}]}`,
		`{"queries": [{"candidates": [{"id": "1", "features": {"distance_km": 1}}], "candidates": [{"features": {"hour_of_day": 2}}]}]}`,
		`{"queries": [{"features": {"distance_km": 1}, "features": null, "features": {"hour_of_day": 3}}]}`,
		`{"queries": [{"context": {"store": 1}, "context": {"consumer": 2}}]}`,
		`{"queries": [{"context": {"store": 1}, "context": null}]}`,
		`{"queries": [{"id": "x", "id": null, "debug": true, "debug": null}]}`,
	} {
		checkDecode(t, []byte(body), predictBody, []*features.Plan{demoPlan(t), p})
	}
	for _, body := range []string{
		`{"queries": [{"features": ["a", "b"], "features": [null]}]}`,
		`{"queries": [{"features": ["a", "b"], "features": ["c"], "features": [null, null]}]}`,
		`{"queries": [{"features": ["a", null], "candidates": [{"features": {"store_cuisine": "x"}}]}]}`,
	} {
		checkDecode(t, []byte(body), featuresBody, []*features.Plan{p})
	}
}

// TestDecodeAllocs pins the allocations of decoding the benchmark's
// 200-candidate body and typing its query: none once the request's memory
// is warm (the handler's reading of the body adds the body's string).
func TestDecodeAllocs(t *testing.T) {
	p := demoPlan(t)
	body := rankingBody(false)
	req := new(request)
	got := testing.AllocsPerRun(50, func() {
		req.body = body
		if err := req.decode(predictBody, limits{}); err != nil {
			t.Fatal(err)
		}
		if _, err := req.query(p, 0); err != nil {
			t.Fatal(err)
		}
		req.empty()
	})
	if got > 0 {
		t.Errorf("decoding a 200-candidate body: %v allocations, want none", got)
	}
}

// TestAppendResultsAllocs pins the allocations of writing a 200-candidate
// answer into a warm buffer: none, debug rows included once the plan's
// layout is known (the server keeps it).
func TestAppendResultsAllocs(t *testing.T) {
	p := demoPlan(t)
	vals := make([]float64, 200)
	cells := make([]features.Cell, 200*len(p.Inputs))
	for i := range cells {
		cells[i] = features.Cell{Value: features.FloatValue(1.5), Source: features.FromRedis, Updated: features.Stamp(1700000000 + i%2)}
	}
	var layouts cellLayouts
	for _, tt := range []struct {
		debug bool
		want  float64
	}{{false, 0}, {true, 0}} {
		res := []queryResult{{id: "q", model: "store_ranker", version: "1", scores: scores{vals: vals, width: 1}}}
		if tt.debug {
			res[0].plan, res[0].layout, res[0].cells = p, layouts.of(p), cells
		}
		buf := appendResults(nil, res, true)
		got := testing.AllocsPerRun(50, func() { buf = appendResults(buf[:0], res, true) })
		if got > tt.want {
			t.Errorf("debug %v: %v allocations, want at most %v", tt.debug, got, tt.want)
		}
	}
}

// TestAppendResults checks the answers written by hand against what
// encoding/json wrote.
func TestAppendResults(t *testing.T) {
	demo, disp := demoPlan(t), displayPlan(t)
	cellsOf := func(p *features.Plan, rows int, vals ...features.Value) []features.Cell {
		cells := make([]features.Cell, rows*len(p.Inputs))
		for i := range cells {
			cells[i] = features.Cell{Value: vals[i%len(vals)], Source: features.Origin(i % 4)}
		}
		return cells
	}
	vals := []features.Value{
		features.FloatValue(3.25), features.FloatValue(math.NaN()), features.FloatValue(math.Inf(-1)), features.FloatValue(1e-7),
		features.FloatValue(1e21), features.IntValue(-9), features.BoolValue(true), {},
		features.StringValue("<a&b> \"q\" \\ \n\t\x01 \u2028 \xff é"), features.StringValue(""),
		features.VectorValue([]float32{0.1, float32(math.NaN()), 3e38}), features.VectorValue(nil),
		features.ListValue([]string{"x", "<y>"}), features.ListValue(nil), features.ListValue([]string{}),
	}
	predict := []queryResult{
		{id: "q<1>", model: "store_ranker", version: "1", scores: scores{vals: []float64{0.5, math.NaN(), 1e-7}, width: 1}},
		{model: "multi", version: "2", scores: scores{vals: []float64{1, 2, 3, 4}, width: 2}, degraded: []string{"main", "b&c"}, degradedValues: 7,
			plan: demo, cells: cellsOf(demo, 2, vals...)},
		{model: "none", version: "3", scores: scores{width: 3}},
	}
	var refPredict []refQueryResult
	for _, r := range predict {
		ref := refQueryResult{ID: r.id, Model: r.model, Version: r.version, Scores: refScores(r.scores),
			Degraded: len(r.degraded) > 0, DegradedValues: r.degradedValues, DegradedStores: r.degraded}
		if r.cells != nil {
			ref.Debug = cellRows(r.plan, r.cells)
		}
		refPredict = append(refPredict, ref)
	}
	feats := []queryResult{
		{id: "f", plan: disp, cells: cellsOf(disp, 3, vals...)},
		{plan: disp, cells: cellsOf(disp, 1, vals[8:]...), degraded: []string{"main"}, degradedValues: 12},
	}
	var refFeats []refFeaturesResult
	for _, r := range feats {
		refFeats = append(refFeats, refFeaturesResult{ID: r.id, Rows: cellRows(r.plan, r.cells), Degraded: len(r.degraded) > 0,
			DegradedValues: r.degradedValues, DegradedStores: r.degraded})
	}
	for _, tt := range []struct {
		name    string
		results []queryResult
		predict bool
		ref     any
	}{
		{"predict", predict, true, refPredict},
		{"features", feats, false, refFeats},
	} {
		want, err := json.Marshal(map[string]any{"results": tt.ref})
		if err != nil {
			t.Fatal(err)
		}
		got := appendResults(nil, tt.results, tt.predict)
		if string(got) != string(want)+"\n" {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, want)
		}
	}
}

// TestDecodeLimits: a body with more queries, or more candidates in a
// query, than the limits is refused as soon as the decoder meets the one
// too many: what it allocates does not grow with the rest of the body.
func TestDecodeLimits(t *testing.T) {
	lim := limits{queries: 64, candidates: 1000}
	manyCands := `{"queries": [{"model": "m", "candidates": [` + strings.Repeat(`{},`, 1_000_000) + `{}]}]}`
	manyQueries := `{"queries": [` + strings.Repeat(`{},`, 500_000) + `{}]}`
	tests := []struct {
		name, body, want string
	}{
		{"candidates", manyCands, "queries[0].candidates: more than the limit of 1000"},
		{"candidates of the second query", `{"queries": [{}, {"candidates": [` + strings.Repeat(`{},`, 1000) + `{}]}]}`, "queries[1].candidates: more than the limit of 1000"},
		{"queries", manyQueries, "queries: more than the limit of 64"},
		{"before a syntax error", `{"queries": [` + strings.Repeat(`{},`, 65) + `x]}`, "queries: more than the limit of 64"},
		{"at the limits", `{"queries": [{"candidates": [` + strings.Repeat(`{},`, 999) + `{}]}` + strings.Repeat(`, {}`, 63) + `]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			req := newRequest()
			req.body = tt.body
			err := req.decode(predictBody, lim)
			runtime.ReadMemStats(&after)
			req.release()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want || (err != nil && !errors.Is(err, ErrBadRequest)) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			// 1000 candidates take about 200 KiB; a million would take
			// hundreds of MiB.
			if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
				t.Errorf("decoding a %d-byte body allocated %d KiB", len(tt.body), n>>10)
			}
		})
	}
}

// TestDecodeReusedEntities decodes requests one after the other into one
// request's memory: a candidate's entities are those of its own request,
// never left over from the one before.
func TestDecodeReusedEntities(t *testing.T) {
	req := newRequest()
	defer req.release()
	bodies := []struct {
		body string
		want []map[string]string // per candidate; nil when not given
	}{
		{`{"queries": [{"context": {"consumer": "7"}, "candidates": [{"entities": {"store": "1", "region": "eu"}}, {"entities": {"store": "2"}}]}]}`,
			[]map[string]string{{"store": "1", "region": "eu"}, {"store": "2"}}},
		{`{"queries": [{"candidates": [{"entities": {"store": "3"}}, {}, {"entities": null}]}]}`,
			[]map[string]string{{"store": "3"}, nil, {}}},
		{`{"queries": [{"candidates": [{}, {"entities": {"region": "us"}}]}]}`,
			[]map[string]string{nil, {"region": "us"}}},
	}
	for n, b := range bodies {
		req.empty()
		req.body = b.body
		if err := req.decode(predictBody, limits{queries: 64, candidates: 1000}); err != nil {
			t.Fatalf("body %d: %v", n, err)
		}
		q := &req.queries[0]
		if q.context.set != (n == 0) {
			t.Errorf("body %d: context given: %v", n, q.context.set)
		}
		if q.nc != len(b.want) {
			t.Fatalf("body %d: %d candidates, want %d", n, q.nc, len(b.want))
		}
		for i, want := range b.want {
			e := q.cands[i].entities
			if e.set != (want != nil) || e.set && !maps.Equal(e.m, want) {
				t.Errorf("body %d, candidate %d: entities %v (given: %v), want %v", n, i, e.m, e.set, want)
			}
		}
	}
}
