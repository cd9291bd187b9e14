// Package retrieval reads and writes feature values in Redis: named stores
// (a standalone Redis, a client-side sharded ring of Redis servers, a Redis
// Cluster, or an embedded in-process Redis), one pipeline of HMGETs per
// store and query split per node and sent to the nodes in parallel, a
// circuit breaker per node, batch uploads with pipelined HSETs, and the
// upload markers that tell caches a feature changed. The pod-local cache
// and shadow comparison live here too.
//
// It imports features only; it must not import registry or cmd.
package retrieval

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	ModeRing       = "ring"       // keys sharded client-side over the servers at Addrs
	ModeCluster    = "cluster"    // a Redis Cluster reached through the seed nodes at Addrs
)

// Config configures one named store. It is read from YAML, strictly.
type Config struct {
	// Mode is standalone (the default), ring, cluster or embedded.
	Mode string `yaml:"mode"`
	// Addr is the host:port of a standalone server. For an embedded store it
	// is the address to listen on (default 127.0.0.1:0, a free port).
	Addr string `yaml:"addr"`
	// Addrs lists the shards of a ring, in order (the order is part of the
	// key layout, see docs/format.md), or the seed nodes of a cluster.
	Addrs []string `yaml:"addrs"`
	// DB is the database number of a standalone server or of every shard
	// of a ring. A Redis Cluster has database 0 only.
	DB int `yaml:"db"`
	// Username is the ACL user; empty means the default user.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the password.
	// The password itself never goes into the configuration.
	PasswordEnv string `yaml:"password_env"`
	// Password is refused: it exists to say so clearly.
	Password string `yaml:"password"`
	// TLS configures encrypted connections.
	TLS TLSConfig `yaml:"tls"`
	// PoolSize is the most connections to keep per node (go-redis's
	// default: 10 per CPU, 5 per CPU for a cluster).
	PoolSize int `yaml:"pool_size"`
	// DialTimeout bounds connecting (default 1s). ReadTimeout (default 1s)
	// is how long a node may take to answer one read of a Fetch before the
	// read counts against its breaker: Fetch itself stops waiting at the
	// request's deadline, but the read goes on in the background until the
	// node answers or ReadTimeout passes, so that a node is judged on its
	// own time and not on the request's budget. Keep it well above
	// predict.retrieval_timeout. ReadTimeout and WriteTimeout (default 1s)
	// also bound the other commands (uploads, markers, pings) when their
	// context has no deadline.
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxRetries is how often a command that failed on the network is
	// tried again within its deadline: 0 means the default, 3; -1 means
	// never. In a cluster, redirections (MOVED, ASK) are followed up to 3
	// times in any case.
	MaxRetries int `yaml:"max_retries"`
	// BatchKeys is the most keys a read of a query to one node may have to
	// share round trips with other small reads (batch.go): 0 means the
	// default, 8; -1 turns batching off, each read on a connection of its
	// own.
	BatchKeys int `yaml:"batch_keys"`
	// ReadFromReplicas sends a cluster's reads to replicas (READONLY),
	// spread round robin over the replicas of each slot; the master serves
	// when its replicas fail.
	ReadFromReplicas bool `yaml:"read_from_replicas"`
	// RouteByLatency sends a cluster's reads to the node of each slot,
	// master or replica, that answers fastest. It implies ReadFromReplicas.
	RouteByLatency bool `yaml:"route_by_latency"`
	// Breaker configures the circuit breaker of each node.
	Breaker BreakerConfig `yaml:"breaker"`
	// Required makes the pod unready (/readyz answers 503) while this
	// store is not fully healthy. Other stores only degrade their features.
	Required bool `yaml:"required"`
}

