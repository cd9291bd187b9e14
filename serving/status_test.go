package serving

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/retrieval"
)

// TestHashEncodingReport: a store whose hash-max-listpack-entries the
// catalog's store features outgrow (5 features, 10 fields with a previous
// generation, limit 8) is logged at start and shown in /readyz.
func TestHashEncodingReport(t *testing.T) {
	rs := redistest.Start(t, "--hash-max-listpack-entries", "8")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"catalog.yaml": demoCatalog, "models/README": "no models"})
	cfg := DefaultConfig()
	cfg.Catalog, cfg.Models, cfg.ModelsPoll = filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "models"), 0
	cfg.Stores = map[string]retrieval.Config{"main": {Mode: "standalone", Addr: rs.Addr}}
	var logs bytes.Buffer
	srv, err := Open(context.Background(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	he := srv.Ready(context.Background()).Stores["main"].HashEncoding
	if he == nil || he.Limit != 8 || len(he.Wide) != 1 || he.Wide[0] != (retrieval.WideEntity{Entity: "store", Features: 5, Fields: 20}) {
		t.Errorf("readiness hash encoding: %+v", he)
	}
	if !strings.Contains(logs.String(), `"entity":"store","features":5,"fields_during_upload":20,"hash_max_listpack_entries":8`) {
		t.Errorf("no startup warning about store in:\n%s", logs.String())
	}
}
