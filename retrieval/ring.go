package retrieval

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ringHash maps keys to the shards of a ring by rendezvous (highest random
// weight) hashing, the algorithm of go-redis v9's Ring, so that a writer
// using go-redis's Ring with the same shard names puts every key where
// seer reads it. docs/format.md spells it out for other writers.
//
// Each key goes to the shard with the highest score mix64(XXH64(tag) ^
// XXH64(shard name)), where tag is the key's hash tag (see hashTag). Ties,
// which need two equal 64-bit scores, go to the earlier shard.
type ringHash struct {
	names  []string
	hashes []uint64
}

// shardName is the name of the i-th (from 0) address of a ring's addrs:
// shard1, shard2, ...
func shardName(i int) string { return "shard" + strconv.Itoa(i+1) }

func newRingHash(names []string) *ringHash {
	h := &ringHash{names: names, hashes: make([]uint64, len(names))}
	for i, n := range names {
		h.hashes[i] = xxhash.Sum64String(n)
	}
	return h
}

// index returns the position of key's shard.
func (h *ringHash) index(key string) int {
	kh := xxhash.Sum64String(hashTag(key))
	best, bestScore := 0, uint64(0)
	for i, nh := range h.hashes {
		if score := mix64(kh ^ nh); i == 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// Get returns the name of key's shard; it makes ringHash the go-redis
// Ring's consistent hash, used for uploads and markers.
func (h *ringHash) Get(key string) string {
	if len(h.names) == 0 {
		return ""
	}
	return h.names[h.index(key)]
}

// mix64 is go-redis's xorshift mixing of a rendezvous score.
func mix64(x uint64) uint64 {
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	return x * 2685821657736338717
}

// hashTag returns the part of key that decides its shard or cluster slot:
// the text between the first '{' and the next '}' when that is not empty,
// else the whole key (Redis Cluster's hash tags).
func hashTag(key string) string {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			return key[s+1 : s+1+e]
		}
	}
	return key
}