// TLSConfig configures TLS to a store's nodes.
type TLSConfig struct {
	// Enabled turns TLS on; the other keys are refused without it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the certificate authorities to trust instead
	// of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that ask for one (tls-auth-clients).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name to verify in the servers' certificates
	// (default: the host of each address).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Defaults of Config.
const (
	DefaultDialTimeout = time.Second
	DefaultIOTimeout   = time.Second
	DefaultMaxRetries  = 3
	DefaultBatchKeys   = 8
)

// Check reports what is wrong with the configuration, with an error
// wrapping ErrConfig. It reads neither the environment nor files; Open
// does.
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
		if c.Username != "" || c.PasswordEnv != "" || c.TLS.Enabled {
			return fail("embedded mode takes no username, password_env or tls")
		}
	case ModeRing, ModeCluster:
		if c.Addr != "" {
			return fail("%s mode takes addrs, not addr", c.Mode)
		}
		if len(c.Addrs) == 0 {
			return fail("%s mode needs addrs", c.Mode)
		}
		for i, a := range c.Addrs {
			if a == "" {
				return fail("addrs[%d] is empty", i)
			}
			if slices.Contains(c.Addrs[:i], a) {
				return fail("addrs lists %s twice", a)
			}
		}
	default:
		return fail("unknown mode %q (want standalone, ring, cluster or embedded)", c.Mode)
	}
	if c.Mode == ModeCluster && c.DB != 0 {
		return fail("db: a Redis Cluster has database 0 only")
	}
	if c.Mode != ModeCluster && (c.ReadFromReplicas || c.RouteByLatency) {
		return fail("read_from_replicas and route_by_latency are for cluster mode")
	}
	if c.Password != "" {
		return fail("password: secrets do not belong in the config; put the password in an environment variable and name it in password_env")
	}
	if c.DB < 0 || c.PoolSize < 0 {
		return fail("negative db or pool_size")
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		return fail("negative timeout")
	}
	if c.MaxRetries < -1 {
		return fail("max_retries: %d (want -1 for none, 0 for the default, or more)", c.MaxRetries)
	}
	if c.BatchKeys < -1 {
		return fail("batch_keys: %d (want -1 for no batches, 0 for the default, or more)", c.BatchKeys)
	}
	if err := c.Breaker.check(); err != nil {
		return fail("breaker: %v", err)
	}
	t := c.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		return fail("tls: settings given but tls.enabled is false")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fail("tls: cert_file and key_file go together")
	}
	return nil
}

// password returns the password from the environment variable the
// configuration names.
func (c Config) password() (string, error) {
	if c.PasswordEnv == "" {
		return "", nil
	}
	p, ok := os.LookupEnv(c.PasswordEnv)
	if !ok || p == "" {
		return "", fmt.Errorf("%w: password_env: environment variable %s is not set", ErrConfig, c.PasswordEnv)
	}
	return p, nil
}

// config loads the TLS configuration's files; nil when TLS is off.
func (t TLSConfig) config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.ca_file: %w", ErrConfig, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls.ca_file %s: no PEM certificate in it", ErrConfig, t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.cert_file, tls.key_file: %w", ErrConfig, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Store is one named feature store and its client.
type Store struct {
	name     string
	mode     string
	required bool
	client   redis.UniversalClient
	mini     *miniredis.Miniredis // embedded stores only

	// nodes are the servers of a standalone store (one) or a ring (one per
	// shard, in the order of Addrs), each with its breaker.
	nodes []*node
	ring  *ringHash
	// cluster is the client of a cluster store, whose nodes are found per
	// key and kept in clusterNodes by address.
	cluster      *redis.ClusterClient
	replicas     bool // reads go to replicas
	breaker      BreakerConfig
	nodeTimeout  time.Duration // the most a node may take to answer a read
	dial         func(context.Context, string, string) (net.Conn, error)
	dialTimeout  time.Duration
	retries      int // how often Fetch sends a read again after its connection broke
	batchKeys    int // the most keys of a read that batches (batch.go); 0: none do
	clusterMu    sync.Mutex
	clusterNodes map[string]*node

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // Fetch goroutines still using the client

	// gens is the field each feature past generation 0 is read from
	// (LoadGenerations); gensLoaded says it was read once, gensChecked
	// when (unix nanoseconds) it was last found current.
	gens           atomic.Pointer[genTable]
	gensLoaded     atomic.Bool
	gensChecked    atomic.Int64
	gensTried      atomic.Int64 // unix nanoseconds of the last refresh started by a read
	gensRefreshing atomic.Bool
	gensEpoch      atomic.Uint64
	gensMu         chan struct{} // a lock held while the generations are read
	// gensMissing says the generations hash was found gone (no version,
	// no records) after generations were read: reads keep the table
	// read before until the hash is written again; gensReported says
	// RefreshGenerations returned the error that says so.
	gensMissing  atomic.Bool
	gensReported atomic.Bool
}

