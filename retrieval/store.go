// Package retrieval reads and writes feature values in Redis: named stores
// (a standalone Redis, or an embedded in-process one; client-side sharded
// rings and Redis Cluster come next), one pipeline of HMGETs per store and
// query, batch uploads with pipelined HSETs, and the upload markers that
// tell caches a feature changed. The pod-local cache and shadow comparison
// live here too.
//
// It imports features only; it must not import registry or cmd.
package retrieval

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// ErrConfig is wrapped by every error that rejects a store's configuration.
var ErrConfig = errors.New("bad store config")

// Modes of a store.
const (
	ModeStandalone = "standalone" // one Redis server at Addr
	ModeEmbedded   = "embedded"   // an in-process Redis (miniredis), for quickstarts and tests
	ModeRing       = "ring"       // client-side sharding over Addrs (not yet supported)
	ModeCluster    = "cluster"    // a Redis Cluster reached through Addrs (not yet supported)
)

// Config configures one named store. It is read from YAML, strictly.
type Config struct {
	// Mode is standalone (the default) or embedded.
	Mode string `yaml:"mode"`
	// Addr is the host:port of a standalone server. For an embedded store it
	// is the address to listen on (default 127.0.0.1:0, a free port).
	Addr string `yaml:"addr"`
	// Addrs lists the nodes of a ring or the seed nodes of a cluster.
	Addrs []string `yaml:"addrs"`
	// DB is the database number of a standalone server.
	DB int `yaml:"db"`
	// PoolSize is the most connections to keep per node (default 10 per CPU).
	PoolSize int `yaml:"pool_size"`
	// DialTimeout bounds connecting (default 1s). Reads and writes stop at
	// the request's deadline; ReadTimeout and WriteTimeout (default 1s)
	// bound them when the context has none.
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// Defaults of Config.
const (
	DefaultDialTimeout = time.Second
	DefaultIOTimeout   = time.Second
)

// Check reports what is wrong with the configuration, with an error
// wrapping ErrConfig.
func (c Config) Check() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch c.Mode {
	case "", ModeStandalone:
		if c.Addr == "" {
			return fail("standalone mode needs addr")
		}
		if len(c.Addrs) > 0 {
			return fail("standalone mode takes addr, not addrs")
		}
	case ModeEmbedded:
		if len(c.Addrs) > 0 {
			return fail("embedded mode takes no addrs")
		}
	case ModeRing, ModeCluster:
		return fail("mode %s is not supported yet (want standalone or embedded)", c.Mode)
	default:
		return fail("unknown mode %q (want standalone or embedded)", c.Mode)
	}
	if c.DB < 0 || c.PoolSize < 0 {
		return fail("negative db or pool_size")
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		return fail("negative timeout")
	}
	return nil
}

// Store is one named feature store and its client.
type Store struct {
	name   string
	mode   string
	client redis.UniversalClient
	mini   *miniredis.Miniredis // embedded stores only

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // Fetch goroutines still using the client
}

// Open returns the store called name. A standalone store connects lazily:
// Open does not reach the server, Ping does. An embedded store starts an
// in-process Redis on a loopback port and talks to it through the same
// client and protocol as a real one.
func Open(ctx context.Context, name string, cfg Config) (*Store, error) {
	if name == "" {
		return nil, fmt.Errorf("open store: %w: empty name", ErrConfig)
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	s := &Store{name: name, mode: cfg.Mode}
	if s.mode == "" {
		s.mode = ModeStandalone
	}
	addr := cfg.Addr
	if s.mode == ModeEmbedded {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		s.mini = miniredis.NewMiniRedis()
		if err := s.mini.StartAddr(addr); err != nil {
			return nil, fmt.Errorf("open store %s: start embedded redis: %w", name, err)
		}
		addr = s.mini.Addr()
	}
	s.client = redis.NewClient(&redis.Options{
		Addr:         addr,
		DB:           cfg.DB,
		PoolSize:     cfg.PoolSize,
		DialTimeout:  orDefault(cfg.DialTimeout, DefaultDialTimeout),
		ReadTimeout:  orDefault(cfg.ReadTimeout, DefaultIOTimeout),
		WriteTimeout: orDefault(cfg.WriteTimeout, DefaultIOTimeout),
		// Every call runs under the request's deadline.
		ContextTimeoutEnabled: true,
		// RESP2 without CLIENT SETINFO: one less round trip per connection,
		// and proxies that only speak RESP2 work.
		Protocol:        2,
		DisableIdentity: true,
		ClientName:      "seer",
	})
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Name returns the store's name.
func (s *Store) Name() string { return s.name }

// Mode returns the store's mode: standalone or embedded.
func (s *Store) Mode() string { return s.mode }

// Addr returns the address seer connects to; for an embedded store, the
// loopback address other programs can write to.
func (s *Store) Addr() string {
	if s.mini != nil {
		return s.mini.Addr()
	}
	if c, ok := s.client.(*redis.Client); ok {
		return c.Options().Addr
	}
	return ""
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping store %s: %w", s.name, err)
	}
	return nil
}

// Close closes the store's connections, waits for reads that outlived their
// Fetch, and stops an embedded server. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.client.Close()
	s.inflight.Wait()
	if s.mini != nil {
		s.mini.Close()
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.name, err)
	}
	return nil
}

// begin registers a read that may outlive its caller; false when the store
// is closed.
func (s *Store) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

// MarkerKey is the hash on each store that holds, per feature field id,
// the feature's upload version (see docs/format.md).
const MarkerKey = "seer:markers"

// Markers reads the store's upload markers: feature id -> upload version.
// Fields that are not feature ids or values that are not integers are
// reported in the error (wrapping ErrMarkers), and the map still holds
// every good entry.
func (s *Store) Markers(ctx context.Context) (map[uint32]int64, error) {
	all, err := s.client.HGetAll(ctx, MarkerKey).Result()
	if err != nil {
		return nil, fmt.Errorf("markers of store %s: %w", s.name, err)
	}
	m := make(map[uint32]int64, len(all))
	var bad []error
	for field, value := range all {
		id, err := strconv.ParseUint(field, 10, 32)
		if err != nil {
			bad = append(bad, fmt.Errorf("field %q is not a feature id", field))
			continue
		}
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			bad = append(bad, fmt.Errorf("field %s: version %q is not an integer", field, value))
			continue
		}
		m[uint32(id)] = v
	}
	if len(bad) > 0 {
		return m, fmt.Errorf("markers of store %s: %w: %w", s.name, ErrMarkers, errors.Join(bad...))
	}
	return m, nil
}

// ErrMarkers is wrapped by errors that report bad entries in a marker hash.
var ErrMarkers = errors.New("bad upload markers")
