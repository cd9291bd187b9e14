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
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// GCOptions tune CollectGarbage.
type GCOptions struct {
	// Grace is how long a generation stays after it stopped being served
	// (default DefaultGCGrace).
	Grace time.Duration
	// Batch is how many keys one SCAN asks for, and so the most HDELs in
	// one pipeline (default 1000).
	Batch int
	// Now is the time the grace is counted to (default: now).
	Now time.Time
}

// GCStats says what a collection did.
type GCStats struct {
	Dead        int      // uploads found dead, whose values became garbage
	Generations int      // garbage records emptied (one per store and generation)
	Keys        int64    // keys scanned
	Fields      int64    // hash fields deleted
	Left        []string // garbage left, and why
}

// CollectGarbage deletes, on every store, the values of generations that
// stopped being served more than opt.Grace ago and of uploads that died
// (their lease ran out): it scans the keys of each such feature's entity
// type, opt.Batch at a time, and deletes the generation's fields with one
// pipeline of HDELs per batch, then forgets the garbage it deleted.
// Features the catalog no longer knows are left, and listed in Left.
func (r *Retriever) CollectGarbage(ctx context.Context, c *features.Catalog, opt GCOptions) (GCStats, error) {
	var total GCStats
	var errs []error
	for _, st := range r.stores {
		s, err := st.collect(ctx, c, opt)
		total.Dead += s.Dead
		total.Generations += s.Generations
		total.Keys += s.Keys
		total.Fields += s.Fields
		total.Left = append(total.Left, s.Left...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// gcItem is one feature's generation to delete.
type gcItem struct {
	gen uint32
	id  string
}

func (s *Store) collect(ctx context.Context, c *features.Catalog, opt GCOptions) (GCStats, error) {
	var stats GCStats
	if opt.Grace <= 0 {
		opt.Grace = DefaultGCGrace
	}
	if opt.Batch <= 0 {
		opt.Batch = 1000
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	fail := func(err error) (GCStats, error) {
		return stats, fmt.Errorf("collect garbage on store %s: %w", s.name, err)
	}
	state, err := s.Generations(ctx)
	if state == nil {
		return fail(err)
	}
	// Uploads whose lease ran out are dead: their values are garbage.
	for g, u := range state.Uploads {
		if u.Lease >= opt.Now.Unix() {
			continue
		}
		dead, err := s.claimDead(ctx, g, opt.Now)
		if err != nil {
			return fail(err)
		}
		if dead {
			stats.Dead++
		}
	}
	if stats.Dead > 0 {
		if state, err = s.Generations(ctx); state == nil {
			return fail(err)
		}
	}
	byID := make(map[string]*features.Spec)
	for _, sp := range c.Specs {
		if sp.Store == s.name {
			byID[sp.Field] = sp
		}
	}
	// What to delete, by entity type.
	work := make(map[*features.Entity][]gcItem)
	cutoff := opt.Now.Add(-opt.Grace).Unix()
	for _, g := range slices.Sorted(maps.Keys(state.Garbage)) {
		for _, id := range slices.Sorted(maps.Keys(state.Garbage[g].Features)) {
			if state.Garbage[g].Features[id] > cutoff {
				continue // still in its grace
			}
			sp := byID[id]
			if sp == nil {
				stats.Left = append(stats.Left, fmt.Sprintf("store %s: generation %d of feature field %s: not a feature of this store in the catalog", s.name, g, id))
				continue
			}
			if fg, ok := state.Features[sp.ID]; ok && (fg.Current.Gen == g || (fg.Previous != nil && fg.Previous.Gen == g)) {
				continue // served again (a rollback): only forget it
			}
			work[sp.Entity] = append(work[sp.Entity], gcItem{gen: g, id: id})
		}
	}
	done := make(map[uint32][]string)
	for g, gb := range state.Garbage {
		for id, since := range gb.Features {
			sp := byID[id]
			if since > cutoff || sp == nil {
				continue
			}
			if fg, ok := state.Features[sp.ID]; ok && (fg.Current.Gen == g || (fg.Previous != nil && fg.Previous.Gen == g)) {
				done[g] = append(done[g], id) // nothing to delete
			}
		}
	}
	for _, e := range slices.SortedFunc(maps.Keys(work), func(a, b *features.Entity) int { return strings.Compare(a.Name, b.Name) }) {
		items := work[e]
		fields := make([]string, len(items))
		for i, it := range items {
			id, _ := strconv.ParseUint(it.id, 10, 32)
			fields[i] = GenField(uint32(id), it.gen)
		}
		keys, deleted, err := s.deleteFields(ctx, e.Pattern(), fields, opt.Batch)
		stats.Keys += keys
		stats.Fields += deleted
		if err != nil {
			return fail(err)
		}
		for _, it := range items {
			done[it.gen] = append(done[it.gen], it.id)
		}
	}
	n, err := s.forgetGarbage(ctx, done)
	stats.Generations = n
	if err != nil {
		return fail(err)
	}
	return stats, nil
}

// claimDead turns upload g into garbage if its lease is still past;
// false when it was renewed or switched meanwhile.
func (s *Store) claimDead(ctx context.Context, g uint32, now time.Time) (bool, error) {
	gs := strconv.FormatUint(uint64(g), 10)
	dead := false
	err := s.watch(ctx, func(tx *redis.Tx) error {
		dead = false
		vals, err := tx.HMGet(ctx, GenerationsKey, genUpload+gs).Result()
		if err != nil {
			return err
		}
		v, ok := vals[0].(string)
		if !ok {
			return nil // switched or aborted meanwhile
		}
		var u Upload
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return fmt.Errorf("%w: %s%s: %v", ErrGenerations, genUpload, gs, err)
		}
		if u.Lease >= now.Unix() {
			return nil
		}
		add := map[uint32]map[string]int64{g: {}}
		for _, id := range u.Features {
			add[g][strconv.FormatUint(uint64(id), 10)] = 0
		}
		merged, err := mergeGarbage(ctx, tx, add)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, GenerationsKey, genUpload+gs)
			p.HSet(ctx, GenerationsKey, merged...)
			return nil
		})
		dead = err == nil
		return err
	})
	return dead, err
}

