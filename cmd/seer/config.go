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

	Listen string `yaml:"listen"`
	// GRPCListen is the address of the gRPC API; empty: no gRPC.
	GRPCListen string `yaml:"grpc_listen"`
	// AdminListen, when set, is the address of the admin routes
	// (/v1/admin/*, /metrics, /debug/pprof/*), which then leave listen.
	AdminListen string `yaml:"admin_listen"`
	LogLevel    string `yaml:"log_level"`
	// ShutdownDelay is how long seer goes on serving after SIGTERM while
	// /readyz says 503, so that load balancers stop sending first.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
	// Shutdown bounds the drain of in-flight requests once the listeners
	// are closed.
	Shutdown time.Duration `yaml:"shutdown_timeout"`
	// MemoryLimit is the Go memory limit: a size (1536MiB), off, or empty
	// for GOMEMLIMIT, else 90% of the container's cgroup limit.
	MemoryLimit string `yaml:"memory_limit"`
	// GOGC is the GC percentage; 0: GOGC when set, else defaultGOGC under
	// a memory limit and 100 without one.
	GOGC int `yaml:"gogc"`

	dir string // the config file's directory
}

// defaultConfig returns the configuration every file starts from.
func defaultConfig() Config {
	return Config{
		Config:        serving.DefaultConfig(),
		Listen:        "127.0.0.1:8080",
		LogLevel:      "info",
		ShutdownDelay: 5 * time.Second,
		Shutdown:      15 * time.Second,
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
	if c.ShutdownDelay < 0 || c.Shutdown <= 0 {
		errs = append(errs, errors.New("shutdown_delay: negative, or shutdown_timeout: not positive"))
	}
	if c.MemoryLimit != "" && c.MemoryLimit != "off" {
		if _, err := parseSize(c.MemoryLimit); err != nil {
			errs = append(errs, fmt.Errorf("memory_limit: %w", err))
		}
	}
	if c.GOGC < -1 {
		errs = append(errs, fmt.Errorf("gogc: %d (want a percentage, or -1 for off)", c.GOGC))
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
