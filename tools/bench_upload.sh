#!/usr/bin/env bash
# Upload throughput against Redis's own floor. It writes R rows of F float
# features (tools/uploadgen) as CSV, JSON Lines and Parquet, and the HSET
# commands that load the same hashes; then, round after round, it loads
# each into a fresh redis-server: the commands with `redis-cli --pipe`
# (the floor) and each file with `seer upload`, interleaved. It prints, per
# run, the wall time, values/s, the peak RSS of the loading process, the
# CPU seconds (user + system) of the loading process and of Redis, Redis's
# used memory after the load and the ratio to the floor of the same round,
# then the medians. On a machine shared with other work the CPU seconds
# vary less than the wall time: a load cannot take less wall time than
# Redis's CPU seconds, nor, with two cores, than half the sum.
#
#   go build -o /tmp/seer ./cmd/seer
#   tools/bench_upload.sh [rounds, default 3] [rows, default 200000] [features, default 30]
#
# Needs redis-server, redis-cli, GNU time (/usr/bin/time) and go. Set
# FORMATS to choose what runs (default "pipe csv jsonl parquet"; old-csv,
# old-jsonl and old-parquet run the binary SEER_OLD, to compare two
# builds in one run), and SEER_FLAGS to pass flags to seer upload; DATA=DIR keeps the generated
# files in DIR and reuses them when it holds them already (same rows and
# features). Everything it starts is stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
ROUNDS=${1:-3}
ROWS=${2:-200000}
NF=${3:-30}
FORMATS=${FORMATS:-pipe csv jsonl parquet}
. "$(dirname "$0")/lib/bench.sh"
DATA=${DATA:-$WORK}
mkdir -p "$DATA"
cd "$(dirname "$0")/.."
if [ ! -s "$DATA/data.resp" ] || [ "$(cat "$DATA/shape" 2>/dev/null)" != "$ROWS $NF" ]; then
	go run ./tools/uploadgen -rows "$ROWS" -features "$NF" -dir "$DATA" -stamp "$(date +%s)"
	echo "$ROWS $NF" >"$DATA/shape"
fi
cd "$WORK"
for f in catalog.yaml data.csv data.jsonl data.parquet data.resp; do
	[ "$DATA" = "$WORK" ] || ln -sf "$DATA/$f" "$WORK/$f"
done

# fresh: a new, empty redis-server (start_redis), in PORT, the one
# before stopped.
REDIS_PID=
fresh() {
	if [ -n "$REDIS_PID" ]; then
		kill "$REDIS_PID"
		wait "$REDIS_PID" 2>/dev/null || true
	fi
	start_redis
	PORT=$RP REDIS_PID=${PIDS[-1]}
}

values=$((ROWS * NF))
echo "# $ROWS rows x $NF float features = $values values; $(uptime)"
printf '%-6s %-8s %8s %12s %9s %9s %9s %10s %7s\n' round format seconds 'values/s' 'rss MB' 'cpu s' 'redis s' 'redis MB' ratio
declare -A ALL
for round in $(seq "$ROUNDS"); do
	floor=
	for fmt in $FORMATS; do
		fresh
		cat >seer.yaml <<EOC
catalog: catalog.yaml
models: models
stores:
  main: {mode: standalone, addr: 127.0.0.1:$PORT}
EOC
		case $fmt in
		pipe) cmd=(redis-cli -p "$PORT" --pipe) ;;
		old-*) cmd=("$SEER_OLD" upload --config seer.yaml --entity store ${SEER_FLAGS:-} "data.${fmt#old-}") ;;
		*) cmd=("$SEER" upload --config seer.yaml --entity store ${SEER_FLAGS:-} "data.$fmt") ;;
		esac
		rcpu0=$(redis_cpu "$PORT")
		if [ "$fmt" = pipe ]; then
			/usr/bin/time -o time.txt -f '%e %M %U %S' "${cmd[@]}" <data.resp >out.txt 2>&1
		else
			/usr/bin/time -o time.txt -f '%e %M %U %S' "${cmd[@]}" >out.txt 2>&1 </dev/null
		fi || { cat out.txt >&2; exit 1; }
		rcpu=$(awk -v a="$rcpu0" -v b="$(redis_cpu "$PORT")" 'BEGIN {printf "%.2f", b - a}')
		read -r secs rss usr sys <time.txt
		cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
		keys=$(redis-cli -p "$PORT" dbsize)
		[ "$keys" -ge "$ROWS" ] || { echo "$fmt: $keys keys, want $ROWS" >&2; cat out.txt >&2; exit 1; }
		mem=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ {printf "%.0f", $2/1048576}')
		[ "$fmt" = pipe ] && floor=$secs
		ratio=-
		[ -n "$floor" ] && ratio=$(awk -v s="$secs" -v f="$floor" 'BEGIN {printf "%.2f", s/f}')
		printf '%-6s %-8s %8s %12.0f %9.0f %9s %9s %10s %7s\n' "$round" "$fmt" "$secs" \
			"$(awk -v v="$values" -v s="$secs" 'BEGIN {print v/s}')" "$((rss / 1024))" "$cpu" "$rcpu" "$mem" "$ratio"
		ALL[$fmt]+="$secs $rss $ratio $cpu $rcpu,"
	done
done
echo "# medians; $(uptime)"
for fmt in $FORMATS; do
	echo "${ALL[$fmt]}" | tr ',' '\n' | awk -v f="$fmt" -v v="$values" 'NF {
		s[n] = $1; r[n] = $2; q[n] = $3; c[n] = $4; rc[n] = $5; n++
	} END {
		asort(s); asort(r); asort(q); asort(c); asort(rc); m = int((n + 1) / 2)
		printf "%-15s %8s %12.0f %9.0f %9s %9s %10s %7s\n", f, s[m], v / s[m], r[m] / 1024, c[m], rc[m], "", q[m]
	}'
done
