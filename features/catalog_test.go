package features

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestID(t *testing.T) {
	// The values are XXH64 with seed 0, cut to 32 bits; docs/format.md
	// quotes them.
	tests := []struct {
		name  string
		id    uint32
		field string
	}{
		{"store_avg_rating", 1364148139, "1364148139"},
		{"consumer_order_count", 1526198144, "1526198144"},
		{"", 0x51d8e999, "1373170073"}, // XXH64("") = 0xef46db3751d8e999
	}
	for _, tt := range tests {
		if got := ID(tt.name); got != tt.id {
			t.Errorf("ID(%q) = %d, want %d", tt.name, got, tt.id)
		}
		if got := Field(tt.name); got != tt.field {
			t.Errorf("Field(%q) = %q, want %q", tt.name, got, tt.field)
		}
	}
}

const testCatalog = `
entities:
  store:
    key: "st_{id}"
  consumer:
    key: "{id}:cx"
features:
  - name: store_avg_rating
    entity: store
    type: float
    store: main
    default: 4.2
    max_age: 36h
    description: mean rating over 90 days
  - name: store_order_count
    entity: store
    type: int
    store: main
    default: 0
  - name: store_is_open
    entity: store
    type: bool
    store: main
    cache: {mode: live, ttl: 30s}
  - name: store_cuisine
    entity: store
    type: string
    store: search
    default: unknown
    cache: {mode: off}
  - name: store_embedding
    entity: store
    type: vector
    store: search
    default: [0, 0.5, 1]
  - name: consumer_tags
    entity: consumer
    type: list
    store: main
    default: [new]
    cache: {mode: shadow}
`

