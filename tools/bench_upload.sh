#!/usr/bin/env bash
# Upload throughput against Redis's own floor. It writes R rows of F float
# features (tools/uploadgen) as CSV, JSON Lines and Parquet, and the HSET
# commands that load the same hashes; then, round after round, it loads
# each into a fresh redis-server: the commands with `redis-cli --pipe`
# (the floor) and each file with `seer upload`, interleaved. It prints, per
# run, the wall time, values/s, the peak RSS of the loading process, Redis's
# used memory after the load and the ratio to the floor of the same round,
# then the medians.
#
#   go build -o /tmp/seer ./cmd/seer
#   tools/bench_upload.sh [rounds, default 3] [rows, default 200000] [features, default 30]
#
# Needs redis-server, redis-cli, GNU time (/usr/bin/time) and go. Set
# FORMATS to choose what runs (default "pipe csv jsonl parquet"), and
# SEER_FLAGS to pass flags to seer upload. Everything it starts is
# stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
ROUNDS=${1:-3}
ROWS=${2:-200000}
NF=${3:-30}
FORMATS=${FORMATS:-pipe csv jsonl parquet}
WORK=$(mktemp -d)
REDIS_PID=
cleanup() {
	[ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
cd "$(dirname "$0")/.."
go run ./tools/uploadgen -rows "$ROWS" -features "$NF" -dir "$WORK"
cd "$WORK"

freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fresh: a new, empty redis-server without persistence on a free port.
fresh() {
	[ -n "$REDIS_PID" ] && { kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; }
	PORT=$(freeport)
	rm -rf "$WORK/redis" && mkdir -p "$WORK/redis"
	redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' --appendonly no \
		--logfile redis.log &
	REDIS_PID=$!
	for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && return; sleep 0.05; done
	echo "redis-server on $PORT did not start" >&2
	exit 1
}

values=$((ROWS * NF))
echo "# $ROWS rows x $NF float features = $values values; $(uptime)"
printf '%-6s %-8s %8s %12s %9s %10s %7s\n' round format seconds 'values/s' 'rss MB' 'redis MB' ratio
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
		*) cmd=("$SEER" upload --config seer.yaml --entity store ${SEER_FLAGS:-} "data.$fmt") ;;
		esac
		if [ "$fmt" = pipe ]; then
			/usr/bin/time -o time.txt -f '%e %M' "${cmd[@]}" <data.resp >out.txt 2>&1
		else
			/usr/bin/time -o time.txt -f '%e %M' "${cmd[@]}" >out.txt 2>&1 </dev/null
		fi || { cat out.txt >&2; exit 1; }
		read -r secs rss <time.txt
		keys=$(redis-cli -p "$PORT" dbsize)
		[ "$keys" -ge "$ROWS" ] || { echo "$fmt: $keys keys, want $ROWS" >&2; cat out.txt >&2; exit 1; }
		mem=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ {printf "%.0f", $2/1048576}')
		[ "$fmt" = pipe ] && floor=$secs
		ratio=-
		[ -n "$floor" ] && ratio=$(awk -v s="$secs" -v f="$floor" 'BEGIN {printf "%.2f", s/f}')
		printf '%-6s %-8s %8s %12.0f %9.0f %10s %7s\n' "$round" "$fmt" "$secs" \
			"$(awk -v v="$values" -v s="$secs" 'BEGIN {print v/s}')" "$((rss / 1024))" "$mem" "$ratio"
		ALL[$fmt]+="$secs $rss $ratio,"
	done
done
echo "# medians; $(uptime)"
for fmt in $FORMATS; do
	echo "${ALL[$fmt]}" | tr ',' '\n' | awk -v f="$fmt" -v v="$values" 'NF {
		s[n] = $1; r[n] = $2; q[n] = $3; n++
	} END {
		asort(s); asort(r); asort(q); m = int((n + 1) / 2)
		printf "%-15s %8s %12.0f %9.0f %10s %7s\n", f, s[m], v / s[m], r[m] / 1024, "", q[m]
	}'
done
