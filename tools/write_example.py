#!/usr/bin/python3
"""Write example feature values to Redis the way docs/format.md describes.

This is an independent implementation of seer's storage format, written
from the document alone, for batch jobs to copy. It writes a few entities
with features of every type, bumps the upload markers, and prints a JSON
report of what it wrote (keys, field ids, values, stamps, raw bytes) so
that a test can check seer reads back the same values.

Needs Debian's python3-redis, python3-xxhash and python3-snappy.

    /usr/bin/python3 tools/write_example.py --addr 127.0.0.1:6379
"""

import argparse
import json
import struct
import sys
import time

import redis
import snappy
import xxhash

# Type tags: the low four bits of the header byte.
FLOAT, INT, BOOL, STRING, VECTOR, LIST = 1, 2, 3, 4, 5, 6
TYPES = {"float": FLOAT, "int": INT, "bool": BOOL, "string": STRING, "vector": VECTOR, "list": LIST}

FLAG_STAMP = 0x40   # a uvarint of unix seconds follows the header
FLAG_SNAPPY = 0x80  # the payload is a snappy block
MIN_COMPRESS = 64   # payloads from this size are worth trying to compress
MAX_PAYLOAD = 1 << 20
MAX_ITEMS = 1 << 16

MARKERS = "seer:markers"


def field_id(name):
    """The feature's field id: the low 32 bits of XXH64(name), seed 0."""
    return xxhash.xxh64_intdigest(name.encode("utf-8"), seed=0) & 0xFFFFFFFF


def field(name):
    """The Redis hash field of a feature: its id in decimal."""
    return str(field_id(name))


def uvarint(n):
    """Unsigned LEB128: seven bits a byte, low groups first."""
    if n < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def zigzag(n):
    """Signed to unsigned, small magnitudes first: 0, -1, 1, -2, ..."""
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError("int out of int64 range")
    return ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF


def payload(tag, value):
    if tag == FLOAT:
        return struct.pack("<d", value)
    if tag == INT:
        return uvarint(zigzag(value))
    if tag == BOOL:
        return b"\x01" if value else b"\x00"
    if tag == STRING:
        return value.encode("utf-8")
    if tag == VECTOR:
        if len(value) > MAX_ITEMS:
            raise ValueError("vector too long")
        return uvarint(len(value)) + b"".join(struct.pack("<f", x) for x in value)
    if tag == LIST:
        if len(value) > MAX_ITEMS:
            raise ValueError("list too long")
        out = [uvarint(len(value))]
        for item in value:
            b = item.encode("utf-8")
            out.append(uvarint(len(b)) + b)
        return b"".join(out)
    raise ValueError("unknown type tag %d" % tag)


def encode(type_name, value, stamp=None):
    """Encode one value: header byte, optional stamp, payload."""
    tag = TYPES[type_name]
    body = payload(tag, value)
    if len(body) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes is over the limit" % len(body))
    head = tag
    out = bytearray()
    if stamp is not None:
        head |= FLAG_STAMP
        out += uvarint(stamp)
    if len(body) >= MIN_COMPRESS:
        packed = snappy.compress(body)  # the raw block format
        if len(packed) < len(body):
            head |= FLAG_SNAPPY
            body = packed
    return bytes([head]) + bytes(out) + body


def float32(x):
    """The value a float becomes once stored as binary32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


ENTITIES = {"store": "st_{id}", "consumer": "cx:{id}:v1"}

FEATURES = [
    ("store_avg_rating", "store", "float"),
    ("store_order_count", "store", "int"),
    ("store_is_open", "store", "bool"),
    ("store_cuisine", "store", "string"),
    ("store_embedding", "store", "vector"),
    ("store_tags", "store", "list"),
    ("consumer_order_count", "consumer", "int"),
    ("consumer_recent_searches", "consumer", "list"),
]

LONG_TEXT = "a description long enough to be worth compressing; " * 4


def example_values(now):
    """(entity, id, feature, value, stamp) of every value to write."""
    emb = [float32((i % 13) / 8.0 - 0.75) for i in range(200)]
    return [
        ("store", "1426727", "store_avg_rating", 4.5, now),
        ("store", "1426727", "store_order_count", 12345, now),
        ("store", "1426727", "store_is_open", True, now),
        ("store", "1426727", "store_cuisine", "thaï", now),
        ("store", "1426727", "store_embedding", [float32(x) for x in (0.1, -2.5, 3e-8)], now),
        ("store", "1426727", "store_tags", ["vegan", "", "日本"], now),
        ("store", "9", "store_avg_rating", -0.0, None),
        ("store", "9", "store_order_count", -(1 << 62), None),
        ("store", "9", "store_is_open", False, None),
        ("store", "9", "store_cuisine", LONG_TEXT, now - 86400),
        ("store", "9", "store_embedding", emb, now),
        ("store", "9", "store_tags", [], now),
        ("store", "10", "store_avg_rating", 1e300, now),
        ("store", "10", "store_order_count", -1, now),
        ("store", "10", "store_cuisine", "", now),
        ("store", "10", "store_embedding", [], None),
        ("store", "10", "store_tags", ["tag%d" % i for i in range(40)], now),
        ("consumer", "77", "consumer_order_count", 0, now),
        ("consumer", "77", "consumer_recent_searches", ["pad thai", "ramen"] * 20, now),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:6379", help="host:port of Redis")
    ap.add_argument("--db", type=int, default=0)
    ap.add_argument("--now", type=int, default=int(time.time()), help="unix seconds to stamp values with")
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port), db=args.db)

    types = {name: t for name, _, t in FEATURES}
    report = {
        "entities": ENTITIES,
        "features": [{"name": n, "entity": e, "type": t, "field": field(n)} for n, e, t in FEATURES],
        "values": [],
        "markers": {},
    }
    pipe = r.pipeline(transaction=False)
    written = []
    for entity, ident, name, value, stamp in example_values(args.now):
        key = ENTITIES[entity].replace("{id}", ident)
        raw = encode(types[name], value, stamp)
        pipe.hset(key, field(name), raw)
        if name not in written:
            written.append(name)
        report["values"].append({
            "key": key, "feature": name, "field": field(name), "type": types[name],
            "value": value, "stamp": stamp, "raw": raw.hex(),
        })
    pipe.execute()

    # Only after every value is written: one new upload version per feature.
    pipe = r.pipeline(transaction=False)
    for name in written:
        pipe.hincrby(MARKERS, field(name), 1)
    for name, version in zip(written, pipe.execute()):
        report["markers"][field(name)] = version

    json.dump(report, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
