#!/usr/bin/python3
"""Print the ring shard of Redis keys, as docs/format.md describes.

A writer that loads features into a ring store must put each entity's hash
on the shard seer reads it from. This is an independent implementation of
that mapping, written from the document: the key's hash tag, XXH64 with
seed 0, rendezvous hashing over the shard names shard1..shardN (the
positions of the addresses in the store's addrs) with a xorshift mix.

Needs python3-xxhash.

    /usr/bin/python3 tools/ring_shard.py --shards 3 st_1426727 seer:markers
"""

import argparse

import xxhash

MASK = (1 << 64) - 1


def hash_tag(key):
    """The part of the key that decides its shard: the text between the
    first '{' and the next '}' when not empty, else the whole key."""
    s = key.find("{")
    if s >= 0:
        e = key.find("}", s + 1)
        if e > s + 1:
            return key[s + 1:e]
    return key


def mix64(x):
    x ^= x >> 12
    x ^= (x << 25) & MASK
    x ^= x >> 27
    return (x * 2685821657736338717) & MASK


def shard(key, shards):
    """The 1-based position, in addrs, of the shard that holds key."""
    kh = xxhash.xxh64_intdigest(hash_tag(key).encode("utf-8"), seed=0)
    best, best_score = 1, -1
    for i in range(1, shards + 1):
        nh = xxhash.xxh64_intdigest(("shard%d" % i).encode("utf-8"), seed=0)
        score = mix64(kh ^ nh)
        if score > best_score:  # ties go to the earlier shard
            best, best_score = i, score
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, required=True, help="number of addresses in the ring's addrs")
    p.add_argument("keys", nargs="+")
    args = p.parse_args()
    for k in args.keys:
        print("%s\tshard%d" % (k, shard(k, args.shards)))


if __name__ == "__main__":
    main()
