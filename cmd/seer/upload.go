package main

import (
	"context"
	"fmt"
	"io"

	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/serving"
)

// runUpload validates feature files against the catalog and writes them to
// the stores of their features, then bumps the features' upload markers.
func runUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("upload", stdout)
	configPath := fs.String("config", "", "configuration file (YAML)")
	entity := fs.String("entity", "", "entity type the files describe")
	batch := fs.Int("batch", 0, "rows per pipelined batch (0: the default)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" || *entity == "" || fs.NArg() == 0 {
		return usagef("upload needs --config FILE, --entity NAME and at least one file")
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	catalog, err := serving.LoadCatalog(cfg.path(cfg.Catalog), cfg.StoreNames())
	if err != nil {
		return err
	}
	if catalog.Entity(*entity) == nil {
		return fmt.Errorf("upload: unknown entity %q", *entity)
	}
	var stores []*retrieval.Store
	defer func() {
		for _, st := range stores {
			st.Close()
		}
	}()
	for _, name := range cfg.StoreNames() {
		sc := cfg.Stores[name]
		if sc.Mode == "embedded" {
			continue // lives inside a running seer serve; seed it through the config
		}
		st, err := retrieval.Open(ctx, name, sc)
		if err != nil {
			return fmt.Errorf("store %s: %w", name, err)
		}
		stores = append(stores, st)
	}
	ret := retrieval.New(stores, retrieval.Options{})
	for _, path := range fs.Args() {
		st, err := ret.UploadFile(ctx, catalog, *entity, path, retrieval.UploadOptions{BatchSize: *batch})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d rows, %d values written\n", path, st.Rows, st.Values)
	}
	return nil
}
