package features

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.yaml.in/yaml/v3"
)

// ErrCatalog is wrapped by every error that rejects a catalog.
var ErrCatalog = errors.New("bad catalog")

// ID returns the field id of the feature called name: the low 32 bits of
// XXH64(name) with seed 0.
func ID(name string) uint32 { return uint32(xxhash.Sum64String(name)) }

// Field returns the Redis hash field of the feature called name: the
// unsigned decimal text of ID(name).
func Field(name string) string { return strconv.FormatUint(uint64(ID(name)), 10) }

// Entity is an entity type, such as a store or a consumer: the things
// features describe. Each entity lives in one Redis hash per id.
type Entity struct {
	Name   string
	prefix string
	suffix string
}

// Key returns the Redis key of the entity with the given id.
func (e *Entity) Key(id string) string { return e.prefix + id + e.suffix }

// AppendKey appends the Redis key of the entity with the given id to dst.
func (e *Entity) AppendKey(dst []byte, id string) []byte {
	dst = append(dst, e.prefix...)
	dst = append(dst, id...)
	return append(dst, e.suffix...)
}

// Template returns the key template the entity was declared with.
func (e *Entity) Template() string { return e.prefix + "{id}" + e.suffix }

// Pattern returns a glob pattern, as Redis's SCAN MATCH reads it, that
// matches every key of the entity type (and possibly others).
func (e *Entity) Pattern() string {
	return globEscape(e.prefix) + "*" + globEscape(e.suffix)
}

// globEscape escapes the characters Redis's glob patterns give a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Cache modes of a feature (see CachePolicy).
const (
	CacheDefault = ""       // follow the service-wide mode
	CacheOff     = "off"    // never cache
	CacheShadow  = "shadow" // fill and compare the cache, answer from Redis
	CacheLive    = "live"   // answer from the cache when it holds the value
)

// CachePolicy is a feature's own cache setting from the catalog.
type CachePolicy struct {
	Mode string        `yaml:"mode"`
	TTL  time.Duration `yaml:"ttl"`
}

// Spec is one catalog feature, with everything the request path needs fixed
// at load.
type Spec struct {
	Name    string
	ID      uint32
	Field   string // Redis hash field: decimal ID
	Entity  *Entity
	Type    Type
	Store   string
	Default Value
	MaxAge  time.Duration // zero: values never expire
	Cache   CachePolicy
	Index   int // position in the catalog
	// AllowNonFinite lets a float or vector feature hold NaN and ±Inf.
	// Without it such a stored value is corrupt, and uploads refuse it.
	AllowNonFinite bool
	// Dim is a vector feature's length; 0 when not declared. A stored
	// vector of another length counts as a value of the wrong type.
	Dim int

	stats *Stats
}

// Stats counts what happened to one feature's values. It is safe for
// concurrent use.
type Stats struct {
	Defaults  atomic.Uint64 // rows that took the default
	Corrupt   atomic.Uint64 // stored values that failed to decode, or non-finite ones the spec does not allow
	WrongType atomic.Uint64 // stored values of another type (or vector length)
	Stale     atomic.Uint64 // stored values older than the max age
}

// CheckFinite returns an error when v holds a NaN or an infinite float
// (a float, or an item of a vector) and the spec does not allow it.
func (s *Spec) CheckFinite(v Value) error {
	if s.AllowNonFinite || v.Finite() {
		return nil
	}
	what := fmt.Sprint(v.Float())
	if v.t == Vector {
		i := slices.IndexFunc(v.vec, func(f float32) bool { return !FloatValue(float64(f)).Finite() })
		what = fmt.Sprintf("vector item %d, %v,", i, v.vec[i])
	}
	return fmt.Errorf("%s is not a finite number (allow_non_finite in the catalog lets feature %s hold NaN and ±Inf)", what, s.Name)
}

// Fits reports whether v, of the feature's type, also has its dimension.
func (s *Spec) Fits(v Value) bool {
	return s.Dim == 0 || v.Type() != Vector || len(v.Vector()) == s.Dim
}

// Stats returns the feature's counters.
func (s *Spec) Stats() *Stats { return s.stats }

// Catalog is the set of entity types and features seer knows.
type Catalog struct {
	Entities map[string]*Entity
	Specs    []*Spec
	byName   map[string]*Spec
}

// Spec returns the feature called name, or nil.
func (c *Catalog) Spec(name string) *Spec { return c.byName[name] }

// Entity returns the entity type called name, or nil.
func (c *Catalog) Entity(name string) *Entity { return c.Entities[name] }

type catalogFile struct {
	Entities map[string]struct {
		Key string `yaml:"key"`
	} `yaml:"entities"`
	Features []struct {
		Name        string        `yaml:"name"`
		Entity      string        `yaml:"entity"`
		Type        string        `yaml:"type"`
		Store       string        `yaml:"store"`
		Default     any           `yaml:"default"`
		MaxAge      time.Duration `yaml:"max_age"`
		Description string        `yaml:"description"`
		Cache       CachePolicy   `yaml:"cache"`
		// AllowNonFinite lets a float or vector hold NaN and ±Inf.
		AllowNonFinite bool `yaml:"allow_non_finite"`
		Dim            int  `yaml:"dim"`
	} `yaml:"features"`
}

var namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]*$`)

// ParseCatalog parses and checks a catalog in YAML. Unknown keys are errors.
// When stores is not nil, every feature's store must be one of them. Errors
// wrap ErrCatalog and name the feature or entity at fault.
func ParseCatalog(data []byte, stores []string) (*Catalog, error) {
	var f catalogFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty", ErrCatalog)
		}
		return nil, fmt.Errorf("%w: %v", ErrCatalog, err)
	}
	c := &Catalog{Entities: make(map[string]*Entity), byName: make(map[string]*Spec)}
	for name, e := range f.Entities {
		if !namePattern.MatchString(name) {
			return nil, fmt.Errorf("%w: entity %q: bad name", ErrCatalog, name)
		}
		prefix, suffix, ok := strings.Cut(e.Key, "{id}")
		if !ok || strings.Contains(suffix, "{id}") {
			return nil, fmt.Errorf("%w: entity %s: key %q must hold {id} once", ErrCatalog, name, e.Key)
		}
		c.Entities[name] = &Entity{Name: name, prefix: prefix, suffix: suffix}
	}
	ids := make(map[uint32]string)
	for i, ff := range f.Features {
		where := fmt.Sprintf("feature %d", i+1)
		if ff.Name != "" {
			where = "feature " + ff.Name
		}
		if !namePattern.MatchString(ff.Name) {
			return nil, fmt.Errorf("%w: %s: bad or missing name", ErrCatalog, where)
		}
		if c.byName[ff.Name] != nil {
			return nil, fmt.Errorf("%w: %s: declared twice", ErrCatalog, where)
		}
		e := c.Entities[ff.Entity]
		if e == nil {
			return nil, fmt.Errorf("%w: %s: unknown entity %q", ErrCatalog, where, ff.Entity)
		}
		t, err := ParseType(ff.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCatalog, where, err)
		}
		if ff.Store == "" || (stores != nil && !slices.Contains(stores, ff.Store)) {
			return nil, fmt.Errorf("%w: %s: unknown store %q", ErrCatalog, where, ff.Store)
		}
		def, err := parseDefault(t, ff.Default)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: default: %v", ErrCatalog, where, err)
		}
		switch {
		case ff.Dim != 0 && t != Vector:
			return nil, fmt.Errorf("%w: %s: dim is for vector features, not %s", ErrCatalog, where, t)
		case ff.Dim < 0 || ff.Dim > MaxItems:
			return nil, fmt.Errorf("%w: %s: dim %d (want 1 to %d)", ErrCatalog, where, ff.Dim, MaxItems)
		case ff.Dim > 0 && def.Valid() && len(def.Vector()) != ff.Dim:
			return nil, fmt.Errorf("%w: %s: default of %d values for dim %d", ErrCatalog, where, len(def.Vector()), ff.Dim)
		}
		switch ff.Cache.Mode {
		case CacheDefault, CacheOff, CacheShadow, CacheLive:
		default:
			return nil, fmt.Errorf("%w: %s: cache mode %q (want off, shadow or live)", ErrCatalog, where, ff.Cache.Mode)
		}
		if ff.AllowNonFinite && t != Float && t != Vector {
			return nil, fmt.Errorf("%w: %s: allow_non_finite is for float and vector features, not %s", ErrCatalog, where, t)
		}
		if ff.MaxAge < 0 || ff.Cache.TTL < 0 {
			return nil, fmt.Errorf("%w: %s: negative duration", ErrCatalog, where)
		}
		id := ID(ff.Name)
		if other, ok := ids[id]; ok {
			return nil, fmt.Errorf("%w: %s: field id %d collides with feature %s; rename one", ErrCatalog, where, id, other)
		}
		ids[id] = ff.Name
		s := &Spec{
			Name: ff.Name, ID: id, Field: strconv.FormatUint(uint64(id), 10),
			Entity: e, Type: t, Store: ff.Store, Default: def, MaxAge: ff.MaxAge,
			Cache: ff.Cache, Index: len(c.Specs), AllowNonFinite: ff.AllowNonFinite, Dim: ff.Dim, stats: new(Stats),
		}
		if err := s.CheckFinite(def); err != nil {
			return nil, fmt.Errorf("%w: %s: default: %v", ErrCatalog, where, err)
		}
		c.Specs = append(c.Specs, s)
		c.byName[s.Name] = s
	}
	return c, nil
}

// parseDefault converts a default from YAML into a Value of type t. Without
// one the default is the invalid Value: missing, which models see as NaN.
func parseDefault(t Type, x any) (Value, error) {
	if x == nil {
		return Value{}, nil
	}
	return Coerce(t, x)
}