func TestParseCatalog(t *testing.T) {
	c, err := ParseCatalog([]byte(testCatalog), []string{"main", "search"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(c.Specs), 6; got != want {
		t.Fatalf("%d specs, want %d", got, want)
	}
	st, cx := c.Entity("store"), c.Entity("consumer")
	if st == nil || cx == nil || c.Entity("nope") != nil {
		t.Fatalf("entities: %v", c.Entities)
	}
	if got, want := st.Key("1426727"), "st_1426727"; got != want {
		t.Errorf("store key = %q, want %q", got, want)
	}
	if got, want := string(cx.AppendKey([]byte(">"), "9")), ">9:cx"; got != want {
		t.Errorf("consumer AppendKey = %q, want %q", got, want)
	}
	if got, want := cx.Template(), "{id}:cx"; got != want {
		t.Errorf("Template() = %q, want %q", got, want)
	}

	type specView struct {
		Name, Field, Entity, Type, Store, Default string
		ID                                        uint32
		MaxAge                                    time.Duration
		Cache                                     CachePolicy
		Index                                     int
	}
	var got []specView
	for _, s := range c.Specs {
		if c.Spec(s.Name) != s {
			t.Errorf("Spec(%q) is not the listed spec", s.Name)
		}
		if s.Stats() == nil {
			t.Errorf("%s has no stats", s.Name)
		}
		got = append(got, specView{s.Name, s.Field, s.Entity.Name, s.Type.String(), s.Store, s.Default.String(), s.ID, s.MaxAge, s.Cache, s.Index})
	}
	want := []specView{
		{"store_avg_rating", "1364148139", "store", "float", "main", "4.2", 1364148139, 36 * time.Hour, CachePolicy{}, 0},
		{"store_order_count", Field("store_order_count"), "store", "int", "main", "0", ID("store_order_count"), 0, CachePolicy{}, 1},
		{"store_is_open", Field("store_is_open"), "store", "bool", "main", "null", ID("store_is_open"), 0, CachePolicy{Mode: CacheLive, TTL: 30 * time.Second}, 2},
		{"store_cuisine", Field("store_cuisine"), "store", "string", "search", `"unknown"`, ID("store_cuisine"), 0, CachePolicy{Mode: CacheOff}, 3},
		{"store_embedding", Field("store_embedding"), "store", "vector", "search", "[0,0.5,1]", ID("store_embedding"), 0, CachePolicy{}, 4},
		{"consumer_tags", Field("consumer_tags"), "consumer", "list", "main", `["new"]`, ID("consumer_tags"), 0, CachePolicy{Mode: CacheShadow}, 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("specs (-want +got):\n%s", diff)
	}
	if c.Spec("nope") != nil {
		t.Error("Spec of an unknown name is not nil")
	}
	// A nil store list accepts any store.
	if _, err := ParseCatalog([]byte(testCatalog), nil); err != nil {
		t.Errorf("without a store list: %v", err)
	}
}

// Two names whose XXH64 agree in the low 32 bits, found by brute force over
// feature_<n> (see TestFieldIDCollisionSearch).
const collideA, collideB = "feature_26861", "feature_59061"

func TestParseCatalogErrors(t *testing.T) {
	const entities = "entities:\n  store: {key: \"st_{id}\"}\n"
	feature := func(lines ...string) string {
		return entities + "features:\n  - " + strings.Join(lines, "\n    ") + "\n"
	}
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"empty file", "", "bad catalog: empty"},
		{"int max age", feature("name: a", "entity: store", "type: int", "store: main", "max_age: 60"), "into time.Duration"},
		{"not yaml", "{", "bad catalog"},
		{"unknown top-level key", entities + "extra: 1\n", "field extra not found"},
		{"unknown feature key", feature("name: a", "entity: store", "type: int", "store: main", "colour: red"), "field colour not found"},
		{"bad entity name", "entities:\n  \"st re\": {key: \"x{id}\"}\n", `entity "st re": bad name`},
		{"key without id", "entities:\n  store: {key: \"st_\"}\n", "must hold {id} once"},
		{"key with two ids", "entities:\n  store: {key: \"{id}{id}\"}\n", "must hold {id} once"},
		{"missing name", feature("entity: store", "type: int", "store: main"), "feature 1: bad or missing name"},
		{"bad name", feature("name: \"a b\"", "entity: store", "type: int", "store: main"), "feature a b: bad or missing name"},
		{"duplicate name", entities + "features:\n  - {name: a, entity: store, type: int, store: main}\n  - {name: a, entity: store, type: float, store: main}\n", "feature a: declared twice"},
		{"unknown entity", feature("name: a", "entity: consumer", "type: int", "store: main"), `feature a: unknown entity "consumer"`},
		{"missing entity", feature("name: a", "type: int", "store: main"), `feature a: unknown entity ""`},
		{"unknown type", feature("name: a", "entity: store", "type: double", "store: main"), `feature a: unknown type "double"`},
		{"unknown store", feature("name: a", "entity: store", "type: int", "store: other"), `feature a: unknown store "other"`},
		{"missing store", feature("name: a", "entity: store", "type: int"), `feature a: unknown store ""`},
		{"string default for float", feature("name: a", "entity: store", "type: float", "store: main", "default: high"), `feature a: default: want float, got string "high"`},
		{"float default for int", feature("name: a", "entity: store", "type: int", "store: main", "default: 1.5"), "feature a: default: want int, got number 1.5"},
		{"number default for bool", feature("name: a", "entity: store", "type: bool", "store: main", "default: 1"), "feature a: default: want bool"},
		{"scalar default for vector", feature("name: a", "entity: store", "type: vector", "store: main", "default: 1"), "feature a: default: want vector"},
		{"bad vector default", feature("name: a", "entity: store", "type: vector", "store: main", "default: [1, x]"), "feature a: default: vector item 1"},
		{"bad list default", feature("name: a", "entity: store", "type: list", "store: main", "default: [[1]]"), "feature a: default: list item 0"},
		{"bad cache mode", feature("name: a", "entity: store", "type: int", "store: main", "cache: {mode: sometimes}"), `feature a: cache mode "sometimes"`},
		{"negative max age", feature("name: a", "entity: store", "type: int", "store: main", "max_age: -1h"), "feature a: negative duration"},
		{"negative ttl", feature("name: a", "entity: store", "type: int", "store: main", "cache: {mode: live, ttl: -1s}"), "feature a: negative duration"},
		{"bad max age", feature("name: a", "entity: store", "type: int", "store: main", "max_age: soon"), "bad catalog"},
		{"non-finite int", feature("name: a", "entity: store", "type: int", "store: main", "allow_non_finite: true"), "feature a: allow_non_finite is for float and vector features, not int"},
		{"non-finite default", feature("name: a", "entity: store", "type: float", "store: main", "default: .nan"), "feature a: default: NaN is not a finite number (allow_non_finite in the catalog lets feature a hold NaN and ±Inf)"},
		{"non-finite vector default", feature("name: a", "entity: store", "type: vector", "store: main", "default: [1, -.inf]"), "feature a: default: vector item 1, -Inf, is not a finite number"},
		{"field id collision", entities + "features:\n  - {name: " + collideA + ", entity: store, type: int, store: main}\n  - {name: " + collideB + ", entity: store, type: int, store: main}\n",
			"feature " + collideB + ": field id 2962030094 collides with feature " + collideA + "; rename one"},
	}
	for _, tt := range tests {
		c, err := ParseCatalog([]byte(tt.yaml), []string{"main"})
		if err == nil {
			t.Errorf("%s: ParseCatalog = %d specs, want an error", tt.name, len(c.Specs))
			continue
		}
		if !errors.Is(err, ErrCatalog) {
			t.Errorf("%s: error %v does not wrap ErrCatalog", tt.name, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not contain %q", tt.name, err, tt.want)
		}
	}
}

// TestFieldIDCollisionSearch re-finds the colliding pair used above, so the
// collision test keeps testing a real collision.
func TestFieldIDCollisionSearch(t *testing.T) {
	if ID(collideA) != ID(collideB) {
		t.Fatalf("ID(%s) = %d, ID(%s) = %d: no longer a collision", collideA, ID(collideA), collideB, ID(collideB))
	}
	if testing.Short() {
		return
	}
	seen := make(map[uint32]string, 1<<17)
	for i := 0; ; i++ {
		name := "feature_" + strconv.Itoa(i)
		if other, ok := seen[ID(name)]; ok {
			if other != collideA || name != collideB {
				t.Errorf("first collision is %s/%s, want %s/%s", other, name, collideA, collideB)
			}
			return
		}
		seen[ID(name)] = name
	}
}

func TestParseCatalogNonFinite(t *testing.T) {
	c, err := ParseCatalog([]byte(`
entities:
  store: {key: "st_{id}"}
features:
  - {name: a, entity: store, type: float, store: main, allow_non_finite: true, default: .inf}
  - {name: b, entity: store, type: vector, store: main, allow_non_finite: true, default: [.nan]}
  - {name: c, entity: store, type: float, store: main}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Spec("a").AllowNonFinite || !c.Spec("b").AllowNonFinite || c.Spec("c").AllowNonFinite {
		t.Errorf("allow_non_finite: %v %v %v", c.Spec("a").AllowNonFinite, c.Spec("b").AllowNonFinite, c.Spec("c").AllowNonFinite)
	}
	if d := c.Spec("a").Default.Float(); !math.IsInf(d, 1) {
		t.Errorf("default of a = %v", d)
	}
}
