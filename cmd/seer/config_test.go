package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seer-ml/seer/serving"
)

// TestConfigsLoad loads every configuration under configs/ with its catalog.
func TestConfigsLoad(t *testing.T) {
	paths, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no configs found: %v", err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg, err := loadConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := serving.LoadCatalog(cfg.path(cfg.Catalog), cfg.StoreNames()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigStrict(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nlisten_addr: x\n", "listen_addr"},
		{"unknown store key", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded, adr: x}}\n", "adr"},
		{"no catalog", "models: m\nstores: {main: {mode: embedded}}\n", "catalog: missing"},
		{"no stores", "catalog: c.yaml\nmodels: m\n", "stores"},
		{"bad duration", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nmodels_poll: soon\n", "soon"},
		{"retrieval over total", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\npredict: {timeout: 10ms, retrieval_timeout: 20ms}\n", "retrieval_timeout"},
		{"bad log level", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nlog_level: loud\n", "log_level"},
		{"unknown cache key", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\ncache: {mode: live, max_entries: 5}\n", "max_entries"},
		{"bad memory limit", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nmemory_limit: 2GB\n", "memory_limit"},
		{"bad gogc", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\ngogc: -5\n", "gogc"},
		{"negative delay", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nshutdown_delay: -1s\n", "shutdown_delay"},
		{"bad cache mode", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\ncache: {mode: sometimes}\n", "cache: "},
		{"unknown feature_log key", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nfeature_log: {path: f, rotate: 5}\n", "rotate"},
		{"bad sample", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nfeature_log: {path: f, sample: 5}\n", "feature_log: bad feature_log config: sample: 5 is not between 0 and 1"},
		{"bad shadows", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nshadows: {queue: 0}\n", "shadows: bad shadows config: queue"},
		{"unknown guardrails key", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nguardrails: {rate: 0.5}\n", "rate"},
		{"bad guardrail", "catalog: c.yaml\nmodels: m\nstores: {main: {mode: embedded}}\nguardrails: {features: {x: {default_rate: 2}}}\n", "guardrails: bad guardrails config: features.x: default_rate: 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "seer.yaml")
			if err := os.WriteFile(p, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := loadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
