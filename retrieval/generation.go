package retrieval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// Generations make uploads atomic (docs/format.md, "Generations"). Each
// upload writes its values under fields of a new generation number, where
// readers do not look, and switches every feature it wrote to that
// generation at the end, in one transaction on each store's generations
// hash. Readers read each feature from the field of its current
// generation; the previous one stays for a rollback; older ones are
// deleted.

// GenerationsKey is the hash of each store that records its features'
// generations. Its hash tag, {seer:markers}, puts it in the Redis Cluster
// slot and the ring shard of MarkerKey, so that one transaction switches
// generations and bumps upload markers.
const GenerationsKey = "{seer:markers}:generations"

// MaxGeneration is the largest generation number, so that every field
// stays an integer Redis stores compactly.
const MaxGeneration = 1<<31 - 1

// Leases of uploads in progress: an upload renews its lease every
// uploadRenew; one whose lease ran out is taken for dead and its values
// for garbage.
const (
	uploadLease = time.Minute
	uploadRenew = 15 * time.Second
)

// DefaultGCGrace is how long a generation that stopped being served stays
// before it is deleted, so that pods that have not yet polled the switch
// can still read it.
const DefaultGCGrace = time.Minute

// ErrGenerations is wrapped by errors about a store's generations hash:
// records that do not parse, an upload whose generation was collected, a
// rollback with nothing to roll back to.
var ErrGenerations = errors.New("bad generations")

// GenField returns the hash field that generation gen of the feature with
// field id id is stored under: the id itself for generation 0 (values
// written before generations, or by writers that do not use them), and
// the decimal of gen<<32 | id after.
func GenField(id, gen uint32) string {
	return strconv.FormatUint(uint64(gen)<<32|uint64(id), 10)
}

// Generation is one generation of a feature, as the generations hash
// records it.
type Generation struct {
	Gen    uint32 `json:"gen"`
	Time   int64  `json:"time,omitempty"`   // unix seconds it became current
	Rows   int64  `json:"rows,omitempty"`   // entities it has a value for
	Source string `json:"source,omitempty"` // what was uploaded, for people
}

// FeatureGenerations is the record of one feature: the generation served
// and the one before it.
type FeatureGenerations struct {
	Current  Generation  `json:"current"`
	Previous *Generation `json:"previous,omitempty"`
}

// Upload is an upload in progress: the generation it writes, the features
// it may write, and its lease.
type Upload struct {
	Features []uint32 `json:"features"`
	Started  int64    `json:"started"`
	Lease    int64    `json:"lease"` // unix seconds; past it, the upload is dead
	Source   string   `json:"source,omitempty"`
}

// Garbage is a generation no longer served: per feature id (decimal),
// the unix second it stopped being served.
type Garbage struct {
	Features map[string]int64 `json:"features"`
}

// GenState is a store's generations hash, parsed.
type GenState struct {
	Version  int64 // bumped by every switch and rollback
	Next     int64
	Features map[uint32]FeatureGenerations
	Uploads  map[uint32]Upload
	Garbage  map[uint32]Garbage
}

// Fields of the generations hash besides the features' ids.
const (
	genVersion = "version"
	genNext    = "next"
	genUpload  = "upload:"
	genGarbage = "garbage:"
)

// parseGenState parses the fields of a generations hash. Bad fields are
// reported in the error, wrapping ErrGenerations, and left out.
func parseGenState(all map[string]string) (*GenState, error) {
	st := &GenState{
		Features: make(map[uint32]FeatureGenerations),
		Uploads:  make(map[uint32]Upload),
		Garbage:  make(map[uint32]Garbage),
	}
	var bad []error
	fail := func(field, format string, args ...any) {
		bad = append(bad, fmt.Errorf("field %q: %s", field, fmt.Sprintf(format, args...)))
	}
	for field, value := range all {
		switch {
		case field == genNext || field == genVersion:
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				fail(field, "not a non-negative integer")
				continue
			}
			if field == genNext {
				st.Next = n
			} else {
				st.Version = n
			}
		case strings.HasPrefix(field, genUpload):
			g, err := parseGen(field[len(genUpload):])
			var u Upload
			if err == nil {
				err = json.Unmarshal([]byte(value), &u)
			}
			if err != nil {
				fail(field, "%v", err)
				continue
			}
			st.Uploads[g] = u
		case strings.HasPrefix(field, genGarbage):
			g, err := parseGen(field[len(genGarbage):])
			if field == genGarbage+"0" {
				g, err = 0, nil // the fields written before generations
			}
			var gb Garbage
			if err == nil {
				err = json.Unmarshal([]byte(value), &gb)
			}
			if err != nil {
				fail(field, "%v", err)
				continue
			}
			st.Garbage[g] = gb
		default:
			id, err := strconv.ParseUint(field, 10, 32)
			if err != nil {
				fail(field, "not a feature id")
				continue
			}
			var fg FeatureGenerations
			if err := json.Unmarshal([]byte(value), &fg); err != nil {
				fail(field, "%v", err)
				continue
			}
			if fg.Current.Gen > MaxGeneration || (fg.Previous != nil && fg.Previous.Gen > MaxGeneration) {
				fail(field, "generation over %d", MaxGeneration)
				continue
			}
			st.Features[uint32(id)] = fg
		}
	}
	if len(bad) > 0 {
		return st, fmt.Errorf("%w: %w", ErrGenerations, errors.Join(bad...))
	}
	return st, nil
}

