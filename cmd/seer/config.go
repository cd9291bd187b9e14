package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/retrieval"
)

// Config is the service configuration, one YAML file. Paths are relative to
// the file's directory. docs/config.md documents every key and its default.
type Config struct {
	Listen     string                      `yaml:"listen"`
	Catalog    string                      `yaml:"catalog"`
	Models     string                      `yaml:"models"`
	ModelsPoll time.Duration               `yaml:"models_poll"`
	Stores     map[string]retrieval.Config `yaml:"stores"`
	Seed       []Seed                      `yaml:"seed"`
	Predict    PredictConfig               `yaml:"predict"`
	Cache      retrieval.CacheConfig       `yaml:"cache"`
	AdminToken string                      `yaml:"admin_token"`
	LogLevel   string                      `yaml:"log_level"`
	Shutdown   time.Duration               `yaml:"shutdown_timeout"`

	dir string // the config file's directory
}

// Seed is a feature file uploaded into the stores at start, through the same
// code as `seer upload`.
type Seed struct {
	Entity string `yaml:"entity"`
	File   string `yaml:"file"`
}

// PredictConfig bounds the prediction endpoints.
type PredictConfig struct {
	// Timeout is the whole budget of a request, from decoding to answer.
	Timeout time.Duration `yaml:"timeout"`
	// RetrievalTimeout is the budget of feature reads; values that have not
	// arrived by then take their defaults and the result is degraded.
	RetrievalTimeout time.Duration `yaml:"retrieval_timeout"`
	MaxBodyBytes     int64         `yaml:"max_body_bytes"`
	MaxQueries       int           `yaml:"max_queries"`
	MaxCandidates    int           `yaml:"max_candidates"`
}

// defaultConfig returns the configuration every file starts from.
func defaultConfig() Config {
	return Config{
		Listen:     "127.0.0.1:8080",
		ModelsPoll: 10 * time.Second,
		LogLevel:   "info",
		Shutdown:   15 * time.Second,
		Cache:      retrieval.DefaultCacheConfig(),
		Predict: PredictConfig{
			Timeout:          time.Second,
			RetrievalTimeout: 50 * time.Millisecond,
			MaxBodyBytes:     4 << 20,
			MaxQueries:       64,
			MaxCandidates:    1000,
		},
	}
}

// loadConfig reads a configuration file strictly: unknown keys are errors.
func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg := defaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.dir = filepath.Dir(path)
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &cfg, nil
}

func (c *Config) check() error {
	var errs []error
	if c.Catalog == "" {
		errs = append(errs, errors.New("catalog: missing"))
	}
	if c.Models == "" {
		errs = append(errs, errors.New("models: missing"))
	}
	if len(c.Stores) == 0 {
		errs = append(errs, errors.New("stores: at least one store is needed"))
	}
	if c.ModelsPoll < 0 {
		errs = append(errs, errors.New("models_poll: negative"))
	}
	p := c.Predict
	if p.Timeout <= 0 || p.RetrievalTimeout <= 0 || p.RetrievalTimeout > p.Timeout {
		errs = append(errs, errors.New("predict: timeouts must be positive, retrieval_timeout at most timeout"))
	}
	if p.MaxBodyBytes <= 0 || p.MaxQueries <= 0 || p.MaxCandidates <= 0 {
		errs = append(errs, errors.New("predict: max_body_bytes, max_queries and max_candidates must be positive"))
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		errs = append(errs, fmt.Errorf("log_level: %q (want debug, info, warn or error)", c.LogLevel))
	}
	if err := c.Cache.Check(); err != nil {
		errs = append(errs, fmt.Errorf("cache: %w", err))
	}
	for i, s := range c.Seed {
		if s.Entity == "" || s.File == "" {
			errs = append(errs, fmt.Errorf("seed %d: entity and file are required", i+1))
		}
	}
	return errors.Join(errs...)
}

// path resolves a path from the config file against its directory.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// storeNames returns the configured store names, sorted.
func (c *Config) storeNames() []string {
	names := make([]string, 0, len(c.Stores))
	for n := range c.Stores {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// adminToken returns the admin bearer token: SEER_ADMIN_TOKEN when set,
// else the config's.
func (c *Config) adminToken() string {
	if t := os.Getenv("SEER_ADMIN_TOKEN"); t != "" {
		return t
	}
	return c.AdminToken
}
