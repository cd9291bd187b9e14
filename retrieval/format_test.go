package retrieval

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/internal/testenv"
)

// python is the interpreter with Debian's redis, xxhash and snappy modules.
const python = "/usr/bin/python3"

// needPython fails the test under CI when python3 or its modules are
// missing, and skips it loudly elsewhere.
func needPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import redis, snappy, xxhash").CombinedOutput()
	if err == nil {
		return
	}
	testenv.Missing(t, fmt.Sprintf("PYTHON MODULES MISSING: %s with redis, snappy and xxhash (apt install python3-redis python3-snappy python3-xxhash): %v %s", python, err, out))
}

// exampleReport is what tools/write_example.py prints.
type exampleReport struct {
	Entities map[string]string `json:"entities"`
	Features []struct {
		Name, Entity, Type, Field string
	} `json:"features"`
	Values []struct {
		Key, Feature, Field, Type string
		Value                     json.RawMessage
		Stamp                     *int64
		Raw                       string
	} `json:"values"`
	Markers map[string]int64 `json:"markers"`
}

// TestPythonWriter runs the independent Python implementation of
// docs/format.md against a real Redis and checks that seer reads every
// value it wrote.
func TestPythonWriter(t *testing.T) {
	needPython(t)
	srv := redistest.Start(t)
	const now = 1700000000
	script := filepath.Join("..", "tools", "write_example.py")
	cmd := exec.Command(python, script, "--addr", srv.Addr, "--now", fmt.Sprint(now))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.Bytes())
	}
	var rep exampleReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if len(rep.Values) < 10 {
		t.Fatalf("the script wrote only %d values", len(rep.Values))
	}

	// A catalog of the script's features: field ids must agree.
	var y strings.Builder
	y.WriteString("entities:\n")
	for name, key := range rep.Entities {
		fmt.Fprintf(&y, "  %s: {key: %q}\n", name, key)
	}
	y.WriteString("features:\n")
	for _, f := range rep.Features {
		fmt.Fprintf(&y, "  - {name: %s, entity: %s, type: %s, store: main, max_age: 48h}\n", f.Name, f.Entity, f.Type)
	}
	c, err := features.ParseCatalog([]byte(y.String()), []string{"main"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Features {
		if got := c.Spec(f.Name).Field; got != f.Field {
			t.Errorf("field of %s: seer %s, Python %s", f.Name, got, f.Field)
		}
	}

	ctx := context.Background()
	client := srv.Client()
	compressed := 0
	for _, v := range rep.Values {
		spec := c.Spec(v.Feature)
		raw, err := client.HGet(ctx, v.Key, spec.Field).Bytes()
		if err != nil {
			t.Errorf("%s %s: %v", v.Key, v.Feature, err)
			continue
		}
		if hex.EncodeToString(raw) != v.Raw {
			t.Errorf("%s %s: Redis holds %x, the script wrote %s", v.Key, v.Feature, raw, v.Raw)
		}
		got, stamp, err := features.DecodeStamped(raw)
		if err != nil {
			t.Errorf("%s %s: decode %x: %v", v.Key, v.Feature, raw, err)
			continue
		}
		want := jsonValue(t, spec.Type, v.Value)
		if !got.Equal(want) {
			t.Errorf("%s %s: seer reads %.80v, the script wrote %.80v", v.Key, v.Feature, got, want)
		}
		var wantStamp int64
		if v.Stamp != nil {
			wantStamp = *v.Stamp
		}
		if stamp != wantStamp {
			t.Errorf("%s %s: stamp %d, want %d", v.Key, v.Feature, stamp, wantStamp)
		}
		if raw[0]&0x80 != 0 {
			compressed++
		} else if enc := encodeLike(got, v.Stamp); !bytes.Equal(enc, raw) {
			// Without compression the encoding is canonical: seer writes
			// the same bytes.
			t.Errorf("%s %s: seer encodes % x, the script % x", v.Key, v.Feature, enc, raw)
		}
	}
	if compressed < 3 {
		t.Errorf("only %d values were snappy-compressed; the example should exercise compression", compressed)
	}

	// Through the retrieval path, with markers.
	st, err := Open(ctx, "main", Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New([]*Store{st}, Options{})
	var lookups []features.Lookup
	for _, v := range rep.Values {
		lookups = append(lookups, features.NewLookup("main", v.Key, []*features.Spec{c.Spec(v.Feature)}))
	}
	// The script's stamps are from `now`; judge max ages from then, not
	// from the wall clock.
	fetchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if degraded := r.Fetch(fetchCtx, lookups); len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	for i, l := range lookups {
		v := rep.Values[i]
		stale := v.Stamp != nil
		if got := l.Got[0].Found(); got == stale {
			t.Errorf("%s %s: valid %v; stamped values of 2023 are older than 48h and unstamped ones never expire", v.Key, v.Feature, got)
		}
	}
	markers, err := st.Markers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[uint32]int64)
	for field, version := range rep.Markers {
		var id uint32
		fmt.Sscan(field, &id)
		want[id] = version
	}
	if diff := cmp.Diff(want, markers); diff != "" {
		t.Errorf("markers (-want +got):\n%s", diff)
	}
	if len(markers) != len(rep.Features) {
		t.Errorf("%d markers for %d features", len(markers), len(rep.Features))
	}
}

func jsonValue(t *testing.T, typ features.Type, raw json.RawMessage) features.Value {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		t.Fatal(err)
	}
	v, err := features.Coerce(typ, x)
	if err != nil {
		t.Fatalf("value %s: %v", raw, err)
	}
	return v
}