func parseGen(s string) (uint32, error) {
	g, err := strconv.ParseUint(s, 10, 32)
	if err != nil || g == 0 || g > MaxGeneration {
		return 0, errors.New("not a generation number")
	}
	return uint32(g), nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return string(b)
}

// Generations reads the store's generations hash.
func (s *Store) Generations(ctx context.Context) (*GenState, error) {
	all, err := s.client.HGetAll(ctx, GenerationsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("generations of store %s: %w", s.name, err)
	}
	st, err := parseGenState(all)
	if err != nil {
		return st, fmt.Errorf("generations of store %s: %w", s.name, err)
	}
	return st, nil
}

// genTable is what reads need of a store's generations: the field each
// feature past generation 0 is read from, and for the cache an epoch per
// feature that changes whenever its generation does and never repeats.
type genTable struct {
	version int64 // the hash's version field when it was read
	next    int64 // the largest next field read
	fields  map[uint32]*string
	gens    map[uint32]uint32 // every feature with a record
	epochs  map[uint32]uint64
}

// field returns the field to read the feature s from.
func (t *genTable) field(s *features.Spec) *string {
	if t != nil && len(t.fields) > 0 {
		if f, ok := t.fields[s.ID]; ok {
			return f
		}
	}
	return &s.Field
}

// epoch returns the feature's epoch: 0 until it has a record.
func (t *genTable) epoch(id uint32) uint64 {
	if t == nil {
		return 0
	}
	return t.epochs[id]
}

// genRefresh is how often reads check that a store's generations did not
// change: one HGET of the hash's version field.
const genRefresh = time.Second

// readTable returns the table reads of the store use now, and false when
// the generations were never read (a read must then wait for
// firstTable rather than read fields that may not be the served ones).
// When the table is older than genRefresh, it starts a refresh in the
// background.
func (s *Store) readTable() (*genTable, bool) {
	loaded := s.gensLoaded.Load()
	now := time.Now().UnixNano()
	if loaded && now-s.gensTried.Load() > int64(genRefresh) && s.gensRefreshing.CompareAndSwap(false, true) {
		s.gensTried.Store(now)
		if s.begin() {
			go func() {
				defer s.inflight.Done()
				defer s.gensRefreshing.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
				defer cancel()
				// A node whose breaker is open is left alone: the
				// refresh is tried again at a later read.
				if n := s.keyNode(ctx, GenerationsKey); n == nil || n.brk.isOpen() {
					return
				}
				_, _ = s.refreshGenerations(ctx) // a lost hash is reported by RefreshGenerations
			}()
		} else {
			s.gensRefreshing.Store(false)
		}
	}
	return s.gens.Load(), loaded
}

// keyNode returns the node that holds key, or nil when a cluster cannot
// say.
func (s *Store) keyNode(ctx context.Context, key string) *node {
	switch {
	case s.ring != nil:
		return s.nodes[s.ring.index(key)]
	case s.cluster != nil:
		c, err := s.cluster.MasterForKey(ctx, key)
		if err != nil {
			return nil
		}
		return s.clusterNode(c)
	}
	return s.nodes[0]
}

// firstTable returns the store's table, reading the generations first
// when they never were; concurrent callers wait for one read.
func (s *Store) firstTable(ctx context.Context) (*genTable, error) {
	if !s.gensLoaded.Load() {
		if _, err := s.LoadGenerations(ctx); err != nil && !s.gensLoaded.Load() {
			return nil, err
		}
	}
	return s.gens.Load(), nil
}

