package serving

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/seer-ml/seer/internal/redistest"
)

// TestMain checks that the server's goroutines (the cache's poller and
// shadow worker) end with the tests.
func TestMain(m *testing.M) {
	redistest.VerifyTestMain(m)
}

// writeFiles writes name -> content under dir, making directories.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, filepath.Dir(dst), map[string]string{filepath.Base(dst): string(data)})
}

// demoCatalog is the quickstart catalog without defaults for the model's
// catalog inputs, so that a missing value is NaN, as in the golden rows.
const demoCatalog = `entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: store_avg_rating, entity: store, type: float, store: main}
  - {name: store_num_ratings, entity: store, type: int, store: main}
  - {name: store_delivery_minutes, entity: store, type: float, store: main}
  - {name: store_price_level, entity: store, type: int, store: main}
  - {name: store_cuisine, entity: store, type: string, store: main}
  - {name: consumer_order_count, entity: consumer, type: int, store: main}
  - {name: consumer_avg_spend, entity: consumer, type: float, store: main}
`

var cuisines = []string{"pizza", "sushi", "burger", "thai", "mexican"}