func encodeLike(v features.Value, stamp *int64) []byte {
	if stamp == nil {
		return features.Encode(nil, v)
	}
	return features.EncodeStamped(nil, v, *stamp)
}

// TestPythonGeneration: tools/write_generation.py, written from
// docs/format.md alone, writes and switches a generation on top of one
// seer uploaded; seer serves exactly its values, rolls them back, and
// collects what a failed Python upload left. Standalone and cluster.
func TestPythonGeneration(t *testing.T) {
	needPython(t)
	for _, mode := range []string{ModeStandalone, ModeCluster} {
		t.Run(mode, func(t *testing.T) {
			e := newShardEnv(t, mode, Config{})
			ctx := context.Background()
			ids := allStores()
			before := e.want(t, 1, ids)
			var rows strings.Builder
			for id := 1; id <= shardStores; id++ {
				cuisine := fmt.Sprintf("%q", "py "+strconv.Itoa(id))
				if id%5 == 0 {
					cuisine = "null" // no value in the new generation
				}
				fmt.Fprintf(&rows, `{"id": %d, "s_rating": %d.75, "s_cuisine": %s}`+"\n", id, id, cuisine)
			}
			file := writeFile(t, "py.jsonl", rows.String())
			run := func(extra ...string) map[string]any {
				t.Helper()
				addr := e.nodes[0].Addr
				args := []string{filepath.Join("..", "tools", "write_generation.py"), "--addr", addr,
					"--key", "st_{id}", "--types", "s_rating=float,s_cuisine=string"}
				if mode == ModeCluster {
					args = append(args, "--cluster")
				}
				cmd := exec.Command(python, append(append(args, extra...), file)...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("write_generation.py: %v\n%s", err, stderr.Bytes())
				}
				var rep map[string]any
				if err := json.Unmarshal(out, &rep); err != nil {
					t.Fatalf("report %s: %v", out, err)
				}
				return rep
			}
			rep := run()
			want := e.want(t, 1, ids)
			for i, id := range ids {
				want[i][0] = fmt.Sprintf("redis %d.75", id)
				want[i][2] = fmt.Sprintf(`redis "py %d"`, id)
				if id%5 == 0 {
					want[i][2] = `default "none"`
				}
			}
			// A new pod: fresh stores read the generations first.
			fresh := func() [][]string {
				t.Helper()
				st, err := Open(ctx, "main", e.cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				saved := e.r.stores[0]
				e.r.stores[0] = st
				defer func() { e.r.stores[0] = saved }()
				got := e.fetch(t, 1, ids, 5*time.Second)
				if len(got.degraded) > 0 {
					t.Fatalf("degraded %v", got.degraded)
				}
				return got.rows
			}
			if got := fresh(); !cmp.Equal(want, got) {
				t.Fatalf("the Python generation %v (-want +got):\n%s", rep, cmp.Diff(want, got))
			}
			state, err := e.main.Generations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fg := state.Features[features.ID("s_cuisine")]
			if float64(fg.Current.Gen) != rep["generation"] || fg.Current.Rows != shardStores-shardStores/5 || fg.Previous == nil || fg.Previous.Gen == 0 {
				t.Errorf("s_cuisine's record: %+v %+v", fg, fg.Previous)
			}

			// seer rolls the Python generation back.
			if _, err := e.r.Rollback(ctx, e.catalog, []string{"s_rating", "s_cuisine"}); err != nil {
				t.Fatal(err)
			}
			if got := fresh(); !cmp.Equal(before, got) {
				t.Fatalf("after the rollback (-want +got):\n%s", cmp.Diff(before, got))
			}

			// A Python upload that fails changes nothing served, and what
			// it wrote is collected.
			failed := run("--fail-after", "20")
			if failed["switched"] != false {
				t.Fatalf("report %v", failed)
			}
			if got := fresh(); !cmp.Equal(before, got) {
				t.Fatalf("after a failed upload (-want +got):\n%s", cmp.Diff(before, got))
			}
			st, err := e.r.CollectGarbage(ctx, e.catalog, GCOptions{})
			if err != nil || st.Fields != 36 {
				t.Errorf("collection of the failed upload: %+v, %v (want 36 fields: 20 ratings, 16 cuisines)", st, err)
			}
		})
	}
}

// TestPythonGenerationHashLost: after the generations hash of a cluster is
// lost while no pod runs, tools/write_generation.py, like seer upload
// (TestGenerationsHashLostNoPod), numbers its generation past those whose
// fields are on the other masters, so that the stores it leaves out keep
// no value from before the loss.
func TestPythonGenerationHashLost(t *testing.T) {
	needPython(t)
	e := newShardEnv(t, ModeCluster, Config{})
	ctx := context.Background()
	stores, _ := shardFiles(t)
	if _, err := e.r.UploadFile(ctx, e.catalog, "store", stores, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	var kept uint32
	for _, g := range e.main.gens.Load().gens {
		kept = max(kept, g)
	}
	e.main.Close()
	if err := e.nodes[e.nodeOf(t, GenerationsKey)].Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	var rows strings.Builder
	for id := 1; id <= 10; id++ {
		fmt.Fprintf(&rows, `{"id": %d, "s_rating": %d.75}`+"\n", id, id)
	}
	cmd := exec.Command(python, filepath.Join("..", "tools", "write_generation.py"), "--addr", e.nodes[0].Addr, "--cluster",
		"--key", "st_{id}", "--types", "s_rating=float", writeFile(t, "py.jsonl", rows.String()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("write_generation.py: %v\n%s", err, stderr.Bytes())
	}
	var rep struct{ Generation uint32 }
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report %s: %v", out, err)
	}
	if rep.Generation <= kept {
		t.Errorf("write_generation.py wrote generation %d after the loss, a number used before it (up to %d)", rep.Generation, kept)
	}

	st, err := Open(ctx, "main", e.cfg) // a pod that starts now
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e.r = New([]*Store{st, e.side}, Options{})
	ids := allStores()
	res := e.fetch(t, 1, ids, 5*time.Second)
	for i, id := range ids {
		want := "default -1"
		if id <= 10 {
			want = fmt.Sprintf("redis %d.75", id)
		}
		if got := res.rows[i][0]; got != want {
			t.Errorf("store %d: s_rating %s, want %s", id, got, want)
		}
	}
}
