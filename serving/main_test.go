package serving

import (
	"testing"

	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/internal/testenv"
)

// TestMain checks that the server's goroutines (the cache's poller and
// shadow worker) end with the tests.
func TestMain(m *testing.M) {
	redistest.VerifyTestMain(m)
}

// The files tests write.
var (
	writeFiles = testenv.WriteFiles
	copyFile   = testenv.CopyFile
)

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
