// Package floor is the baseline seer's reads are measured against (issue
// 9): a plain go-redis client that pipelines exactly the HMGETs seer sends
// for a query and decodes each value, as a program reading the same
// features without seer would. retrieval's BenchmarkFloor and
// tools/floorload use it; docs/performance.md has the figures.
package floor

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// Query is the HMGETs of one query: a key and its fields each.
type Query struct {
	Keys   []string
	Fields [][]string
}

// FromLookups returns the HMGETs seer sends for lookups (a features.Batch
// after Plan.Prepare): one per lookup, its spec's fields in order.
func FromLookups(lookups []features.Lookup) Query {
	var q Query
	for _, l := range lookups {
		if len(l.Specs) == 0 {
			continue
		}
		fields := make([]string, len(l.Specs))
		for k, s := range l.Specs {
			fields[k] = s.Field
		}
		q.Keys = append(q.Keys, l.Key)
		q.Fields = append(q.Fields, fields)
	}
	return q
}

// Read sends the query's HMGETs as one pipeline through c and decodes
// every value it gets back with features.DecodeStamped. It returns how
// many values it decoded.
func (q *Query) Read(ctx context.Context, c redis.Cmdable) (int, error) {
	pipe := c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(q.Keys))
	for i, key := range q.Keys {
		cmds[i] = pipe.HMGet(ctx, key, q.Fields[i]...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	n := 0
	for _, cmd := range cmds {
		for _, x := range cmd.Val() {
			s, ok := x.(string)
			if !ok {
				continue // absent
			}
			if _, _, err := features.DecodeStamped([]byte(s)); err != nil {
				return n, fmt.Errorf("floor: %w", err)
			}
			n++
		}
	}
	return n, nil
}
