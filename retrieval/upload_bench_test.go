package retrieval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

// BenchmarkUpload uploads 20,000 rows of 30 float features into a
// redis-server, CSV and JSON Lines; b.N counts uploads. The machine's two
// cores are shared by seer and Redis: the figure is the wall time of the
// whole upload, the switch included.
func BenchmarkUpload(b *testing.B) {
	const rows, nf = 20000, 30
	var cat strings.Builder
	cat.WriteString("entities: {store: {key: \"st_{id}\"}}\nfeatures:\n")
	for i := range nf {
		fmt.Fprintf(&cat, "  - {name: f%d, entity: store, type: float, store: main}\n", i)
	}
	c, err := features.ParseCatalog([]byte(cat.String()), nil)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var csv, jsonl strings.Builder
	csv.WriteString("id")
	for i := range nf {
		fmt.Fprintf(&csv, ",f%d", i)
	}
	csv.WriteString("\n")
	for r := range rows {
		fmt.Fprintf(&csv, "%d", r)
		fmt.Fprintf(&jsonl, `{"id":%d`, r)
		for i := range nf {
			x := float64(rng.IntN(2000000)-1000000) / 1e4
			fmt.Fprintf(&csv, ",%v", x)
			fmt.Fprintf(&jsonl, `,"f%d":%v`, i, x)
		}
		csv.WriteString("\n")
		jsonl.WriteString("}\n")
	}
	files := map[string]string{"csv": writeFile(b, "d.csv", csv.String()), "jsonl": writeFile(b, "d.jsonl", jsonl.String())}
	srv := redistest.Start(b)
	st, err := Open(context.Background(), "main", Config{Addr: srv.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := New([]*Store{st}, Options{})
	for _, format := range []string{"csv", "jsonl"} {
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.UploadFile(context.Background(), c, "store", files[format], UploadOptions{SkipGC: true}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(rows*nf)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
		})
	}
}