// node is one Redis server of a store, with its circuit breaker.
type node struct {
	addr   string
	client *redis.Client // nil for cluster nodes: their clients come per key
	brk    breaker
	// slots holds a token per read in flight to the node, at most the
	// size of its connection pool. A read waits for a token under its
	// caller's deadline, so that reads queued inside seer never reach the
	// node's breaker: only a read the node was sent can fail it.
	slots chan struct{}
	// wires are the node's idle connections for Fetch (wire.go).
	wires wires
	// batch queues the node's small reads to share round trips (batch.go).
	batch batcher
	// silentAt is when (unix nanoseconds) a read from the node last timed
	// out with nothing from the node waiting in the socket (see conn.go).
	silentAt atomic.Int64
}

// forEachNode calls fn with the client of each of the store's nodes (a
// cluster's masters, in parallel), and returns the first error.
func (s *Store) forEachNode(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	if s.cluster != nil {
		return s.cluster.ForEachMaster(ctx, fn)
	}
	for _, n := range s.nodes {
		if err := fn(ctx, n.client); err != nil {
			return err
		}
	}
	return nil
}

// allNodes returns the store's nodes, a cluster's as far as it met them.
func (s *Store) allNodes() []*node {
	nodes := slices.Clone(s.nodes)
	s.clusterMu.Lock()
	for _, n := range s.clusterNodes {
		nodes = append(nodes, n)
	}
	s.clusterMu.Unlock()
	return nodes
}

// markSilent records that a read from the node at addr timed out with
// nothing from it to read.
func (s *Store) markSilent(addr string) {
	now := time.Now().UnixNano()
	for _, n := range s.nodes {
		if n.addr == addr {
			n.silentAt.Store(now)
			return
		}
	}
	if s.cluster != nil {
		s.clusterMu.Lock()
		n := s.clusterNodes[addr]
		s.clusterMu.Unlock()
		if n != nil {
			n.silentAt.Store(now)
		}
	}
}

// silentSince reports whether a read from the node timed out with nothing
// from the node to read at or after t.
func (n *node) silentSince(t time.Time) bool { return n.silentAt.Load() >= t.UnixNano() }