// RefreshGenerations reads the version of the store's generations hash and,
// when it changed since the last read (or there was none), the whole hash,
// as LoadGenerations does. The first call after the hash was found gone
// (by this call or a read's refresh) returns an error wrapping
// ErrGenerations that says so; later ones return none until the hash is
// written again and lost again.
func (s *Store) RefreshGenerations(ctx context.Context) ([]uint32, error) {
	changed, err := s.refreshGenerations(ctx)
	if err == nil && s.gensMissing.Load() && s.gensReported.CompareAndSwap(false, true) {
		var version int64
		if t := s.gens.Load(); t != nil {
			version = t.version
		}
		err = fmt.Errorf("generations of store %s: %w: %s is gone (no version, no records): reads keep the generations of version %d until an upload switches generations again",
			s.name, ErrGenerations, GenerationsKey, version)
	}
	return changed, err
}

// refreshGenerations is RefreshGenerations without reporting a lost hash.
func (s *Store) refreshGenerations(ctx context.Context) ([]uint32, error) {
	if s.gensLoaded.Load() {
		v, err := s.client.HGet(ctx, GenerationsKey, genVersion).Int64()
		if errors.Is(err, redis.Nil) {
			v, err = 0, nil
		}
		if err != nil {
			return nil, fmt.Errorf("generations of store %s: %w", s.name, err)
		}
		t, missing := s.gens.Load(), s.gensMissing.Load()
		if (t == nil && v == 0) || (t != nil && !missing && t.version == v) || (missing && v == 0) {
			s.gensChecked.Store(time.Now().UnixNano())
			return nil, nil
		}
	}
	return s.LoadGenerations(ctx)
}

// LoadGenerations reads the store's generations hash and makes reads use
// each feature's current generation from then on. It returns the ids of
// the features whose generation changed. A record that does not parse
// keeps the generation the store read before (and is reported in the
// error).
//
// A hash found gone (no version, no records: its node restarted empty, or
// the key was deleted) after generations were read keeps the generations
// read before: their fields are still on the other nodes, where
// generation 0 has none (RefreshGenerations reports it). A hash that
// holds a version again replaces the table, as any change does.
func (s *Store) LoadGenerations(ctx context.Context) ([]uint32, error) {
	// One read at a time: the first reads of a store all wait for it.
	if err := lockCtx(ctx, s.gensMu); err != nil {
		return nil, fmt.Errorf("generations of store %s: %w", s.name, err)
	}
	defer func() { <-s.gensMu }()
	checked := time.Now().UnixNano()
	st, err := s.Generations(ctx)
	if st == nil {
		return nil, err
	}
	old := s.gens.Load()
	if old != nil && st.Version == 0 && len(st.Features) == 0 {
		s.gensChecked.Store(checked)
		s.gensMissing.Store(true)
		if st.Next == 0 {
			err = errors.Join(err, s.restoreNext(ctx, old))
		}
		return nil, err
	}
	if s.gensMissing.Swap(false) {
		s.gensReported.Store(false)
	}
	t := &genTable{version: st.Version, next: st.Next, fields: make(map[uint32]*string), gens: make(map[uint32]uint32), epochs: make(map[uint32]uint64)}
	if old != nil {
		t.next = max(t.next, old.next)
	}
	if err != nil && old != nil {
		// Keep what was known of the records that no longer parse.
		maps.Copy(t.gens, old.gens)
	}
	for id, fg := range st.Features {
		t.gens[id] = fg.Current.Gen
	}
	var changed []uint32
	for id, g := range t.gens {
		if g != 0 {
			f := GenField(id, g)
			t.fields[id] = &f
		}
		if old != nil {
			if og, ok := old.gens[id]; ok && og == g {
				t.epochs[id] = old.epochs[id]
				continue
			}
		}
		t.epochs[id] = s.gensEpoch.Add(1)
		if old != nil || g != 0 {
			changed = append(changed, id)
		}
	}
	if len(t.gens) == 0 {
		t = nil
	}
	s.gens.Store(t)
	s.gensChecked.Store(checked)
	s.gensLoaded.Store(true)
	slices.Sort(changed)
	return changed, err
}

// nextMargin is how far past the largest generation number a store knew
// restoreNext sets the next one: past the generations allocated since it
// last read the hash, by uploads that had not switched.
const nextMargin = 1 << 10