// deleteFields scans the keys matching pattern on every node of the store,
// batch at a time, and deletes the fields from each with one pipeline of
// HDELs per batch. It returns the keys scanned and the fields deleted.
func (s *Store) deleteFields(ctx context.Context, pattern string, fields []string, batch int) (int64, int64, error) {
	var keys, deleted atomic.Int64 // a cluster's masters are scanned in parallel
	scanNode := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			page, next, err := c.ScanType(ctx, cursor, pattern, int64(batch), "hash").Result()
			if err != nil {
				return fmt.Errorf("scan %s: %w", c.Options().Addr, err)
			}
			if len(page) > 0 {
				keys.Add(int64(len(page)))
				pipe := s.client.Pipeline()
				cmds := make([]*redis.IntCmd, len(page))
				args := make([]any, 0, len(page)*(2+len(fields)))
				for i, k := range page {
					start := len(args)
					args = append(args, "hdel", k)
					for _, f := range fields {
						args = append(args, f)
					}
					cmds[i] = redis.NewIntCmd(ctx, args[start:len(args):len(args)]...)
					_ = pipe.Process(ctx, cmds[i])
				}
				if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
					return fmt.Errorf("hdel: %w", err)
				}
				for _, cmd := range cmds {
					deleted.Add(cmd.Val())
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	err := s.forEachNode(ctx, scanNode)
	return keys.Load(), deleted.Load(), err
}

// forgetGarbage removes the given features from the garbage records of
// their generations, and records left empty, returning how many went.
func (s *Store) forgetGarbage(ctx context.Context, done map[uint32][]string) (int, error) {
	if len(done) == 0 {
		return 0, nil
	}
	gens := slices.Sorted(maps.Keys(done))
	fields := make([]string, len(gens))
	for i, g := range gens {
		fields[i] = genGarbage + strconv.FormatUint(uint64(g), 10)
	}
	emptied := 0
	err := s.watch(ctx, func(tx *redis.Tx) error {
		emptied = 0
		vals, err := tx.HMGet(ctx, GenerationsKey, fields...).Result()
		if err != nil {
			return err
		}
		var set []any
		var del []string
		for i, g := range gens {
			v, ok := vals[i].(string)
			if !ok {
				continue
			}
			var gb Garbage
			if err := json.Unmarshal([]byte(v), &gb); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrGenerations, fields[i], err)
			}
			for _, id := range done[g] {
				delete(gb.Features, id)
			}
			if len(gb.Features) == 0 {
				del = append(del, fields[i])
				emptied++
			} else {
				set = append(set, fields[i], mustJSON(gb))
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if len(del) > 0 {
				p.HDel(ctx, GenerationsKey, del...)
			}
			if len(set) > 0 {
				p.HSet(ctx, GenerationsKey, set...)
			}
			return nil
		})
		return err
	})
	return emptied, err
}
