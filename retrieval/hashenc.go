package retrieval

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// Redis stores a hash as a listpack, compact and searched linearly, while
// it has at most hash-max-listpack-entries fields, and as a hash table
// beyond (and never converts it back). docs/performance.md measures what
// that means per value: a listpack takes about 2.4 times less memory, but
// reading a field costs Redis more the longer the hash. With generations a
// hash holds each feature up to four times: between uploads the served
// generation, the previous one and the garbage the next upload collects
// beside its writes; during an upload also the new one, before the
// collector reaches the hash (docs/format.md, Memory). The field count
// that decides the encoding is four times the feature count.

// peakGenerations is how many generations of a feature a hash holds at
// the peak of an upload run with the default collection.
const peakGenerations = 4

// WideEntity is an entity type whose hashes in a store outgrow the
// store's listpack limit.
type WideEntity struct {
	Entity   string `json:"entity"`
	Features int    `json:"features"` // features of the entity type in the store
	// Fields is the hash fields of an entity at the peak of an upload
	// with the default collection: four times Features.
	Fields int `json:"fields"`
}

// HashEncoding is what a store's servers say about the encoding of the
// catalog's hashes.
type HashEncoding struct {
	// Limit is the smallest hash-max-listpack-entries of the store's
	// servers; -1 when unknown.
	Limit int `json:"hash_max_listpack_entries"`
	// Error says why Limit is unknown (CONFIG refused, a node down).
	Error string `json:"error,omitempty"`
	// Wide lists the entity types whose hashes have more fields than
	// Limit: they are hash tables.
	Wide []WideEntity `json:"wide_entities,omitempty"`
}

// HashEncoding reads hash-max-listpack-entries from every server of the
// store (CONFIG GET; hash-max-ziplist-entries before Redis 7) and lists
// the catalog's entity types whose hashes in this store outgrow it.
// Servers that refuse CONFIG (managed services, ACLs) leave Limit at -1.
func (s *Store) HashEncoding(ctx context.Context, c *features.Catalog) HashEncoding {
	he := HashEncoding{Limit: -1}
	var mu sync.Mutex
	var firstErr error
	read := func(ctx context.Context, cl *redis.Client) error {
		n, err := listpackLimit(ctx, cl)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", cl.Options().Addr, err)
			}
			return nil
		}
		if he.Limit < 0 || n < he.Limit {
			he.Limit = n
		}
		return nil
	}
	if err := s.forEachNode(ctx, read); err != nil && firstErr == nil {
		firstErr = err // read returns none; a cluster may fail to load its slot map
	}
	if firstErr != nil {
		he.Limit, he.Error = -1, firstErr.Error()
		return he
	}
	count := make(map[*features.Entity]int)
	var order []*features.Entity
	for _, sp := range c.Specs {
		if sp.Store != s.name {
			continue
		}
		if count[sp.Entity] == 0 {
			order = append(order, sp.Entity)
		}
		count[sp.Entity]++
	}
	for _, e := range order {
		if n := count[e]; peakGenerations*n > he.Limit {
			he.Wide = append(he.Wide, WideEntity{Entity: e.Name, Features: n, Fields: peakGenerations * n})
		}
	}
	slices.SortFunc(he.Wide, func(a, b WideEntity) int { return b.Features - a.Features })
	return he
}

// listpackLimit reads one server's hash-max-listpack-entries.
func listpackLimit(ctx context.Context, c *redis.Client) (int, error) {
	for _, name := range []string{"hash-max-listpack-entries", "hash-max-ziplist-entries"} {
		m, err := c.ConfigGet(ctx, name).Result()
		if err != nil {
			return 0, fmt.Errorf("config get %s: %w", name, err)
		}
		if v, ok := m[name]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("config get %s: %q is not a number", name, v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("config get: the server reports no hash-max-listpack-entries")
}
