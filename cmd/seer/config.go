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
	"github.com/seer-ml/seer/serving"
)

// Config is the service configuration, one YAML file: the server's own
// settings (serving.Config, inline) and the process's. Paths are relative
// to the file's directory. docs/config.md documents every key and its
// default.
type Config struct {
	serving.Config `yaml:",inline"`

	Listen   string        `yaml:"listen"`
	LogLevel string        `yaml:"log_level"`
	Shutdown time.Duration `yaml:"shutdown_timeout"`

	dir string // the config file's directory
}

// defaultConfig returns the configuration every file starts from.
func defaultConfig() Config {
	return Config{
		Config:   serving.DefaultConfig(),
		Listen:   "127.0.0.1:8080",
		LogLevel: "info",
		Shutdown: 15 * time.Second,
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
	errs := []error{c.Config.Check()}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		errs = append(errs, fmt.Errorf("log_level: %q (want debug, info, warn or error)", c.LogLevel))
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

// server returns the server's part of the configuration with its paths
// resolved and the admin token taken from SEER_ADMIN_TOKEN when set.
func (c *Config) server() serving.Config {
	sc := c.Config
	sc.Catalog, sc.Models = c.path(sc.Catalog), c.path(sc.Models)
	sc.Cache = c.cache()
	if sc.FeatureLog.Path != "-" {
		sc.FeatureLog.Path = c.path(sc.FeatureLog.Path)
	}
	sc.Seed = slices.Clone(sc.Seed)
	for i := range sc.Seed {
		sc.Seed[i].File = c.path(sc.Seed[i].File)
	}
	if t := os.Getenv("SEER_ADMIN_TOKEN"); t != "" {
		sc.AdminToken = t
	}
	return sc
}

// cache returns the config's cache section with its paths resolved.
func (c *Config) cache() retrieval.CacheConfig {
	cc := c.Cache
	cc.Trace.Path = c.path(cc.Trace.Path)
	return cc
}
