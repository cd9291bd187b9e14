package features

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// features describe. Each entity lives in one Redis hash per id. A
// composite entity type, such as a consumer and a store together, has no
// id of its own: its key is built from the ids of its components.
type Entity struct {
	Name string
	// parts are the template's text around its placeholders: one more
	// than the placeholders ({id}, or the components).
	parts      []string
	components []*Entity
}

// Composite reports whether the entity type's key is built from the ids
// of other entity types.
func (e *Entity) Composite() bool { return len(e.components) > 0 }

// Components returns the entity types whose ids make a composite entity's
// key, in the template's order; nil for a simple one.
func (e *Entity) Components() []*Entity { return e.components }

// Key returns the Redis key of the entity with the given id. For a
// composite entity type, use AppendKeys.
func (e *Entity) Key(id string) string { return e.parts[0] + id + e.parts[len(e.parts)-1] }

// AppendKey appends the Redis key of the entity with the given id to dst.
func (e *Entity) AppendKey(dst []byte, id string) []byte {
	dst = append(dst, e.parts[0]...)
	dst = append(dst, id...)
	return append(dst, e.parts[len(e.parts)-1]...)
}

// ErrID is wrapped by the errors of AppendKeys.
var ErrID = errors.New("bad entity id")

// AppendKeys appends the key of a composite entity to dst, from the ids
// of its components in Components' order. So that the keys of two
// different pairs of ids can never be the same, an id must not hold the
// first byte of the text that follows it in the template (the ":" of
// "cs_{consumer}:{store}"); such an id is refused with an error wrapping
// ErrID, and dst is returned as it was.
func (e *Entity) AppendKeys(dst []byte, ids []string) ([]byte, error) {
	if len(ids) != len(e.components) {
		return dst, fmt.Errorf("%w: %s takes %d ids, not %d", ErrID, e.Name, len(e.components), len(ids))
	}
	start := len(dst)
	dst = append(dst, e.parts[0]...)
	for i, id := range ids {
		if sep := e.parts[i+1]; i < len(ids)-1 && strings.IndexByte(id, sep[0]) >= 0 {
			return dst[:start], fmt.Errorf("%w: %s id %q holds %q, which separates the ids of %s in its keys", ErrID, e.components[i].Name, truncate(id, 40), sep[:1], e.Name)
		}
		dst = append(dst, id...)
		dst = append(dst, e.parts[i+1]...)
	}
	return dst, nil
}

// Template returns the key template the entity was declared with.
func (e *Entity) Template() string {
	var b strings.Builder
	for i, p := range e.parts {
		if i > 0 {
			if e.Composite() {
				b.WriteString("{" + e.components[i-1].Name + "}")
			} else {
				b.WriteString("{id}")
			}
		}
		b.WriteString(p)
	}
	return b.String()
}

