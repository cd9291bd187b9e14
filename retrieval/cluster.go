package retrieval

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// route splits a job's commands by node: the one node of a standalone
// store, the shard of each key in a ring, the master (or a replica) of each
// key's slot in a cluster. Keys of one query that hash to different slots
// go to their own nodes; no command spans two keys.
func (s *Store) route(ctx context.Context, j *job) error {
	n := len(j.keys)
	if s.cluster == nil && len(s.nodes) == 1 {
		nd := s.nodes[0]
		j.one[0] = part{node: nd, client: nd.client, hi: int32(n)}
		j.parts, j.order = j.one[:], nil
		return nil
	}
	which := slices.Grow(j.which[:0], n)[:n] // part of each command
	j.which = which
	j.parts = j.parts[:0]
	for k, key := range j.keys {
		var c *redis.Client
		var nd *node
		if s.ring != nil {
			nd = s.nodes[s.ring.index(key)]
			c = nd.client
		} else {
			var err error
			if s.replicas {
				c, err = s.cluster.SlaveForKey(ctx, key)
			} else {
				c, err = s.cluster.MasterForKey(ctx, key)
			}
			if err != nil {
				return fmt.Errorf("route key %q of store %s: %w", key, s.name, err)
			}
		}
		p := slices.IndexFunc(j.parts, func(p part) bool { return p.client == c })
		if p < 0 {
			if nd == nil {
				nd = s.clusterNode(c)
			}
			j.parts = append(j.parts, part{node: nd, client: c})
			p = len(j.parts) - 1
		}
		which[k] = int32(p)
		j.parts[p].hi++
	}
	// Lay the parts out one after the other: counts, then positions.
	var lo int32
	for p := range j.parts {
		count := j.parts[p].hi
		j.parts[p].lo, j.parts[p].hi = lo, lo
		lo += count
	}
	j.order = slices.Grow(j.order[:0], n)[:n]
	for k, p := range which {
		pt := &j.parts[p]
		j.order[pt.hi] = int32(k)
		pt.hi++
	}
	return nil
}

// redirect re-sends, through the cluster client, the commands of part p
// that a node answered with a redirection (MOVED after a slot moved, ASK
// while it moves) or TRYAGAIN, and puts the final answers among the part's
// raw replies.
//
// go-redis follows redirections only for commands whose reply it parses,
// and Fetch reads raw (wire.go): it finds the few redirected replies
// itself, and lets the cluster client, which reloads its slot map on MOVED
// and sends ASKING before an ASK, deal with them as parsed commands. An
// error other than a reply is the redirected node's, not p's: it wraps
// errRedirected.
func (s *Store) redirect(deadline time.Time, j *job, p *part, m *storeMetrics) error {
	var redo []int32
	for i := p.lo; i < p.hi; i++ {
		if isRedirect(p.reply(j, i)) {
			redo = append(redo, i)
		}
	}
	if len(redo) == 0 {
		return nil
	}
	m.redirected.Add(float64(len(redo)))
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	parsed := make([]redis.Cmder, len(redo))
	for k, i := range redo {
		args, err := commandArgs(j.command(j.at(i)))
		if err != nil {
			return fmt.Errorf("%w: %w", errRedirected, err)
		}
		parsed[k] = redis.NewCmd(ctx, args...)
	}
	pipe := s.cluster.Pipeline()
	_ = pipe.BatchProcess(ctx, parsed...)
	_, _ = pipe.Exec(ctx)
	var failed error
	for k, i := range redo {
		val, err := parsed[k].(*redis.Cmd).Result()
		var rerr redis.Error
		in := p.in
		off := len(in)
		switch {
		case err == nil:
			var ok bool
			if in, ok = appendArrayReply(in, val); !ok {
				in = append(in[:off], "-ERR seer: unexpected reply to a redirected HMGET\r\n"...)
			}
		case errors.As(err, &rerr):
			in = append(append(append(in, '-'), err.Error()...), '\r', '\n')
		default:
			failed = err
			in = append(in, "-ERR seer: the redirected read failed\r\n"...)
		}
		p.in = in
		j.spans[i] = span{int32(off), int32(len(in) - off)}
	}
	if failed != nil {
		return fmt.Errorf("%w: %w", errRedirected, failed)
	}
	return nil
}

// errRedirected is wrapped by the errors of reads a cluster redirected
// that failed at the node they were redirected to.
var errRedirected = errors.New("redirected read failed")

var redirectPrefixes = [][]byte{[]byte("-MOVED "), []byte("-ASK "), []byte("-TRYAGAIN")}

func isRedirect(raw []byte) bool {
	if len(raw) == 0 || raw[0] != '-' {
		return false
	}
	for _, p := range redirectPrefixes {
		if bytes.HasPrefix(raw, p) {
			return true
		}
	}
	return false
}

// appendArrayReply appends the RESP2 encoding of a parsed HMGET reply (an
// array of bulk strings and nils) to b.
func appendArrayReply(b []byte, v any) ([]byte, bool) {
	items, ok := v.([]any)
	if !ok {
		return b, false
	}
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(items)), 10)
	b = append(b, '\r', '\n')
	for _, it := range items {
		switch x := it.(type) {
		case nil:
			b = append(b, "$-1\r\n"...)
		case string:
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(len(x)), 10)
			b = append(b, '\r', '\n')
			b = append(b, x...)
			b = append(b, '\r', '\n')
		default:
			return b, false
		}
	}
	return b, true
}

// clusterHealthReload bounds how long Health waits for a fresh slot map
// before it uses the one it has.
const clusterHealthReload = 300 * time.Millisecond

// clusterHealth checks the masters of a cluster (and its replicas when
// reads go to them), as the client knows them.
func (s *Store) clusterHealth(ctx context.Context) []NodeHealth {
	var mu sync.Mutex
	var nodes []NodeHealth
	check := func(role string) func(context.Context, *redis.Client) error {
		return func(_ context.Context, c *redis.Client) error {
			h := NodeHealth{Addr: c.Options().Addr, Role: role}
			h.check(ctx, s.clusterNode(c), c)
			mu.Lock()
			nodes = append(nodes, h)
			mu.Unlock()
			return nil
		}
	}
	// ForEachMaster reloads the slot map first; a frozen node must not
	// take the whole budget, so the reload gets a shorter one.
	reload, cancel := context.WithTimeout(ctx, clusterHealthReload)
	defer cancel()
	if err := s.cluster.ForEachMaster(reload, check("master")); err != nil {
		return []NodeHealth{{Addr: s.Addr(), Status: StatusDown, Error: err.Error()}}
	}
	if s.replicas {
		_ = s.cluster.ForEachSlave(reload, check("replica"))
	}
	slices.SortFunc(nodes, func(a, b NodeHealth) int {
		if a.Role != b.Role {
			return cmp.Compare(a.Role, b.Role) // masters first
		}
		return cmp.Compare(a.Addr, b.Addr)
	})
	return nodes
}
