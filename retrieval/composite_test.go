package retrieval

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seer-ml/seer/features"
)

// TestCompositeFetch uploads features of a composite entity type and reads
// them for a ranking query: one HMGET per distinct key, counted by Redis.
func TestCompositeFetch(t *testing.T) {
	for _, mode := range []string{ModeStandalone, ModeCluster} {
		t.Run(mode, func(t *testing.T) {
			e := newShardEnv(t, mode, Config{})
			cat := strings.Replace(shardCatalog, "  consumer: {key: \"cx_{id}\"}\n",
				"  consumer: {key: \"cx_{id}\"}\n  consumer_store: {key: \"cs_{consumer}:{store}\"}\n", 1)
			cat += "  - {name: cs_orders, entity: consumer_store, type: int, store: main, default: -1}\n" +
				"  - {name: cs_rating, entity: consumer_store, type: float, store: main}\n"
			c, err := features.ParseCatalog([]byte(cat), []string{"main", "side"})
			if err != nil {
				t.Fatal(err)
			}
			var csv strings.Builder
			csv.WriteString("consumer,store,cs_orders,cs_rating\n")
			for cx := 1; cx <= 2; cx++ {
				for st := 1; st <= shardStores; st += 2 { // odd stores only
					fmt.Fprintf(&csv, "%d,%d,%d,%d.5\n", cx, st, cx*1000+st, st)
				}
			}
			ctx := context.Background()
			stats, err := e.r.UploadFile(ctx, c, "consumer_store", writeFile(t, "cs.csv", csv.String()), UploadOptions{})
			if err != nil || stats.Rows != shardStores {
				t.Fatalf("upload: %+v, %v", stats, err)
			}
			p, err := c.DisplayPlan([]string{"cs_orders", "cs_rating", "s_rating"})
			if err != nil {
				t.Fatal(err)
			}
			// Consumer 2 and 20 stores, each twice.
			q := &features.Query{Context: map[string]string{"consumer": "2"}}
			for i := range 40 {
				q.Candidates = append(q.Candidates, features.Candidate{Entities: map[string]string{"store": strconv.Itoa(i%20 + 1)}})
			}
			before := 0
			for _, n := range e.nodes {
				before += hmgetCalls(t, n)
			}
			var b features.Batch
			if err := p.Prepare(q, &b); err != nil {
				t.Fatal(err)
			}
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if degraded := e.r.Fetch(fctx, b.Lookups); len(degraded) > 0 {
				t.Fatalf("degraded %v", degraded)
			}
			after := 0
			for _, n := range e.nodes {
				after += hmgetCalls(t, n)
			}
			if n := after - before; n != 40 { // 20 consumer_store keys and 20 store keys
				t.Errorf("%d HMGETs for 20 distinct stores and pairs, want 40", n)
			}
			cells := make([]features.Cell, q.Rows()*len(p.Inputs))
			p.Assemble(q, &b, make([]float64, len(cells)), cells)
			for i := range q.Candidates {
				st := i%20 + 1
				row := cells[i*3 : i*3+3]
				got := fmt.Sprint(row[0].Value, " ", row[1].Value, " ", row[0].Why)
				want := fmt.Sprintf("%d %d.5 ", 2000+st, st)
				if st%2 == 0 {
					want = "-1 null absent" // even stores have no pair values
				}
				if got != want {
					t.Errorf("candidate %d (store %d): %s, want %s", i, st, got, want)
				}
			}
		})
	}
}