// Open returns the store called name. A network store connects lazily:
// Open does not reach the servers, Ping does. It reads the password from
// the environment and the TLS files, failing when they are missing. An
// embedded store starts an in-process Redis on a loopback port and talks
// to it through the same client and protocol as a real one.
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
	password, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	tlsConfig, err := cfg.TLS.config()
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	s := &Store{name: name, mode: cfg.Mode, required: cfg.Required, breaker: cfg.Breaker,
		nodeTimeout: orDefault(cfg.ReadTimeout, DefaultIOTimeout), gensMu: make(chan struct{}, 1)}
	if s.mode == "" {
		s.mode = ModeStandalone
	}
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = DefaultMaxRetries
	}
	s.retries = max(retries, 0)
	switch s.batchKeys = cfg.BatchKeys; s.batchKeys {
	case 0:
		s.batchKeys = DefaultBatchKeys
	case -1:
		s.batchKeys = 0
	}
	dial := dialer(orDefault(cfg.DialTimeout, DefaultDialTimeout), tlsConfig, s.markSilent)
	s.dial, s.dialTimeout = dial, orDefault(cfg.DialTimeout, DefaultDialTimeout)
	// Every client below runs each call under its context's deadline
	// (ContextTimeoutEnabled) and speaks RESP2 without CLIENT SETINFO: one
	// less round trip per connection, and proxies that only speak RESP2
	// work. A refused connection is not dialled again at once
	// (DialerRetries 1): the command is retried, up to MaxRetries, with
	// go-redis's backoff (Fetch's reads by runPart, the same way), so that
	// a dead node fails fast. Connections come from dial, which tells
	// seer's late reads from a node's (see conn.go).
	switch s.mode {
	case ModeStandalone, ModeEmbedded:
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
		c := redis.NewClient(&redis.Options{
			Addr:                  addr,
			Dialer:                dial,
			DB:                    cfg.DB,
			Username:              cfg.Username,
			Password:              password,
			TLSConfig:             tlsConfig,
			PoolSize:              cfg.PoolSize,
			DialTimeout:           orDefault(cfg.DialTimeout, DefaultDialTimeout),
			ReadTimeout:           orDefault(cfg.ReadTimeout, DefaultIOTimeout),
			WriteTimeout:          orDefault(cfg.WriteTimeout, DefaultIOTimeout),
			MaxRetries:            retries,
			DialerRetries:         1,
			ContextTimeoutEnabled: true,
			Protocol:              2,
			DisableIdentity:       true,
			ClientName:            "seer",
		})
		s.client = c
		s.nodes = []*node{s.newNode(addr, c, false)}
	case ModeRing:
		names := make([]string, len(cfg.Addrs))
		shards := make(map[string]string, len(cfg.Addrs))
		for i, a := range cfg.Addrs {
			names[i] = shardName(i)
			shards[names[i]] = a
		}
		s.ring = newRingHash(names)
		r := redis.NewRing(&redis.RingOptions{
			Addrs:  shards,
			Dialer: dial,
			// The key layout is fixed by the configured shards: a shard
			// that stops answering is not taken out of the ring (its keys
			// would silently move to other shards, which do not hold
			// them); its features degrade and its breaker opens instead.
			NewConsistentHash:  func([]string) redis.ConsistentHash { return s.ring },
			HeartbeatFn:        func(context.Context, *redis.Client) bool { return true },
			HeartbeatFrequency: time.Minute,
			// The shards' own clients retry, as a standalone store's
			// does: the Ring does not retry pipelines.
			NewClient: func(opt *redis.Options) *redis.Client {
				opt.MaxRetries = retries
				return redis.NewClient(opt)
			},
			DB:                    cfg.DB,
			Username:              cfg.Username,
			Password:              password,
			TLSConfig:             tlsConfig,
			PoolSize:              cfg.PoolSize,
			DialTimeout:           orDefault(cfg.DialTimeout, DefaultDialTimeout),
			ReadTimeout:           orDefault(cfg.ReadTimeout, DefaultIOTimeout),
			WriteTimeout:          orDefault(cfg.WriteTimeout, DefaultIOTimeout),
			MaxRetries:            -1,
			DialerRetries:         1,
			ContextTimeoutEnabled: true,
			Protocol:              2,
			DisableIdentity:       true,
			ClientName:            "seer",
		})
		s.client = r
		byAddr := make(map[string]*redis.Client, len(cfg.Addrs))
		for _, c := range r.GetShardClients() {
			byAddr[c.Options().Addr] = c
		}
		for _, a := range cfg.Addrs {
			c := byAddr[a]
			if c == nil {
				r.Close()
				return nil, fmt.Errorf("open store %s: ring has no client for shard %s", name, a)
			}
			s.nodes = append(s.nodes, s.newNode(a, c, false))
		}
	case ModeCluster:
		s.replicas = cfg.ReadFromReplicas || cfg.RouteByLatency
		s.cluster = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:          slices.Clone(cfg.Addrs),
			Dialer:         dial,
			ReadOnly:       s.replicas,
			RouteByLatency: cfg.RouteByLatency,
			Username:       cfg.Username,
			Password:       password,
			TLSConfig:      tlsConfig,
			PoolSize:       cfg.PoolSize,
			DialTimeout:    orDefault(cfg.DialTimeout, DefaultDialTimeout),
			ReadTimeout:    orDefault(cfg.ReadTimeout, DefaultIOTimeout),
			WriteTimeout:   orDefault(cfg.WriteTimeout, DefaultIOTimeout),
			MaxRetries:     retries,
			// MOVED and ASK are followed up to go-redis's default of 3
			// times, whatever max_retries says: a slot that moves must
			// not fail reads.
			DialerRetries:         1,
			ContextTimeoutEnabled: true,
			Protocol:              2,
			DisableIdentity:       true,
			ClientName:            "seer",
		})
		s.client = s.cluster
		s.clusterNodes = make(map[string]*node)
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// newNode returns the node at addr whose reads go through c; for a
// cluster node, c is the client go-redis keeps for it, and n.client stays
// nil.
func (s *Store) newNode(addr string, c *redis.Client, cluster bool) *node {
	n := &node{addr: addr, slots: make(chan struct{}, max(1, c.Options().PoolSize))}
	if !cluster {
		n.client = c
	}
	n.brk.init(s.breaker)
	return n
}

// clusterNode returns the node of a cluster store whose client is c, with
// its breaker, creating it on first use.
func (s *Store) clusterNode(c *redis.Client) *node {
	addr := c.Options().Addr
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	n := s.clusterNodes[addr]
	if n == nil {
		n = s.newNode(addr, c, true)
		s.clusterNodes[addr] = n
	}
	return n
}

