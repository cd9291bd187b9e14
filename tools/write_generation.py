#!/usr/bin/python3
"""Write a generation of features to Redis and switch it, as docs/format.md
("Generations") describes, without seer's code.

It reads entities from a JSON Lines file ({"id": ..., "<feature>": value}),
seeds the generation counter when the hash has none, allocates a generation, announces it, writes every value under the
generation's fields, and switches the features that got a value in one
optimistic transaction, which also records the generation before the
previous one as garbage and bumps the upload markers. It prints a JSON
report of what it did, for tests. With --fail-after N it writes N entities
and gives the generation up instead of switching it, as a failed job would.

Needs Debian's python3-redis, python3-xxhash and python3-snappy; the value
encoding comes from write_example.py beside it.

    /usr/bin/python3 tools/write_generation.py --addr 127.0.0.1:6379 \\
        --key 'st_{id}' --types store_avg_rating=float,store_tags=list stores.jsonl
"""

import argparse
import json
import os
import re
import sys
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from write_example import encode, field_id  # noqa: E402

GENERATIONS = "{seer:markers}:generations"
MARKERS = "seer:markers"
MAX_GENERATION = (1 << 31) - 1
NEXT_SAMPLE_KEYS, NEXT_SAMPLE_SCANS, NEXT_MARGIN = 256, 64, 1024


def gen_field(fid, gen):
    """The hash field of generation gen of the feature with field id fid."""
    return str((gen << 32) | fid)


def connect(args):
    """(data client, generations client): the second talks to the server
    that holds the generations hash, where transactions run."""
    host, port = args.addr.rsplit(":", 1)
    if not args.cluster:
        r = redis.Redis(host=host, port=int(port))
        return r, r
    from redis.cluster import RedisCluster
    rc = RedisCluster(host=host, port=int(port))
    node = rc.get_node_from_key(GENERATIONS)
    return rc, redis.Redis(host=node.host, port=node.port)


def key_pattern(template):
    """The SCAN pattern of the template's keys: its text, glob characters
    escaped, around a * for each placeholder."""
    parts = re.split(r"\{[^}]*\}", template)
    return "*".join(re.sub(r"([*?\[\]\\])", r"\\\1", part) for part in parts)


def seed_next(r, g, template, cluster):
    """Step 0: when the hash has no next (a new store, or a hash lost), set
    it past the largest generation in a sample of the keys' fields."""
    if g.hexists(GENERATIONS, "next"):
        return
    nodes = [r.get_redis_connection(n) for n in r.get_primaries()] if cluster else [r]
    top = 0
    for node in nodes:
        keys, cursor = [], 0
        for _ in range(NEXT_SAMPLE_SCANS):
            cursor, page = node.scan(cursor, match=key_pattern(template), count=1000, _type="HASH")
            keys += page
            if cursor == 0 or len(keys) >= NEXT_SAMPLE_KEYS:
                break
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.hkeys(key)
        for fields in pipe.execute():
            for f in fields:
                if f.isdigit():
                    top = max(top, int(f) >> 32)
    if top:
        g.hsetnx(GENERATIONS, "next", top + NEXT_MARGIN)


def begin(g, ids, lease, source):
    """Steps 1 and 2: allocate a generation and announce the upload."""
    gen = g.hincrby(GENERATIONS, "next", 1)
    if not 0 < gen <= MAX_GENERATION:
        raise RuntimeError("generation %d out of range" % gen)
    now = int(time.time())
    g.hset(GENERATIONS, "upload:%d" % gen, json.dumps(
        {"features": ids, "started": now, "lease": now + lease, "source": source}))
    return gen


def write(r, template, types, rows, gen, stamp, batch=500):
    """Step 3: every value under the generation's field; returns the rows
    each feature got a value in."""
    counts = {name: 0 for name in types}
    pipe = r.pipeline(transaction=False)
    for n, row in enumerate(rows, 1):
        key = template.replace("{id}", str(row["id"]))
        mapping = {}
        for name, value in row.items():
            if name == "id" or value is None:
                continue
            mapping[gen_field(field_id(name), gen)] = encode(types[name], value, stamp)
            counts[name] += 1
        if mapping:
            pipe.hset(key, mapping=mapping)
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return counts


def switch(g, gen, counts, source):
    """Step 4: one optimistic transaction on the generations hash."""
    names = [n for n, c in counts.items() if c > 0]
    ids = [str(field_id(n)) for n in names]
    with g.pipeline(transaction=True) as p:
        while True:
            try:
                p.watch(GENERATIONS)
                current = p.hmget(GENERATIONS, ["upload:%d" % gen] + ids)
                if current[0] is None:
                    raise RuntimeError("upload of generation %d was taken for dead" % gen)
                now = int(time.time())
                records, garbage = {}, {}
                for name, fid, old in zip(names, ids, current[1:]):
                    old = json.loads(old) if old is not None else {}
                    prev = old.get("current", {"gen": 0})
                    records[fid] = json.dumps({
                        "current": {"gen": gen, "time": now, "rows": counts[name], "source": source},
                        "previous": prev,
                    })
                    p_old = old.get("previous")
                    if p_old is not None and p_old["gen"] != gen:
                        garbage.setdefault(p_old["gen"], {})[fid] = now
                for pg, feats in garbage.items():
                    have = p.hget(GENERATIONS, "garbage:%d" % pg)
                    merged = json.loads(have)["features"] if have else {}
                    merged.update(feats)
                    records["garbage:%d" % pg] = json.dumps({"features": merged})
                p.multi()
                p.hset(GENERATIONS, mapping=records)
                p.hdel(GENERATIONS, "upload:%d" % gen)
                p.hincrby(GENERATIONS, "version", 1)
                for fid in ids:
                    p.hincrby(MARKERS, fid, 1)
                return p.execute()
            except redis.WatchError:
                continue


def give_up(g, gen, ids):
    """Step 5: the generation's values are garbage at once."""
    p = g.pipeline(transaction=True)
    p.hdel(GENERATIONS, "upload:%d" % gen)
    p.hset(GENERATIONS, "garbage:%d" % gen, json.dumps({"features": {str(i): 0 for i in ids}}))
    p.execute()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:6379", help="host:port of Redis (a seed node with --cluster)")
    ap.add_argument("--cluster", action="store_true", help="the store is a Redis Cluster")
    ap.add_argument("--key", required=True, help="the entity type's key template, e.g. st_{id}")
    ap.add_argument("--types", required=True, help="feature=type,... for every feature the file may hold")
    ap.add_argument("--lease", type=int, default=3600, help="seconds the upload may run")
    ap.add_argument("--stamp", type=int, default=int(time.time()), help="unix seconds to stamp values with")
    ap.add_argument("--fail-after", type=int, default=-1, help="write this many rows, then give up")
    ap.add_argument("file", help="JSON Lines: one entity per line")
    args = ap.parse_args()

    types = dict(kv.split("=", 1) for kv in args.types.split(","))
    with open(args.file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    source = os.path.basename(args.file)
    r, g = connect(args)
    ids = [field_id(n) for n in types]
    seed_next(r, g, args.key, args.cluster)
    gen = begin(g, ids, args.lease, source)
    report = {"generation": gen, "fields": {n: gen_field(field_id(n), gen) for n in types}}
    if args.fail_after >= 0:
        write(r, args.key, types, rows[:args.fail_after], gen, args.stamp)
        give_up(g, gen, ids)
        report["switched"] = False
    else:
        counts = write(r, args.key, types, rows, gen, args.stamp)
        switch(g, gen, counts, source)
        report["switched"] = True
        report["rows"] = counts
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