// restoreNext writes the next field of a generations hash found gone,
// unless an upload already did, past every generation number the store
// knew (old): the kept generations' fields are still on the other nodes,
// and an upload that numbered its generation from 1 again could write into
// them, leaving the values of entities it does not include readable as
// its own.
func (s *Store) restoreNext(ctx context.Context, old *genTable) error {
	n := old.next
	for _, g := range old.gens {
		n = max(n, int64(g))
	}
	if err := s.client.HSetNX(ctx, GenerationsKey, genNext, n+nextMargin).Err(); err != nil {
		return fmt.Errorf("generations of store %s: restore %s: %w", s.name, genNext, err)
	}
	return nil
}

// How seedNext samples a store: up to nextSampleKeys keys of each entity
// type on each node, found in at most nextSampleScans SCAN calls of 1000.
const (
	nextSampleKeys  = 256
	nextSampleScans = 64
)

// seedNext gives a generations hash without a next field, unless an upload
// does first (HSETNX), a next past the largest generation number whose
// fields it finds in a sample of the store's keys (patterns), by nextMargin
// as restoreNext does. A hash without next is a new store's, or one lost
// while no pod that had read it ran to restore next: numbered from 1
// again, an upload could write into the fields of a generation still on
// the other nodes of a ring or cluster, and the entities it leaves out
// would keep values from before the loss, read as its own. A generation
// written to every entity of a table shows in any sample of the table's
// keys; a new store has none, and numbers from 1.
func (s *Store) seedNext(ctx context.Context, patterns []string) error {
	if has, err := s.client.HExists(ctx, GenerationsKey, genNext).Result(); err != nil || has {
		return err
	}
	var (
		mu  sync.Mutex // a cluster's masters are sampled in parallel
		top uint32
	)
	sample := func(ctx context.Context, c *redis.Client) error {
		var high uint32
		for _, pattern := range patterns {
			var keys []string
			var cursor uint64
			for range nextSampleScans {
				page, next, err := c.ScanType(ctx, cursor, pattern, 1000, "hash").Result()
				if err != nil {
					return fmt.Errorf("scan %s: %w", c.Options().Addr, err)
				}
				keys = append(keys, page...)
				if cursor = next; cursor == 0 || len(keys) >= nextSampleKeys {
					break
				}
			}
			pipe := c.Pipeline()
			cmds := make([]*redis.StringSliceCmd, len(keys))
			for i, k := range keys {
				cmds[i] = pipe.HKeys(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("hkeys on %s: %w", c.Options().Addr, err)
			}
			for _, cmd := range cmds {
				for _, f := range cmd.Val() {
					if v, err := strconv.ParseUint(f, 10, 64); err == nil {
						high = max(high, uint32(v>>32))
					}
				}
			}
		}
		mu.Lock()
		top = max(top, high)
		mu.Unlock()
		return nil
	}
	if err := s.forEachNode(ctx, sample); err != nil {
		return fmt.Errorf("sample the generations in use: %w", err)
	}
	if top == 0 {
		return nil
	}
	return s.client.HSetNX(ctx, GenerationsKey, genNext, int64(top)+nextMargin).Err()
}

// lockCtx takes the lock mu (a channel of one) unless ctx ends first.
func lockCtx(ctx context.Context, mu chan struct{}) error {
	select {
	case mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// genKeys are the keys a generation transaction touches: the generations
// hash and the markers, in one slot.
var genKeys = []string{GenerationsKey}

// watch runs fn in a transaction on the generations hash, again when
// another writer changed the hash first.
func (s *Store) watch(ctx context.Context, fn func(*redis.Tx) error) error {
	var err error
	for range 20 {
		err = s.client.Watch(ctx, fn, genKeys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return err
}

// beginGeneration allocates a generation number on the store and records
// an upload of the given features into it. patterns match the keys of the
// store's entity types (see seedNext).
func (s *Store) beginGeneration(ctx context.Context, ids []uint32, source string, now time.Time, patterns []string) (uint32, error) {
	if err := s.seedNext(ctx, patterns); err != nil {
		return 0, fmt.Errorf("new generation on store %s: %w", s.name, err)
	}
	n, err := s.client.HIncrBy(ctx, GenerationsKey, genNext, 1).Result()
	if err != nil {
		return 0, fmt.Errorf("new generation on store %s: %w", s.name, err)
	}
	if n <= 0 || n > MaxGeneration {
		return 0, fmt.Errorf("new generation on store %s: %w: %s is %d", s.name, ErrGenerations, genNext, n)
	}
	g := uint32(n)
	u := Upload{Features: ids, Started: now.Unix(), Lease: now.Add(uploadLease).Unix(), Source: source}
	if err := s.client.HSet(ctx, GenerationsKey, genUpload+strconv.FormatUint(uint64(g), 10), mustJSON(u)).Err(); err != nil {
		return 0, fmt.Errorf("new generation on store %s: %w", s.name, err)
	}
	return g, nil
}

// renewGeneration extends the lease of upload g; it fails when the upload
// is no longer recorded (a collector took it for dead).
func (s *Store) renewGeneration(ctx context.Context, g uint32, now time.Time) error {
	field := genUpload + strconv.FormatUint(uint64(g), 10)
	return s.watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.HGet(ctx, GenerationsKey, field).Result()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("%w: upload of generation %d on store %s was taken for dead and collected", ErrGenerations, g, s.name)
		}
		if err != nil {
			return err
		}
		var u Upload
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrGenerations, field, err)
		}
		u.Lease = now.Add(uploadLease).Unix()
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, GenerationsKey, field, mustJSON(u))
			return nil
		})
		return err
	})
}