// Name returns the store's name.
func (s *Store) Name() string { return s.name }

// Mode returns the store's mode: standalone, ring, cluster or embedded.
func (s *Store) Mode() string { return s.mode }

// Required reports whether the pod is unready while the store is not
// fully healthy.
func (s *Store) Required() bool { return s.required }

// Addr returns the address seer connects to; for an embedded store, the
// loopback address other programs can write to; for a ring or a cluster,
// the configured addresses separated by commas.
func (s *Store) Addr() string {
	switch {
	case s.mini != nil:
		return s.mini.Addr()
	case s.cluster != nil:
		return strings.Join(s.cluster.Options().Addrs, ",")
	}
	addrs := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		addrs[i] = n.addr
	}
	return strings.Join(addrs, ",")
}

// Ping checks that the store answers: every node of a standalone store or
// a ring, and any node of a cluster. Health says more.
func (s *Store) Ping(ctx context.Context) error {
	var err error
	if s.cluster != nil {
		err = s.cluster.Ping(ctx).Err()
	} else {
		for _, n := range s.nodes {
			if err = n.client.Ping(ctx).Err(); err != nil {
				err = fmt.Errorf("node %s: %w", n.addr, err)
				break
			}
		}
	}
	if err != nil {
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
	for _, n := range s.allNodes() {
		n.wires.close() // reads in flight fail at once
	}
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

// isClosed reports whether Close was called.
func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
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
// the feature's upload version (see docs/format.md). In a ring it lives on
// the shard the key hashes to, in a cluster on the master of its slot, so
// that every pod finds it.
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

// Health statuses of a store and of its nodes.
const (
	StatusOK          = "ok"           // every node answers
	StatusDegraded    = "degraded"     // some nodes answer; the others' features take defaults
	StatusDown        = "down"         // no node answers
	StatusBreakerOpen = "breaker_open" // the breaker skips the node (or every node) for now
)

// Health is a store's state as /readyz reports it.
type Health struct {
	Status string       `json:"status"`
	Nodes  []NodeHealth `json:"nodes"`
	// GenerationsMissing says the store's generations hash is gone while
	// reads keep the generations read before it went (docs/format.md,
	// Generations).
	GenerationsMissing bool `json:"generations_missing,omitempty"`
}

// NodeHealth is one node's state.
type NodeHealth struct {
	Addr   string `json:"addr"`
	Role   string `json:"role,omitempty"` // master or replica, in a cluster
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Health pings every node of the store in parallel under ctx, except those
// whose breaker is open, which it reports as such without sending them
// anything. A cluster's nodes are its masters (and replicas when reads go
// to them) as the client last saw the cluster.
func (s *Store) Health(ctx context.Context) Health {
	var nodes []NodeHealth
	if s.cluster != nil {
		nodes = s.clusterHealth(ctx)
	} else {
		nodes = make([]NodeHealth, len(s.nodes))
		var wg sync.WaitGroup
		for i, n := range s.nodes {
			nodes[i] = NodeHealth{Addr: n.addr}
			wg.Go(func() { nodes[i].check(ctx, n, n.client) })
		}
		wg.Wait()
	}
	return Health{Status: summarize(nodes), Nodes: nodes, GenerationsMissing: s.gensMissing.Load()}
}

// check fills h from n's breaker or, when it is closed, a PING through c.
func (h *NodeHealth) check(ctx context.Context, n *node, c *redis.Client) {
	if n.brk.isOpen() {
		h.Status = StatusBreakerOpen
		return
	}
	if err := c.Ping(ctx).Err(); err != nil {
		h.Status, h.Error = StatusDown, err.Error()
		return
	}
	h.Status = StatusOK
}

// summarize folds the nodes' statuses into the store's.
func summarize(nodes []NodeHealth) string {
	ok, open := 0, 0
	for _, n := range nodes {
		switch n.Status {
		case StatusOK:
			ok++
		case StatusBreakerOpen:
			open++
		}
	}
	switch {
	case len(nodes) > 0 && ok == len(nodes):
		return StatusOK
	case ok > 0:
		return StatusDegraded
	case len(nodes) > 0 && open == len(nodes):
		return StatusBreakerOpen
	}
	return StatusDown
}