// Pattern returns a glob pattern, as Redis's SCAN MATCH reads it, that
// matches every key of the entity type (and possibly others).
func (e *Entity) Pattern() string {
	var b strings.Builder
	for i, p := range e.parts {
		if i > 0 {
			b.WriteByte('*')
		}
		b.WriteString(globEscape(p))
	}
	return b.String()
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

	interned atomic.Pointer[map[string]string] // see intern
	internMu sync.Mutex
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
	// Simple entity types first: composite ones are made of them.
	for name, e := range f.Entities {
		if !namePattern.MatchString(name) {
			return nil, fmt.Errorf("%w: entity %q: bad name", ErrCatalog, name)
		}
		prefix, suffix, ok := strings.Cut(e.Key, "{id}")
		if !ok {
			continue
		}
		if strings.Contains(suffix, "{id}") {
			return nil, fmt.Errorf("%w: entity %s: key %q must hold {id} once", ErrCatalog, name, e.Key)
		}
		c.Entities[name] = &Entity{Name: name, parts: []string{prefix, suffix}}
	}
	for name, e := range f.Entities {
		if c.Entities[name] != nil {
			continue
		}
		ent, err := compositeEntity(name, e.Key, c.Entities)
		if err != nil {
			return nil, fmt.Errorf("%w: entity %s: %v", ErrCatalog, name, err)
		}
		c.Entities[name] = ent
	}
	if err := checkTemplates(c.Entities); err != nil {
		return nil, err
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
		if slices.ContainsFunc(e.components, func(c *Entity) bool { return c.Name == ff.Name }) {
			return nil, fmt.Errorf("%w: %s: named like a component of entity %s, whose id columns take that name in uploads", ErrCatalog, where, e.Name)
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

// maxComponents bounds the entity types of a composite one.
const maxComponents = 8

// placeholder matches a template's {name}.
var placeholder = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_.:-]*)\}`)

// compositeEntity parses the key template of an entity type without {id}:
// its placeholders name the simple entity types whose ids make its key.
// known holds the simple entity types, and the composite ones parsed so
// far.
func compositeEntity(name, template string, known map[string]*Entity) (*Entity, error) {
	e := &Entity{Name: name}
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(template, -1) {
		comp := template[m[2]:m[3]]
		switch c := known[comp]; {
		case comp == name:
			return nil, fmt.Errorf("key %q names the entity type itself", template)
		case c == nil || c.Composite():
			return nil, fmt.Errorf("key %q names %q, which is not a simple entity type (a key holds {id} once, or names simple entity types)", template, comp)
		case slices.Contains(e.components, c):
			return nil, fmt.Errorf("key %q names %s twice", template, comp)
		default:
			e.components = append(e.components, c)
		}
		e.parts = append(e.parts, template[last:m[0]])
		last = m[1]
	}
	e.parts = append(e.parts, template[last:])
	if len(e.components) > maxComponents {
		return nil, fmt.Errorf("key %q names %d entity types, more than %d", template, len(e.components), maxComponents)
	}
	if len(e.components) == 0 {
		return nil, fmt.Errorf("key %q must hold {id} once, or name the entity types whose ids make it", template)
	}
	for i := 1; i < len(e.components); i++ {
		if e.parts[i] == "" {
			return nil, fmt.Errorf("key %q: {%s} and {%s} need text between them, which their ids cannot hold", template, e.components[i-1].Name, e.components[i].Name)
		}
	}
	return e, nil
}

// checkTemplates refuses two simple entity types whose keys can be the
// same key: the keys of templates p1{id}s1 and p2{id}s2 can meet when one
// prefix starts the other and one suffix ends the other, and what the
// longer ones have beyond the shorter could be part of an id (CheckID):
// "a_{id}" and "a_b_{id}" share the key "a_b_1". Templates that differ
// where an id cannot reach, in a byte an id cannot hold (':', '{', '}') or
// in a part that is not a prefix or suffix of the other, never meet.
// (Composite entity types keep their ids apart by their separators:
// AppendKeys.)
func checkTemplates(entities map[string]*Entity) error {
	names := slices.Sorted(maps.Keys(entities))
	for i, an := range names {
		for _, bn := range names[i+1:] {
			a, b := entities[an], entities[bn]
			if a.Composite() || b.Composite() {
				continue
			}
			x, okx := beyond(a.parts[0], b.parts[0], false)
			y, oky := beyond(a.parts[1], b.parts[1], true)
			if !okx || !oky || !idBytes(x) || !idBytes(y) {
				continue
			}
			return fmt.Errorf("%w: entities %s and %s: keys %q and %q can be the same key for two ids; "+
				"make the templates differ in a byte an id cannot hold (':', '{', '}'), e.g. %q",
				ErrCatalog, an, bn, a.Template(), b.Template(), a.parts[0]+":{id}"+a.parts[1])
		}
	}
	return nil
}

// beyond returns what the longer of s and t has beyond the shorter, when
// the shorter starts it (or ends it, when suffix is set).
func beyond(s, t string, suffix bool) (string, bool) {
	if len(s) < len(t) {
		s, t = t, s
	}
	switch {
	case !suffix && strings.HasPrefix(s, t):
		return s[len(t):], true
	case suffix && strings.HasSuffix(s, t):
		return s[:len(s)-len(t)], true
	}
	return "", false
}

// idBytes reports whether s could be part of an id: it holds no byte
// CheckID refuses.
func idBytes(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == '{' || r == '}' || r == ':'
	})
}

// parseDefault converts a default from YAML into a Value of type t. Without
// one the default is the invalid Value: missing, which models see as NaN.
func parseDefault(t Type, x any) (Value, error) {
	if x == nil {
		return Value{}, nil
	}
	return Coerce(t, x)
}