// abortGeneration gives up upload g: its values become garbage at once.
func (s *Store) abortGeneration(ctx context.Context, g uint32, ids []uint32) error {
	field := strconv.FormatUint(uint64(g), 10)
	gb := Garbage{Features: make(map[string]int64, len(ids))}
	for _, id := range ids {
		gb.Features[strconv.FormatUint(uint64(id), 10)] = 0
	}
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, GenerationsKey, genUpload+field)
		p.HSet(ctx, GenerationsKey, genGarbage+field, mustJSON(gb))
		return nil
	})
	if err != nil {
		return fmt.Errorf("abort generation %d on store %s: %w", g, s.name, err)
	}
	return nil
}

// Switch is one feature's part of a generation switch.
type Switch struct {
	ID   uint32
	Rows int64
}

// switchGeneration makes generation g current for the given features, in
// one transaction: their previous generations become garbage, the upload
// record goes, and their upload markers are bumped.
func (s *Store) switchGeneration(ctx context.Context, g uint32, sw []Switch, source string, now time.Time) ([]int64, error) {
	field := genUpload + strconv.FormatUint(uint64(g), 10)
	fields := make([]string, 0, len(sw)+1)
	fields = append(fields, field)
	for _, x := range sw {
		fields = append(fields, strconv.FormatUint(uint64(x.ID), 10))
	}
	var bumps []*redis.IntCmd
	err := s.watch(ctx, func(tx *redis.Tx) error {
		vals, err := tx.HMGet(ctx, GenerationsKey, fields...).Result()
		if err != nil {
			return err
		}
		if vals[0] == nil {
			return fmt.Errorf("%w: upload of generation %d was taken for dead and collected; upload again", ErrGenerations, g)
		}
		records := make([]any, 0, 2*len(sw))
		garbage := make(map[uint32]map[string]int64)
		for k, x := range sw {
			var old FeatureGenerations
			if v, ok := vals[k+1].(string); ok {
				if err := json.Unmarshal([]byte(v), &old); err != nil {
					return fmt.Errorf("%w: feature %d: %v", ErrGenerations, x.ID, err)
				}
			}
			prev := old.Current
			nu := FeatureGenerations{
				Current:  Generation{Gen: g, Time: now.Unix(), Rows: x.Rows, Source: source},
				Previous: &prev,
			}
			if old.Previous != nil && old.Previous.Gen != g {
				ids := garbage[old.Previous.Gen]
				if ids == nil {
					ids = make(map[string]int64)
					garbage[old.Previous.Gen] = ids
				}
				ids[fields[k+1]] = now.Unix()
			}
			records = append(records, fields[k+1], mustJSON(nu))
		}
		merged, err := mergeGarbage(ctx, tx, garbage)
		if err != nil {
			return err
		}
		bumps = bumps[:0]
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, GenerationsKey, records...)
			if len(merged) > 0 {
				p.HSet(ctx, GenerationsKey, merged...)
			}
			p.HDel(ctx, GenerationsKey, field)
			p.HIncrBy(ctx, GenerationsKey, genVersion, 1)
			for _, f := range fields[1:] {
				bumps = append(bumps, p.HIncrBy(ctx, MarkerKey, f, 1))
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("switch store %s to generation %d: %w", s.name, g, err)
	}
	versions := make([]int64, len(bumps))
	for i, c := range bumps {
		versions[i] = c.Val()
	}
	return versions, nil
}

// mergeGarbage reads the garbage records of the given generations and
// returns field, value pairs that add the given features to them.
func mergeGarbage(ctx context.Context, tx *redis.Tx, add map[uint32]map[string]int64) ([]any, error) {
	if len(add) == 0 {
		return nil, nil
	}
	gens := slices.Sorted(maps.Keys(add))
	fields := make([]string, len(gens))
	for i, g := range gens {
		fields[i] = genGarbage + strconv.FormatUint(uint64(g), 10)
	}
	vals, err := tx.HMGet(ctx, GenerationsKey, fields...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, 2*len(gens))
	for i, g := range gens {
		gb := Garbage{Features: make(map[string]int64)}
		if v, ok := vals[i].(string); ok {
			if err := json.Unmarshal([]byte(v), &gb); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrGenerations, fields[i], err)
			}
			if gb.Features == nil {
				gb.Features = make(map[string]int64)
			}
		}
		maps.Copy(gb.Features, add[g])
		out = append(out, fields[i], mustJSON(gb))
	}
	return out, nil
}

