package retrieval

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
)

func TestGenField(t *testing.T) {
	id := features.ID("store_avg_rating") // 1364148139, docs/format.md
	for _, tt := range []struct {
		gen  uint32
		want string
	}{
		{0, "1364148139"},
		{1, "5659115435"},
		{7, "31428919211"},
		{MaxGeneration, "9223372033923956651"}, // below 2^63: still an integer to Redis
	} {
		if got := GenField(id, tt.gen); got != tt.want {
			t.Errorf("GenField(%d, %d) = %s, want %s", id, tt.gen, got, tt.want)
		}
	}
}

// TestGenerations uploads a second generation of some features, checks
// that readers see exactly it, rolls back and forth, and collects the
// generation no longer served, in each store mode.
func TestGenerations(t *testing.T) {
	for _, mode := range shardModes {
		t.Run(mode, func(t *testing.T) {
			e := newShardEnv(t, mode, Config{})
			ctx := context.Background()
			ids := allStores()
			v1 := e.want(t, 1, ids)
			if got := e.fetch(t, 1, ids, 5*time.Second); !cmp.Equal(v1, got.rows) {
				t.Fatalf("first generation: %v", cmp.Diff(v1, got.rows))
			}

			// Generation 2 of s_rating and s_orders holds half the stores.
			var b strings.Builder
			b.WriteString("id,s_rating,s_orders\n")
			for id := 1; id <= shardStores/2; id++ {
				fmt.Fprintf(&b, "%d,%d.25,%d\n", id, 1000+id, -id)
			}
			stats, err := e.r.UploadFile(ctx, e.catalog, "store", writeFile(t, "v2.csv", b.String()), UploadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g2 := stats.Generations["main"]
			if _, ok := stats.Generations["side"]; ok || g2 == 0 {
				t.Errorf("generations %v: want one on main only", stats.Generations)
			}
			v2 := e.want(t, 1, ids)
			for i, id := range ids {
				if id <= shardStores/2 {
					v2[i][0] = fmt.Sprintf("redis %d.25", 1000+id)
					v2[i][1] = fmt.Sprintf("redis %d", -id)
				} else {
					v2[i][0], v2[i][1] = "default -1", "default -1"
				}
			}
			if got := e.fetch(t, 1, ids, 5*time.Second); !cmp.Equal(v2, got.rows) {
				t.Fatalf("second generation (-want +got):\n%s", cmp.Diff(v2, got.rows))
			}
			state, err := e.main.Generations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fg := state.Features[features.ID("s_rating")]
			if fg.Current.Gen != g2 || fg.Current.Rows != shardStores/2 || fg.Previous == nil || fg.Previous.Rows != shardStores || fg.Current.Source != "v2.csv" {
				t.Errorf("s_rating's record: %+v, previous %+v", fg, fg.Previous)
			}

			// Rollback of s_rating alone: its old values, s_orders keeps
			// the new ones. A second rollback undoes the first.
			recs, err := e.r.Rollback(ctx, e.catalog, []string{"s_rating"})
			if err != nil || recs["s_rating"].Current.Gen != fg.Previous.Gen {
				t.Fatalf("rollback: %+v, %v", recs, err)
			}
			mixed := e.want(t, 1, ids)
			for i := range ids {
				mixed[i][1] = v2[i][1]
			}
			if got := e.fetch(t, 1, ids, 5*time.Second); !cmp.Equal(mixed, got.rows) {
				t.Fatalf("after the rollback (-want +got):\n%s", cmp.Diff(mixed, got.rows))
			}
			if _, err := e.r.Rollback(ctx, e.catalog, []string{"s_rating"}); err != nil {
				t.Fatal(err)
			}
			if got := e.fetch(t, 1, ids, 5*time.Second); !cmp.Equal(v2, got.rows) {
				t.Fatalf("after rolling back the rollback (-want +got):\n%s", cmp.Diff(v2, got.rows))
			}
			if _, err := e.r.Rollback(ctx, e.catalog, []string{"c_spend", "nope"}); err == nil {
				t.Error("rollback of an unknown feature: no error")
			}

			// Generation 3 of s_rating makes generation 1 garbage; a
			// collection deletes its fields once the grace is over.
			b.Reset()
			b.WriteString("id,s_rating\n")
			for id := 1; id <= shardStores; id++ {
				fmt.Fprintf(&b, "%d,7\n", id)
			}
			if _, err := e.r.UploadFile(ctx, e.catalog, "store", writeFile(t, "v3.csv", b.String()), UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			g1 := fg.Previous.Gen
			old := GenField(features.ID("s_rating"), g1)
			countField := func(field string) int {
				n := 0
				for id := 1; id <= shardStores; id++ {
					key := "st_" + strconv.Itoa(id)
					if ok, err := e.nodes[e.nodeOf(t, key)].Client().HExists(ctx, key, field).Result(); err == nil && ok {
						n++
					}
				}
				return n
			}
			if n := countField(old); n != shardStores {
				t.Fatalf("generation %d of s_rating is in %d hashes before the collection", g1, n)
			}
			st, err := e.r.CollectGarbage(ctx, e.catalog, GCOptions{})
			if err != nil || st.Fields != 0 {
				t.Fatalf("collection within the grace: %+v, %v", st, err)
			}
			// Two garbage generations: 1, and 0 (the fields of values
			// written before generations, which this data set has none of).
			st, err = e.r.CollectGarbage(ctx, e.catalog, GCOptions{Now: time.Now().Add(2 * DefaultGCGrace), Batch: 7})
			if err != nil || st.Fields != shardStores || st.Generations != 2 {
				t.Fatalf("collection: %+v, %v", st, err)
			}
			if n := countField(old); n != 0 {
				t.Errorf("generation %d of s_rating is still in %d hashes", g1, n)
			}
			if n := countField(GenField(features.ID("s_rating"), g2)); n != shardStores/2 {
				t.Errorf("the previous generation is in %d hashes, want %d", n, shardStores/2)
			}
			if state, _ := e.main.Generations(ctx); len(state.Garbage) != 0 {
				t.Errorf("garbage left: %+v", state.Garbage)
			}
		})
	}
}

// TestGenerationsSeenByOthers: a second Retriever over its own clients
// (another pod) reads the new generation within genRefresh of the switch,
// without a marker poll.
func TestGenerationsSeenByOthers(t *testing.T) {
	c := testCatalogParse(t)
	main, srv := openStore(t, "main", ModeStandalone)
	r := New([]*Store{main}, Options{})
	other, err := Open(context.Background(), "main", Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	pod := New([]*Store{other}, Options{})
	ctx := context.Background()
	read := func() string {
		rows, degraded := fetchAll(t, pod, c, []string{"1"}, []string{"store_rating"}, 5*time.Second)
		if len(degraded) > 0 {
			t.Fatalf("degraded %v", degraded)
		}
		return rows[0][0].Source.String() + " " + rows[0][0].Value.String()
	}
	if got := read(); got != "default 4" {
		t.Fatalf("before any upload: %s", got)
	}
	for _, v := range []string{"1.5", "2.5"} {
		if _, err := r.UploadFile(ctx, c, "store", writeFile(t, "s.csv", "id,store_rating\n1,"+v+"\n"), UploadOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(genRefresh + 5*time.Second)
		for read() != "redis "+v {
			if time.Now().After(deadline) {
				t.Fatalf("the other retriever still reads %s, want %s", read(), v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestGenerationsHashLost empties the ring node that holds the generations
// hash, as a restart without persistence does: reads keep the generations
// they knew, so the values on the other nodes are still served (only the
// emptied node's keys are absent), the loss is reported once, in the
// error, the gauge and Health, and the next upload's hash replaces the
// kept table.
func TestGenerationsHashLost(t *testing.T) {
	e := newShardEnv(t, ModeRing, Config{})
	ctx := context.Background()
	stores, consumers := shardFiles(t)
	if _, err := e.r.UploadFile(ctx, e.catalog, "store", stores, UploadOptions{}); err != nil {
		t.Fatal(err) // a second generation, with the first kept for a rollback
	}
	ids := allStores()
	read := func(step string, want [][]string) {
		t.Helper()
		res := e.fetch(t, 1, ids, 5*time.Second)
		if len(res.degraded) > 0 {
			t.Fatalf("%s: degraded %v", step, res.degraded)
		}
		if diff := cmp.Diff(want, res.rows); diff != "" {
			t.Fatalf("%s: served values (-want +got):\n%s", step, diff)
		}
	}
	missing := func() float64 {
		t.Helper()
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "seer_retrieval_generations_missing" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "store" && l.GetValue() == "main" {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		t.Fatal("no seer_retrieval_generations_missing{store=\"main\"}")
		return 0
	}
	read("before", e.want(t, 1, ids))

	var kept uint32 // the largest generation number served
	for _, g := range e.main.gens.Load().gens {
		kept = max(kept, g)
	}
	lost := e.nodeOf(t, GenerationsKey)
	if err := e.nodes[lost].Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// A read's refresh finds the loss first; the marker poll's refresh
	// (RefreshGenerations) still reports it, once.
	if _, err := e.main.refreshGenerations(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.main.RefreshGenerations(ctx); !errors.Is(err, ErrGenerations) || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("first refresh after the hash went: %v, want an error saying it is gone", err)
	}
	for range 2 {
		if changed, err := e.main.RefreshGenerations(ctx); err != nil || len(changed) > 0 {
			t.Fatalf("later refresh: %v, %v; want nothing: the loss is reported once", changed, err)
		}
	}
	// The store numbered the next generations past those it keeps, so that
	// an upload does not write into their fields.
	next, err := e.nodes[lost].Client().HGet(ctx, GenerationsKey, genNext).Int64()
	if err != nil || next <= int64(kept) {
		t.Fatalf("next after the loss: %d, %v; want past %d, the largest generation kept", next, err, kept)
	}
	if h := e.main.Health(ctx); !h.GenerationsMissing {
		t.Errorf("health %+v does not say the generations are missing", h)
	}
	if got := missing(); got != 1 {
		t.Errorf("seer_retrieval_generations_missing %v, want 1", got)
	}
	// The emptied node's keys are absent; every other value is read from
	// the generation served before.
	read("hash lost", e.want(t, 1, ids, lost))

	// An upload writes the hash again (its version starts again at 1):
	// its generations are served, on every node.
	var b strings.Builder
	b.WriteString("id,s_rating\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d,%v\n", id, float64(id)+0.75)
	}
	if _, err := e.r.UploadFile(ctx, e.catalog, "store", stores, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.UploadFile(ctx, e.catalog, "consumer", consumers, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.UploadFile(ctx, e.catalog, "store", writeFile(t, "rating.csv", b.String()), UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := Open(ctx, "main", e.cfg) // a pod that starts now
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, st := range []*Store{e.main, other} {
		if _, err := st.RefreshGenerations(ctx); err != nil {
			t.Fatal(err)
		}
		if st.gensMissing.Load() {
			t.Error("the generations are still taken for missing after an upload")
		}
	}
	if got := missing(); got != 0 {
		t.Errorf("seer_retrieval_generations_missing %v after the upload, want 0", got)
	}
	want := e.want(t, 1, ids)
	for i, id := range ids {
		want[i][0] = "redis " + features.FloatValue(float64(id)+0.75).String()
	}
	read("uploaded again", want)
	for id, g := range e.main.gens.Load().gens {
		if g <= kept {
			t.Errorf("feature %d uploaded again into generation %d, a number used before the loss (up to %d)", id, g, kept)
		}
	}
	e.r = New([]*Store{other, e.side}, Options{})
	read("uploaded again, new pod", want)
}

// TestGenerationsHashLostNoPod loses the generations hash while no pod that
// had read it runs: the next upload, by a process that never saw the hash,
// still numbers its generation past those whose fields are on the other
// nodes (found in a sample of their keys), so that the entities it leaves
// out keep no value from before the loss.
func TestGenerationsHashLostNoPod(t *testing.T) {
	for _, mode := range []string{ModeRing, ModeCluster} {
		t.Run(mode, func(t *testing.T) {
			e := newShardEnv(t, mode, Config{})
			ctx := context.Background()
			stores, _ := shardFiles(t)
			if _, err := e.r.UploadFile(ctx, e.catalog, "store", stores, UploadOptions{}); err != nil {
				t.Fatal(err) // the first generation is kept for a rollback
			}
			var kept uint32
			for _, g := range e.main.gens.Load().gens {
				kept = max(kept, g)
			}
			e.main.Close() // the last pod stops
			lost := e.nodeOf(t, GenerationsKey)
			if err := e.nodes[lost].Client().FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}

			// An upload of the ratings of stores 1 to 10 alone, from a
			// process that starts now.
			st, err := Open(ctx, "main", e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			e.r = New([]*Store{st, e.side}, Options{})
			var b strings.Builder
			b.WriteString("id,s_rating\n")
			for id := 1; id <= 10; id++ {
				fmt.Fprintf(&b, "%d,%v\n", id, float64(id)+0.75)
			}
			if _, err := e.r.UploadFile(ctx, e.catalog, "store", writeFile(t, "rating.csv", b.String()), UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.RefreshGenerations(ctx); err != nil {
				t.Fatal(err)
			}
			g := st.gens.Load().gens[e.catalog.Spec("s_rating").ID]
			if g <= kept {
				t.Errorf("uploaded after the loss into generation %d, a number used before it (up to %d)", g, kept)
			}
			ids := allStores()
			res := e.fetch(t, 1, ids, 5*time.Second)
			for i, id := range ids {
				want := "default -1"
				if id <= 10 {
					want = "redis " + features.FloatValue(float64(id)+0.75).String()
				}
				if got := res.rows[i][0]; got != want {
					t.Errorf("store %d: s_rating %s, want %s", id, got, want)
				}
			}
		})
	}
}
