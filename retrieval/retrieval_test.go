package retrieval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(pausedEnv); addr != "" {
		os.Exit(pausedChild(addr))
	}
	redistest.VerifyTestMain(m)
}

const testCatalog = `
entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx:{id}"}
features:
  - {name: store_rating, entity: store, type: float, store: main, default: 4}
  - {name: store_orders, entity: store, type: int, store: main, max_age: 1h}
  - {name: store_open, entity: store, type: bool, store: main}
  - {name: store_cuisine, entity: store, type: string, store: search}
  - {name: store_embedding, entity: store, type: vector, store: search}
  - {name: store_tags, entity: store, type: list, store: search}
  - {name: consumer_orders, entity: consumer, type: int, store: main}
`

func testCatalogParse(t testing.TB) *features.Catalog {
	t.Helper()
	c, err := features.ParseCatalog([]byte(testCatalog), []string{"main", "search"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// openStore opens a store of the given mode; standalone stores get their
// own redis-server.
func openStore(t testing.TB, name, mode string) (*Store, *redistest.Server) {
	t.Helper()
	var srv *redistest.Server
	cfg := Config{Mode: mode}
	if mode == ModeStandalone {
		srv = redistest.Start(t)
		cfg.Addr = srv.Addr
	}
	st, err := Open(context.Background(), name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st, srv
}

func writeFile(t testing.TB, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fetchAll reads the named features of the given store ids through a plan,
// as the server does, and returns each row's values.
func fetchAll(t testing.TB, r *Retriever, c *features.Catalog, ids []string, names []string, timeout time.Duration) ([][]features.Cell, []string) {
	t.Helper()
	p, err := c.DisplayPlan(names)
	if err != nil {
		t.Fatal(err)
	}
	q := &features.Query{Context: map[string]string{"consumer": "c1"}}
	for _, id := range ids {
		q.Candidates = append(q.Candidates, features.Candidate{Entities: map[string]string{"store": id}})
	}
	var b features.Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	degraded := r.Fetch(ctx, b.Lookups)
	cells := make([]features.Cell, q.Rows()*len(p.Inputs))
	p.Assemble(q, &b, make([]float64, len(cells)), cells)
	var rows [][]features.Cell
	for i := range q.Rows() {
		rows = append(rows, cells[i*len(p.Inputs):(i+1)*len(p.Inputs)])
	}
	return rows, degraded
}

var valueComparer = cmp.Comparer(func(a, b features.Value) bool { return a.Equal(b) })

func TestUploadFetch(t *testing.T) {
	for _, mode := range []string{ModeStandalone, ModeEmbedded} {
		t.Run(mode, func(t *testing.T) {
			c := testCatalogParse(t)
			main, _ := openStore(t, "main", mode)
			search, _ := openStore(t, "search", mode)
			r := New([]*Store{main, search}, Options{})
			ctx := context.Background()

			csv := writeFile(t, "stores.csv", "id,store_rating,store_orders,store_open,store_cuisine,store_embedding,store_tags\n"+
				"1,4.5,120,true,thai,\"[0.5,-1,3]\",\"[\"\"vegan\"\",\"\"late\"\"]\"\n"+
				"2,,7,false,,[],[]\n")
			when := time.Unix(1700000000, 0)
			stats, err := r.UploadFile(ctx, c, "store", csv, UploadOptions{Time: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			want := UploadStats{
				Files: 1, Rows: 2, Values: 10,
				Features:    []string{"store_rating", "store_orders", "store_open", "store_cuisine", "store_embedding", "store_tags"},
				Versions:    map[string]int64{"store_rating": 1, "store_orders": 1, "store_open": 1, "store_cuisine": 1, "store_embedding": 1, "store_tags": 1},
				Generations: map[string]uint32{"main": 1, "search": 1},
			}
			if diff := cmp.Diff(want, stats, cmpopts.IgnoreFields(UploadStats{}, "PerFile", "Elapsed", "GC", "GCError")); diff != "" {
				t.Errorf("CSV upload stats (-want +got):\n%s", diff)
			}
			long := strings.Repeat("a long description that compresses ", 20)
			jsonl := writeFile(t, "more.jsonl", `{"id": 3, "store_rating": 2, "store_cuisine": "`+long+`", "store_embedding": [`+strings.TrimSuffix(strings.Repeat("0.25,", 100), ",")+`]}`+"\n"+
				`{"id": "1", "store_open": false}`+"\n")
			// In place: the values of other entities stay.
			if _, err := r.UploadFile(ctx, c, "store", jsonl, UploadOptions{Time: when, InPlace: true}); err != nil {
				t.Fatal(err)
			}
			cx := writeFile(t, "consumers.jsonl", `{"id": "c1", "consumer_orders": 42}`+"\n")
			if _, err := r.UploadFile(ctx, c, "consumer", cx, UploadOptions{}); err != nil {
				t.Fatal(err)
			}

			names := []string{"store_rating", "store_orders", "store_open", "store_cuisine", "store_embedding", "store_tags", "consumer_orders"}
			rows, degraded := fetchAll(t, r, c, []string{"1", "2", "3", "404"}, names, 5*time.Second)
			if len(degraded) > 0 {
				t.Fatalf("degraded stores %v", degraded)
			}
			embedding := make([]float32, 100)
			for i := range embedding {
				embedding[i] = 0.25
			}
			F, I, B, S := features.FloatValue, features.IntValue, features.BoolValue, features.StringValue
			none := features.Value{}
			wantRows := [][]features.Value{
				{F(4.5), I(120), B(false), S("thai"), features.VectorValue([]float32{0.5, -1, 3}), features.ListValue([]string{"vegan", "late"}), I(42)},
				{F(4), I(7), B(false), none, features.VectorValue([]float32{}), features.ListValue([]string{}), I(42)},
				// store_orders of store 3 is absent; its stamp would be old
				// anyway (max age 1h).
				{F(2), none, none, S(long), features.VectorValue(embedding), none, I(42)},
				{F(4), none, none, none, none, none, I(42)},
			}
			wantOrigins := [][]features.Origin{
				{2, 2, 2, 2, 2, 2, 2},
				{0, 2, 2, 0, 2, 2, 2},
				{2, 0, 0, 2, 2, 0, 2},
				{0, 0, 0, 0, 0, 0, 2},
			}
			for i, row := range rows {
				var got []features.Value
				var origins []features.Origin
				for _, cell := range row {
					got = append(got, cell.Value)
					origins = append(origins, cell.Source)
				}
				if diff := cmp.Diff(wantRows[i], got, valueComparer); diff != "" {
					t.Errorf("row %d (-want +got):\n%s", i, diff)
				}
				if diff := cmp.Diff(wantOrigins[i], origins); diff != "" {
					t.Errorf("row %d origins (-want +got):\n%s", i, diff)
				}
			}

			// The stored bytes are the documented encoding with the
			// upload's stamp, in the feature's own store.
			raw, err := search.client.HGet(ctx, "st_3", GenField(features.ID("store_cuisine"), stats.Generations["search"])).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if want := features.EncodeStamped(nil, S(long), when.Unix()); !slices.Equal(raw, want) {
				t.Errorf("stored store_cuisine = % x, want % x", raw, want)
			}
			if raw[0]&0x80 == 0 {
				t.Errorf("a long string was stored without snappy: header %#x", raw[0])
			}
			if n, _ := main.client.Exists(ctx, "st_3").Result(); n != 1 {
				t.Error("st_3 is not on the main store")
			}
			if n, _ := search.client.HExists(ctx, "st_3", GenField(features.ID("store_rating"), 1)).Result(); n {
				t.Error("store_rating was written to the search store")
			}
		})
	}
}

func TestFetchBadValues(t *testing.T) {
	c := testCatalogParse(t)
	main, _ := openStore(t, "main", ModeStandalone)
	search, _ := openStore(t, "search", ModeEmbedded)
	reg := prometheus.NewRegistry()
	r := New([]*Store{main, search}, Options{Registerer: reg})
	ctx := context.Background()
	now := time.Now().Unix()
	field := features.Field
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(main.client.HSet(ctx, "st_1",
		field("store_rating"), []byte{0x01, 1, 2, 3}, // a float of 3 bytes
		field("store_orders"), features.EncodeStamped(nil, features.IntValue(5), now-7200), // stale
		field("store_open"), features.Encode(nil, features.IntValue(1)), // int for a bool
	).Err())
	must(main.client.HSet(ctx, "st_2",
		field("store_orders"), features.Encode(nil, features.IntValue(6)), // no stamp: never stale
		field("store_rating"), features.EncodeStamped(nil, features.FloatValue(1.5), now+60), // clock skew
	).Err())
	must(main.client.Set(ctx, "st_3", "not a hash", 0).Err())
	must(search.client.HSet(ctx, "st_1", field("store_cuisine"), "").Err()) // empty: corrupt

	names := []string{"store_rating", "store_orders", "store_open", "store_cuisine"}
	rows, degraded := fetchAll(t, r, c, []string{"1", "2", "3"}, names, 5*time.Second)
	if len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	var got [][]string
	for _, row := range rows {
		var cells []string
		for _, cell := range row {
			cells = append(cells, cell.Source.String()+" "+cell.Value.String())
		}
		got = append(got, cells)
	}
	want := [][]string{
		{"default 4", "default null", "default null", `default null`},
		{"redis 1.5", "redis 6", "default null", "default null"},
		{"default 4", "default null", "default null", "default null"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	stats := func(name string) [3]uint64 {
		s := c.Spec(name).Stats()
		return [3]uint64{s.Corrupt.Load(), s.WrongType.Load(), s.Stale.Load()}
	}
	for name, want := range map[string][3]uint64{
		"store_rating":  {2, 0, 0}, // st_1 bad bytes, st_3 WRONGTYPE
		"store_orders":  {1, 0, 1},
		"store_open":    {1, 1, 0},
		"store_cuisine": {1, 0, 0},
	} {
		if got := stats(name); got != want {
			t.Errorf("%s corrupt, wrong type, stale = %v, want %v", name, got, want)
		}
	}
	for _, tt := range []struct {
		store, result string
		want          float64
	}{
		{"main", "found", 2}, {"main", "corrupt", 4}, {"main", "wrong_type", 1}, {"main", "stale", 1}, {"main", "absent", 1},
		{"search", "corrupt", 1}, {"search", "absent", 2},
	} {
		if got := testutil.ToFloat64(r.metrics[r.byName[tt.store]].counter(tt.result)); got != tt.want {
			t.Errorf("%s %s values = %v, want %v", tt.store, tt.result, got, tt.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "seer_retrieval_fetch_duration_seconds"); err != nil || n == 0 {
		t.Errorf("fetch duration metrics: %d, %v", n, err)
	}
}

// uploadStoreOne uploads store 1 (store_rating 2.5, store_cuisine thai)
// through r.
func uploadStoreOne(t testing.TB, r *Retriever, c *features.Catalog) {
	t.Helper()
	path := writeFile(t, "s.csv", "id,store_rating,store_cuisine\n1,2.5,thai\n")
	if _, err := r.UploadFile(context.Background(), c, "store", path, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// openMain opens the store main with cfg and an embedded store search,
// and uploads store 1 through a retriever over both.
func openMain(t testing.TB, c *features.Catalog, cfg Config) (*Store, *Retriever) {
	t.Helper()
	main, err := Open(context.Background(), "main", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { main.Close() })
	search, _ := openStore(t, "search", ModeEmbedded)
	r := New([]*Store{main, search}, Options{})
	uploadStoreOne(t, r, c)
	return main, r
}

// twoStores returns a retriever over two standalone stores with a value in
// each.
func twoStores(t *testing.T) (*Retriever, *features.Catalog, *redistest.Server, *redistest.Server) {
	t.Helper()
	c := testCatalogParse(t)
	main, mainSrv := openStore(t, "main", ModeStandalone)
	search, searchSrv := openStore(t, "search", ModeStandalone)
	r := New([]*Store{main, search}, Options{})
	uploadStoreOne(t, r, c)
	return r, c, mainSrv, searchSrv
}

func cellStrings(rows [][]features.Cell) []string {
	var s []string
	for _, row := range rows {
		for _, cell := range row {
			s = append(s, cell.Source.String()+" "+cell.Value.String())
		}
	}
	return s
}

func TestFetchDeadStore(t *testing.T) {
	r, c, _, searchSrv := twoStores(t)
	searchSrv.Kill()
	start := time.Now()
	rows, degraded := fetchAll(t, r, c, []string{"1"}, []string{"store_rating", "store_cuisine"}, 300*time.Millisecond)
	if d := time.Since(start); d > 300*time.Millisecond+slack {
		t.Errorf("Fetch with a dead store took %v, past its 300ms deadline", d)
	}
	if diff := cmp.Diff([]string{"search"}, degraded); diff != "" {
		t.Errorf("degraded (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"redis 2.5", "default null"}, cellStrings(rows)); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
}

func TestFetchFrozenStore(t *testing.T) {
	r, c, mainSrv, _ := twoStores(t)
	mainSrv.Pause()
	start := time.Now()
	rows, degraded := fetchAll(t, r, c, []string{"1"}, []string{"store_rating", "store_cuisine"}, 200*time.Millisecond)
	if d := time.Since(start); d > 200*time.Millisecond+slack {
		t.Errorf("Fetch with a frozen store took %v, past its 200ms deadline", d)
	}
	if diff := cmp.Diff([]string{"main"}, degraded); diff != "" {
		t.Errorf("degraded (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"default 4", `redis "thai"`}, cellStrings(rows)); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}

	// Cancelled without a deadline, Fetch gives up at once too.
	q := []features.Lookup{features.NewLookup("main", "st_1", []*features.Spec{c.Spec("store_rating")})}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if degraded := r.Fetch(ctx, q); !slices.Equal(degraded, []string{"main"}) {
		t.Errorf("cancelled Fetch: degraded %v", degraded)
	}
	if d := time.Since(start); d > 100*time.Millisecond+slack {
		t.Errorf("Fetch cancelled after 100ms took %v", d)
	}

	// Resumed, the store answers again.
	mainSrv.Resume()
	rows, degraded = fetchAll(t, r, c, []string{"1"}, []string{"store_rating", "store_cuisine"}, 5*time.Second)
	if len(degraded) > 0 || rows[0][0].Value.Float() != 2.5 {
		t.Errorf("after Resume: %v, degraded %v", cellStrings(rows), degraded)
	}
}

// TestFetchParallel puts each store behind a proxy that holds every request
// for a while: reading the stores one after the other would take twice as
// long. The delay is long enough that a loaded machine's own delays do not
// blur the two.
func TestFetchParallel(t *testing.T) {
	const delay = 500 * time.Millisecond
	c := testCatalogParse(t)
	var stores []*Store
	for _, name := range []string{"main", "search"} {
		srv := redistest.Start(t)
		st, err := Open(context.Background(), name, Config{Addr: delayProxy(t, srv.Addr, delay), ReadTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	r := New(stores, Options{})
	uploadStoreOne(t, r, c)
	names := []string{"store_rating", "store_cuisine"}
	fetchAll(t, r, c, []string{"1"}, names, 5*time.Second) // connect first
	start := time.Now()
	rows, degraded := fetchAll(t, r, c, []string{"1"}, names, 5*time.Second)
	d := time.Since(start)
	if len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	if d < delay || d >= 2*delay-delay/4 {
		t.Errorf("Fetch of two stores each %v away took %v", delay, d)
	}
	if diff := cmp.Diff([]string{"redis 2.5", `redis "thai"`}, cellStrings(rows)); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
}

// delayProxy forwards TCP connections to target, holding each chunk the
// client sends for delay. It returns the proxy's address.
func delayProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	return proxy(t, func() string { return target }, func(server, client net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				time.Sleep(delay)
				if _, err := server.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}, nil)
}

func TestFetchUnknownAndClosedStores(t *testing.T) {
	c := testCatalogParse(t)
	main, _ := openStore(t, "main", ModeEmbedded)
	r := New([]*Store{main}, Options{})
	lookup := func(store string) features.Lookup {
		return features.NewLookup(store, "st_1", []*features.Spec{c.Spec("store_rating")})
	}
	lookups := []features.Lookup{lookup("main"), lookup("search"), lookup("search"), {Store: "other"}}
	if got := r.Fetch(context.Background(), lookups); !slices.Equal(got, []string{"search"}) {
		t.Errorf("degraded = %v, want [search]", got)
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if got := r.Fetch(expired, lookups[:1]); !slices.Equal(got, []string{"main"}) {
		t.Errorf("degraded with an expired context = %v, want [main]", got)
	}
	if err := main.Close(); err != nil {
		t.Fatal(err)
	}
	if got := r.Fetch(context.Background(), lookups[:1]); !slices.Equal(got, []string{"main"}) {
		t.Errorf("degraded after Close = %v, want [main]", got)
	}
	if got := r.Fetch(context.Background(), nil); got != nil {
		t.Errorf("Fetch of nothing = %v", got)
	}
	if r.Store("main") != main || r.Store("search") != nil {
		t.Error("Store() finds the wrong stores")
	}
}

func TestUploadBadFile(t *testing.T) {
	c := testCatalogParse(t)
	main, mainSrv := openStore(t, "main", ModeStandalone)
	search, _ := openStore(t, "search", ModeEmbedded)
	r := New([]*Store{main, search}, Options{})
	ctx := context.Background()
	good := "id,store_rating,store_cuisine\n"
	for i := range 50 {
		good += string(rune('a'+i%26)) + "x" + string(rune('0'+i%10)) + ",1.5,thai\n"
	}
	tests := []struct {
		name, file, data string
		entity           string
		want             string
		sentinel         error
	}{
		{"bad float at the end", "stores.csv", good + "z,abc,thai\n", "store", `stores.csv:52: column store_rating: want float, got "abc"`, features.ErrTable},
		{"other entity's feature", "stores.jsonl", `{"id": 1, "consumer_orders": 3}`, "store", "stores.jsonl:1: column consumer_orders: feature of entity consumer, not store", features.ErrTable},
		{"unknown format", "stores.txt", good, "store", "unknown format", features.ErrTable},
		{"unknown entity", "stores.csv", good, "courier", `unknown entity type "courier"`, features.ErrTable},
		{"missing file", "", "", "store", "no such file", os.ErrNotExist},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "missing.csv")
		if tt.file != "" {
			path = writeFile(t, tt.file, tt.data)
		}
		_, err := r.UploadFile(ctx, c, tt.entity, path, UploadOptions{BatchSize: 10})
		if err == nil || !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one wrapping %v containing %q", tt.name, err, tt.sentinel, tt.want)
		}
	}
	// A key that is not a hash: Redis's error reply fails the upload.
	if err := main.client.Set(ctx, "st_ex4", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := r.UploadFile(ctx, c, "store", writeFile(t, "s.csv", good), UploadOptions{BatchSize: 10})
	if !errors.Is(err, ErrUpload) || !strings.Contains(err.Error(), "hset store main") || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("upload over a key that is not a hash: %v", err)
	}
	if err := main.client.Del(ctx, "st_ex4").Err(); err != nil {
		t.Fatal(err)
	}
	// A catalog feature whose store the retriever lacks.
	other, err := features.ParseCatalog([]byte(strings.Replace(testCatalog, "store: search", "store: archive", 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "s.csv", good)
	if _, err := r.UploadFile(ctx, other, "store", path, UploadOptions{}); !errors.Is(err, ErrUpload) || !strings.Contains(err.Error(), `no store "archive"`) {
		t.Errorf("unknown store: %v", err)
	}
	// A dry run checks and writes nothing.
	stats, err := r.UploadFile(ctx, c, "store", path, UploadOptions{DryRun: true})
	if err != nil || stats.Rows != 50 || stats.Values != 100 || stats.Versions != nil {
		t.Errorf("dry run: %+v, %v", stats, err)
	}
	// The failed uploads switched nothing: no feature has a generation,
	// and what they wrote is garbage that a collection deletes.
	for _, st := range []*Store{main, search} {
		state, err := st.Generations(ctx)
		if err != nil || len(state.Features) > 0 || len(state.Uploads) > 0 {
			t.Errorf("store %s after failed uploads: %+v, %v", st.name, state, err)
		}
	}
	if _, err := r.CollectGarbage(ctx, c, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{main, search} {
		keys, err := st.client.Keys(ctx, "*").Result()
		if err != nil || !slices.Equal(keys, []string{GenerationsKey}) {
			t.Errorf("store %s holds %v (%v) after failed uploads and a collection, want only %s", st.name, keys, err, GenerationsKey)
		}
	}

	// A store that fails: an error, and no marker bumped.
	mainSrv.Kill()
	ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := r.UploadFile(ctx2, c, "store", path, UploadOptions{SkipGC: true}); !errors.Is(err, ErrUpload) || !strings.Contains(err.Error(), "store main") {
		t.Errorf("upload to a dead store: %v", err)
	}
	if n, _ := search.client.Exists(ctx, MarkerKey).Result(); n != 0 {
		t.Error("markers were bumped by a failed upload")
	}
}

func TestMarkers(t *testing.T) {
	c := testCatalogParse(t)
	main, _ := openStore(t, "main", ModeStandalone)
	search, _ := openStore(t, "search", ModeEmbedded)
	r := New([]*Store{main, search}, Options{})
	ctx := context.Background()
	path := writeFile(t, "s.csv", "id,store_rating,store_orders,store_cuisine\n1,1,,thai\n2,2,,\n")
	for version := int64(1); version <= 2; version++ {
		stats, err := r.UploadFile(ctx, c, "store", path, UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"store_rating": version, "store_cuisine": version}
		if diff := cmp.Diff(want, stats.Versions); diff != "" {
			t.Errorf("upload %d versions (-want +got):\n%s", version, diff)
		}
	}
	id := features.ID
	for _, tt := range []struct {
		st   *Store
		want map[uint32]int64
	}{
		{main, map[uint32]int64{id("store_rating"): 2}},
		{search, map[uint32]int64{id("store_cuisine"): 2}},
	} {
		got, err := tt.st.Markers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("markers of %s (-want +got):\n%s", tt.st.name, diff)
		}
	}
	// Entries another writer broke are reported; the good ones still count.
	if err := main.client.HSet(ctx, MarkerKey, "name", "1", "7", "x").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := main.Markers(ctx)
	if !errors.Is(err, ErrMarkers) || got[id("store_rating")] != 2 || len(got) != 1 {
		t.Errorf("Markers with bad entries = %v, %v", got, err)
	}
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string // "" when valid
	}{
		{Config{Addr: "localhost:6379"}, ""},
		{Config{Mode: ModeStandalone, Addr: "x:1", DB: 2, PoolSize: 5, DialTimeout: time.Second}, ""},
		{Config{Mode: ModeEmbedded}, ""},
		{Config{Mode: ModeEmbedded, Addr: "127.0.0.1:0"}, ""},
		{Config{}, "standalone mode needs addr"},
		{Config{Addr: "a:1", Addrs: []string{"b:1"}}, "takes addr, not addrs"},
		{Config{Mode: ModeEmbedded, Addrs: []string{"b:1"}}, "embedded mode takes no addrs"},
		{Config{Mode: ModeCluster, Addrs: []string{"b:1"}, DB: 1}, "database 0 only"},
		{Config{Mode: ModeRing, Addr: "b:1"}, "ring mode takes addrs, not addr"},
		{Config{Mode: "sentinel"}, `unknown mode "sentinel"`},
		{Config{Addr: "a:1", DB: -1}, "negative"},
		{Config{Addr: "a:1", ReadTimeout: -time.Second}, "negative timeout"},
		{Config{Addr: "a:1", BatchKeys: -1}, ""},
		{Config{Addr: "a:1", BatchKeys: -2}, "batch_keys: -2"},
	}
	for _, tt := range tests {
		err := tt.cfg.Check()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.cfg, err)
			}
			continue
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one containing %q", tt.cfg, err, tt.want)
		}
		if _, err := Open(context.Background(), "x", tt.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("Open(%+v) = %v, want ErrConfig", tt.cfg, err)
		}
	}
	if _, err := Open(context.Background(), "", Config{Mode: ModeEmbedded}); !errors.Is(err, ErrConfig) {
		t.Errorf("Open without a name: %v", err)
	}
}

func TestStorePing(t *testing.T) {
	st, srv := openStore(t, "main", ModeStandalone)
	ctx := context.Background()
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Name() != "main" || st.Mode() != ModeStandalone || st.Addr() != srv.Addr {
		t.Errorf("store %s %s %s", st.Name(), st.Mode(), st.Addr())
	}
	srv.Kill()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := st.Ping(ctx); err == nil || !strings.HasPrefix(err.Error(), "ping store main: ") {
		t.Errorf("Ping of a dead store: %v", err)
	}
	emb, _ := openStore(t, "emb", ModeEmbedded)
	if err := emb.Ping(context.Background()); err != nil || !strings.HasPrefix(emb.Addr(), "127.0.0.1:") {
		t.Errorf("embedded store at %s: %v", emb.Addr(), err)
	}
	if err := emb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := emb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSplitReply(t *testing.T) {
	tests := []struct {
		raw  string
		n    int
		want []string // "<nil>" for a missing field
		err  string
	}{
		{"*2\r\n$3\r\nabc\r\n$-1\r\n", 2, []string{"abc", "<nil>"}, ""},
		{"*1\r\n$0\r\n\r\n", 1, []string{""}, ""},
		{"*1\r\n_\r\n", 1, []string{"<nil>"}, ""},
		{"*1\r\n$4\r\na\r\nb\r\n", 1, []string{"a\r\nb"}, ""},
		{"-WRONGTYPE Operation against a key\r\n", 1, nil, "WRONGTYPE"},
		{"*2\r\n$1\r\na\r\n", 2, nil, "truncated"},
		{"*1\r\n$1\r\na\r\n", 2, nil, "array of 1 items for 2 fields"},
		{"*1\r\n$5\r\na\r\n", 1, nil, "truncated"},
		{"*1\r\n$-2\r\n", 1, nil, "item 0"},
		{"*1\r\n:1\r\n", 1, nil, "item 0"},
		{"*1\r\n$1\r\nab\r\n", 1, nil, "truncated"},
		{"*1\r\n$1\r\na\r\nx", 1, nil, "1 bytes after the array"},
		{"+OK\r\n", 1, nil, "unexpected reply"},
		{"", 1, nil, "truncated line"},
		{"*99999999999\r\n", 1, nil, "array of"},
	}
	for _, tt := range tests {
		vals := make([][]byte, tt.n)
		err := splitReply([]byte(tt.raw), vals)
		if tt.err != "" {
			if err == nil || !errors.Is(err, errReply) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("splitReply(%q) error %v, want %q", tt.raw, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitReply(%q): %v", tt.raw, err)
			continue
		}
		var got []string
		for _, v := range vals {
			if v == nil {
				got = append(got, "<nil>")
			} else {
				got = append(got, string(v))
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitReply(%q) (-want +got):\n%s", tt.raw, diff)
		}
	}
}

// splitReplyLines is splitReply as it was, reading each item line by line:
// FuzzSplitReply holds splitReply to it.
func splitReplyLines(raw []byte, vals [][]byte) error {
	line, rest, err := respLine(raw)
	if err != nil {
		return err
	}
	switch line[0] {
	case '*':
	case '-':
		return fmt.Errorf("%w: %s", errReply, line[1:])
	default:
		return fmt.Errorf("%w: %.40q", errReply, line)
	}
	n, err := respInt(line[1:])
	if err != nil || n != len(vals) {
		return fmt.Errorf("%w: array of %.20s items for %d fields", errReply, line[1:], len(vals))
	}
	for k := range vals {
		if line, rest, err = respLine(rest); err != nil {
			return err
		}
		switch line[0] {
		case '$':
		case '_': // RESP3 null
			vals[k] = nil
			continue
		default:
			return fmt.Errorf("%w: item %d: %.40q", errReply, k, line)
		}
		size, err := respInt(line[1:])
		switch {
		case err != nil || size < -1:
			return fmt.Errorf("%w: item %d: %.40q", errReply, k, line)
		case size == -1:
			vals[k] = nil
			continue
		case size > len(rest)-2 || rest[size] != '\r' || rest[size+1] != '\n':
			return fmt.Errorf("%w: item %d: truncated", errReply, k)
		}
		vals[k] = rest[:size:size]
		rest = rest[size+2:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the array", errReply, len(rest))
	}
	return nil
}

func FuzzSplitReply(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nabc\r\n$-1\r\n"), 2)
	f.Add([]byte("*4\r\n$0\r\n\r\n$-01\r\n_\r\n$10\r\n0123456789\r\n"), 4)
	f.Add([]byte("*3\r\n$-2\r\n$12345678901\r\n$3\r\nab\r\n"), 3)
	f.Add([]byte("-ERR x\r\n"), 1)
	f.Fuzz(func(t *testing.T, raw []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		vals := make([][]byte, n)
		ref := make([][]byte, n)
		refErr := splitReplyLines(raw, ref)
		if err := splitReply(raw, vals); err != nil {
			if !errors.Is(err, errReply) {
				t.Fatalf("error %v does not wrap errReply", err)
			}
			if refErr == nil {
				t.Fatalf("%q: %v, but read line by line it gives %q", raw, err, ref)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("%q gives %q, but read line by line: %v", raw, vals, refErr)
		}
		for k := range vals {
			if !bytes.Equal(vals[k], ref[k]) || (vals[k] == nil) != (ref[k] == nil) {
				t.Fatalf("%q gives %q, line by line %q", raw, vals, ref)
			}
		}
		total := 0
		for _, v := range vals {
			total += len(v)
		}
		if total > len(raw) {
			t.Fatalf("values of %d bytes from a reply of %d", total, len(raw))
		}
	})
}

func TestConfigYAML(t *testing.T) {
	src := `
mode: standalone
addr: redis-search:6379
db: 2
pool_size: 32
dial_timeout: 250ms
read_timeout: 50ms
write_timeout: 50ms
`
	var got Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := Config{Mode: ModeStandalone, Addr: "redis-search:6379", DB: 2, PoolSize: 32,
		DialTimeout: 250 * time.Millisecond, ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if err := got.Check(); err != nil {
		t.Error(err)
	}
	dec = yaml.NewDecoder(strings.NewReader("addr: x:1\ntimeout: 1s\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err == nil {
		t.Error("an unknown key was accepted")
	}
}

// TestFetchNonFinite stores NaN and infinities: corrupt, and defaulted,
// unless the catalog lets the feature hold them.
func TestFetchNonFinite(t *testing.T) {
	c, err := features.ParseCatalog([]byte(`
entities:
  store: {key: "st_{id}"}
features:
  - {name: rating, entity: store, type: float, store: main, default: 7}
  - {name: score, entity: store, type: float, store: main, default: 8, allow_non_finite: true}
  - {name: emb, entity: store, type: vector, store: main}
  - {name: emb_raw, entity: store, type: vector, store: main, allow_non_finite: true}
`), []string{"main"})
	if err != nil {
		t.Fatal(err)
	}
	main, _ := openStore(t, "main", ModeStandalone)
	r := New([]*Store{main}, Options{})
	ctx := context.Background()
	enc := func(v features.Value) []byte { return features.Encode(nil, v) }
	nan, inf := math.NaN(), math.Inf(1)
	for id, vals := range map[string][4]features.Value{
		"1": {features.FloatValue(nan), features.FloatValue(nan), features.VectorValue([]float32{1, float32(nan)}), features.VectorValue([]float32{float32(inf)})},
		"2": {features.FloatValue(inf), features.FloatValue(-inf), features.VectorValue([]float32{float32(-inf)}), features.VectorValue([]float32{2})},
		"3": {features.FloatValue(1.5), features.FloatValue(2.5), features.VectorValue([]float32{3}), features.VectorValue([]float32{4})},
	} {
		var args []any
		for k, name := range []string{"rating", "score", "emb", "emb_raw"} {
			args = append(args, features.Field(name), enc(vals[k]))
		}
		if err := main.client.HSet(ctx, "st_"+id, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	p, err := c.DisplayPlan([]string{"rating", "score", "emb", "emb_raw"})
	if err != nil {
		t.Fatal(err)
	}
	q := &features.Query{Candidates: []features.Candidate{
		{Entities: map[string]string{"store": "1"}}, {Entities: map[string]string{"store": "2"}}, {Entities: map[string]string{"store": "3"}},
	}}
	var b features.Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	if degraded := r.Fetch(ctx, b.Lookups); len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	cells := make([]features.Cell, 3*4)
	p.Assemble(q, &b, make([]float64, len(cells)), cells)
	var got []string
	for _, cell := range cells {
		v := cell.Value
		s := v.String()
		if v.Type() == features.Float {
			s = fmt.Sprint(v.Float())
		}
		got = append(got, cell.Source.String()+" "+s)
	}
	want := []string{
		"default 7", "redis NaN", "default null", "redis [null]",
		"default 7", "redis -Inf", "default null", "redis [2]",
		"redis 1.5", "redis 2.5", "redis [3]", "redis [4]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cells (-want +got):\n%s", diff)
	}
	for name, want := range map[string]uint64{"rating": 2, "score": 0, "emb": 2, "emb_raw": 0} {
		if got := c.Spec(name).Stats().Corrupt.Load(); got != want {
			t.Errorf("%s: %d corrupt, want %d", name, got, want)
		}
	}
}

// BenchmarkSplitReply splits the reply of an HMGET of 20 encoded floats,
// with splitReply and with the line-by-line reading it replaced.
func BenchmarkSplitReply(b *testing.B) {
	raw := []byte("*20\r\n")
	for i := range 20 {
		v := features.EncodeStamped(nil, features.FloatValue(float64(i)/7), 1_700_000_000)
		raw = appendBulk(raw, string(v))
	}
	vals := make([][]byte, 20)
	for _, bc := range []struct {
		name  string
		split func([]byte, [][]byte) error
	}{{"lines", splitReplyLines}, {"in-place", splitReply}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if err := bc.split(raw, vals); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