// rollback swaps the current and previous generations of the given
// features, in one transaction, and bumps their upload markers.
func (s *Store) rollback(ctx context.Context, ids []uint32) ([]FeatureGenerations, error) {
	fields := make([]string, len(ids))
	for i, id := range ids {
		fields[i] = strconv.FormatUint(uint64(id), 10)
	}
	var out []FeatureGenerations
	err := s.watch(ctx, func(tx *redis.Tx) error {
		vals, err := tx.HMGet(ctx, GenerationsKey, fields...).Result()
		if err != nil {
			return err
		}
		out = out[:0]
		records := make([]any, 0, 2*len(ids))
		for i, v := range vals {
			var fg FeatureGenerations
			if s, ok := v.(string); ok {
				if err := json.Unmarshal([]byte(s), &fg); err != nil {
					return fmt.Errorf("%w: feature %s: %v", ErrGenerations, fields[i], err)
				}
			}
			if fg.Previous == nil {
				return fmt.Errorf("%w: feature field %s has no previous generation", ErrGenerations, fields[i])
			}
			cur := fg.Current
			fg.Current, fg.Previous = *fg.Previous, &cur
			out = append(out, fg)
			records = append(records, fields[i], mustJSON(fg))
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, GenerationsKey, records...)
			p.HIncrBy(ctx, GenerationsKey, genVersion, 1)
			for _, f := range fields {
				p.HIncrBy(ctx, MarkerKey, f, 1)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("roll back on store %s: %w", s.name, err)
	}
	return out, nil
}

// Rollback switches each named feature back to its previous generation
// (and the current one becomes the previous, so that a second rollback
// undoes the first): one transaction per store, which also bumps the
// features' upload markers. It returns the features' records after the
// switch. Features of several stores are switched store by store.
func (r *Retriever) Rollback(ctx context.Context, c *features.Catalog, names []string) (map[string]FeatureGenerations, error) {
	byStore := make(map[int][]*features.Spec)
	for _, name := range names {
		s := c.Spec(name)
		if s == nil {
			return nil, fmt.Errorf("rollback: %w: no feature %q in the catalog", ErrGenerations, name)
		}
		si, ok := r.byName[s.Store]
		if !ok {
			return nil, fmt.Errorf("rollback: %w: feature %s: no store %q", ErrUpload, name, s.Store)
		}
		if !slices.Contains(byStore[si], s) {
			byStore[si] = append(byStore[si], s)
		}
	}
	out := make(map[string]FeatureGenerations)
	for _, si := range slices.Sorted(maps.Keys(byStore)) {
		specs := byStore[si]
		ids := make([]uint32, len(specs))
		for i, s := range specs {
			ids[i] = s.ID
		}
		st := r.stores[si]
		recs, err := st.rollback(ctx, ids)
		if err != nil {
			return out, fmt.Errorf("rollback: %w", err)
		}
		for i, s := range specs {
			out[s.Name] = recs[i]
		}
		if _, err := st.LoadGenerations(ctx); err != nil {
			return out, fmt.Errorf("rollback: switched, but %w", err)
		}
	}
	return out, nil
}
