package serving

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestGenerationsMissingReport: a store whose generations hash goes after
// the server read it (its node restarted empty) is shown so in /readyz and
// logged once, however many marker polls see it, until an upload writes
// the hash again.
func TestGenerationsMissingReport(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"catalog.yaml": demoCatalog, "models/README": "no models", "s.csv": "id,store_avg_rating\n1,4.5\n"})
	cfg := DefaultConfig()
	cfg.Catalog, cfg.Models, cfg.ModelsPoll = filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "models"), 0
	cfg.Stores = map[string]retrieval.Config{"main": {Mode: "standalone", Addr: rs.Addr}}
	cfg.Cache.MarkerPoll = 20 * time.Millisecond
	var logs logBuffer
	srv, err := Open(context.Background(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	upload := func() {
		t.Helper()
		if _, err := srv.retriever.UploadFile(ctx, srv.catalog, "store", filepath.Join(dir, "s.csv"), retrieval.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	missing := func() bool { return srv.Ready(ctx).Stores["main"].GenerationsMissing }
	upload()
	if missing() {
		t.Fatal("generations missing after an upload")
	}
	if err := rs.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !missing(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("/readyz does not say the generations are missing 10 s after the hash went")
		}
	}
	// Some more polls see the hash gone: the loss is logged once.
	for polls := srv.cache.Stats().MarkerPolls + 5; srv.cache.Stats().MarkerPolls < polls; time.Sleep(10 * time.Millisecond) {
	}
	if lines := logs.lines(t, "read generations"); len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["err"]), "is gone") {
		t.Errorf("the loss logged as %v, want once", lines)
	}
	upload()
	if missing() {
		t.Error("generations still missing after the upload wrote the hash again")
	}
}
