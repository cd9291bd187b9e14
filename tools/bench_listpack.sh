#!/usr/bin/env bash
# Redis's side of wide entities: memory per stored value and CPU per value
# read, for hashes of F float features (F = 10, 30, 100) stored as listpacks
# or as hash tables, with one generation of each feature (F fields) or two
# (2F fields: the served one and the previous one, as after an upload, read
# from the newer). For each case it starts a fresh redis-server with
# hash-max-listpack-entries set to force the encoding, loads N entities with
# redis-cli --pipe, reads F fields of random entities with redis-benchmark
# (HMGET, pipelined) and takes Redis's own CPU time from INFO.
#
#   tools/bench_listpack.sh [entities, default 20000] [reads, default 300000]
#
# Needs redis-server, redis-cli, redis-benchmark and /usr/bin/python3.
# docs/performance.md ("Redis hash encoding") has the figures.
set -euo pipefail

N=${1:-20000}
READS=${2:-300000}
. "$(dirname "$0")/lib/bench.sh"

# gen F GENS: the HSET commands of N entities, F features, GENS generations
# (generation g >= 1 of feature i is field (g << 32) | i, as in
# docs/format.md; ids 1000+i stand in for field ids), values stamped floats.
gen() {
	/usr/bin/python3 - "$N" "$1" "$2" <<'EOF' >"$WORK/load.resp"
import struct, sys
n, f, gens = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
def arg(b):
    out.write(b"$%d\r\n%s\r\n" % (len(b), b))
for e in range(n):
    out.write(b"*%d\r\n" % (2 + 2 * f * gens))
    arg(b"HSET"); arg(b"st_%012d" % e)  # redis-benchmark's __rand_int__: 12 digits
    for g in range(1, gens + 1):
        for i in range(f):
            arg(str((g << 32) | (1000 + i)).encode())
            arg(b"\x41\x80\xe2\xcf\xaa\x06" + struct.pack("<d", e * 0.5 + i))
EOF
}

cpu() { redis_cpu "$PORT"; }

printf '%-4s %-5s %-10s %8s %12s %14s %12s\n' F gens encoding fields 'bytes/value' 'redis us/value' 'reads/s'
for f in 10 30 100; do
	for gens in 1 2; do
		gen "$f" "$gens"
		fields=$((f * gens))
		for enc in listpack hashtable; do
			limit=0
			[ "$enc" = listpack ] && limit=$((fields + 1))
			start_redis --hash-max-listpack-entries "$limit" --hash-max-listpack-value 64
			PORT=$RP PID=${PIDS[-1]}
			base=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}')
			redis-cli -p "$PORT" --pipe <"$WORK/load.resp" >/dev/null
			got=$(redis-cli -p "$PORT" object encoding st_000000000001)
			[ "$got" = "$enc" ] || { echo "st_000000000001 is a $got, want $enc" >&2; exit 1; }
			# Every read must find its values.
			[ "$(redis-cli -p "$PORT" hlen st_000000000001)" = "$fields" ] || { echo "st_000000000001 is not loaded" >&2; exit 1; }
			mem=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}')
			# Read the newest generation's F fields of random entities.
			args=()
			for i in $(seq 0 $((f - 1))); do args+=("$(((gens << 32) | (1000 + i)))"); done
			before=$(cpu)
			start=$(date +%s.%N)
			redis-benchmark -p "$PORT" -n "$READS" -c 4 -P 16 -r "$N" -q HMGET "st___rand_int__" "${args[@]}" >/dev/null
			end=$(date +%s.%N)
			after=$(cpu)
			awk -v f="$f" -v g="$gens" -v e="$enc" -v fl="$fields" -v m=$((mem - base)) -v n="$N" \
				-v c0="$before" -v c1="$after" -v r="$READS" -v t0="$start" -v t1="$end" 'BEGIN {
				printf "%-4d %-5d %-10s %8d %12.1f %14.4f %12.0f\n", f, g, e, fl, m / (n * fl), (c1 - c0) * 1e6 / (r * f), r / (t1 - t0)
			}'
			kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
		done
	done
done
echo "# $(uptime)"
