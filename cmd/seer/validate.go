package main

import (
	"context"
	"fmt"
	"io"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/serving"
)

// runValidate checks one model version directory as the registry would load
// it, and prints a one-line summary (and what the second evaluation
// compared, for formats that have one) or every problem found.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stdout)
	catalogPath := fs.String("catalog", "", "catalog file the model's features come from")
	configPath := fs.String("config", "", "configuration file naming the catalog (instead of --catalog)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("validate needs one model version directory")
	}
	dir := fs.Arg(0)
	catalog, err := flagCatalog(*catalogPath, *configPath)
	if err == nil && catalog == nil {
		catalog, err = features.ParseCatalog([]byte("{}"), nil)
	}
	if err != nil {
		return err
	}
	v, err := registry.LoadVersion(dir, catalog)
	if err != nil {
		for _, line := range registry.ProblemLines(err) {
			fmt.Fprintf(stderr, "%s: %s\n", dir, line)
		}
		return fmt.Errorf("validate %s: %d problem(s)", dir, len(registry.ProblemLines(err)))
	}
	m := v.Manifest
	fmt.Fprintf(stdout, "ok: %s@%s (%s, %d inputs, %d outputs, %d golden rows)\n",
		v.Name, v.Version, m.Format, len(m.Inputs), v.Model.NumOutputs(), len(m.Golden))
	if ver := v.Verified; ver.Rows > 0 {
		fmt.Fprintf(stdout, "second evaluation: %s agrees on the %d golden and %d probe rows",
			ver.Reference, ver.Rows-models.ProbeCount, models.ProbeCount)
		if ver.Unchecked != "" {
			fmt.Fprintf(stdout, "; it does not check %s", ver.Unchecked)
		}
		fmt.Fprintln(stdout)
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", dir, w)
	}
	return nil
}

// flagCatalog loads the catalog that --catalog names, or the one the
// configuration file that --config names points to; with neither it
// returns nil and no error.
func flagCatalog(catalogPath, configPath string) (*features.Catalog, error) {
	switch {
	case catalogPath != "" && configPath != "":
		return nil, usagef("give --catalog or --config, not both")
	case catalogPath != "":
		return serving.LoadCatalog(catalogPath, nil)
	case configPath != "":
		cfg, err := loadConfig(configPath)
		if err != nil {
			return nil, err
		}
		return serving.LoadCatalog(cfg.path(cfg.Catalog), cfg.StoreNames())
	}
	return nil, nil
}
