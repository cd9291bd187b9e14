#!/usr/bin/env bash
# What generations cost Redis in memory: R rows of F float features
# (tools/uploadgen, CSV) uploaded three times into one fresh redis-server,
# then the generations no longer served collected. It prints Redis's
# used_memory empty, after each upload, the peak during each upload
# (used_memory_peak, reset before it), and after `seer upload --gc`, with
# the fields per hash, the wall time of each step and Redis's CPU seconds
# in it. The first three uploads run with --no-gc: the first writes
# generation 1 (30 fields per hash), the second generation 2 beside it
# (60), the third generation 3 beside both (90). The fourth runs as
# uploads do by default, the collection beside it (with no grace): it
# writes generation 4 while generations 0 and 1 are deleted. A last
# `seer upload --gc` deletes generation 2, and two generations are left.
#
#   go build -o /tmp/seer ./cmd/seer
#   tools/bench_upload_memory.sh [rows, default 200000] [features, default 30]
#
# Needs redis-server, redis-cli and go. DATA=DIR reuses the files of
# tools/bench_upload.sh. Everything it starts is stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
ROWS=${1:-200000}
NF=${2:-30}
. "$(dirname "$0")/lib/bench.sh"
DATA=${DATA:-$WORK}
cd "$(dirname "$0")/.."
if [ ! -s "$DATA/data.csv" ] || [ "$(cat "$DATA/shape" 2>/dev/null)" != "$ROWS $NF" ]; then
	go run ./tools/uploadgen -rows "$ROWS" -features "$NF" -dir "$DATA" -stamp "$(date +%s)"
	echo "$ROWS $NF" >"$DATA/shape"
fi
cd "$WORK"

start_redis
PORT=$RP
cat >seer.yaml <<EOC
catalog: $DATA/catalog.yaml
models: models
stores:
  main: {mode: standalone, addr: 127.0.0.1:$PORT}
EOC

mem() { redis-cli -p "$PORT" info memory | awk -F: -v k="$1" '$1 == k {printf "%.1f", $2 / 1048576}'; }
fields() { redis-cli -p "$PORT" hlen st_1; }

echo "# $ROWS rows x $NF float features; $(uptime)"
cpu() { redis_cpu "$PORT"; }
printf '%-34s %8s %8s %14s %14s %8s\n' step seconds 'redis s' 'used MB after' 'peak MB during' fields
printf '%-34s %8s %8s %14s %14s %8s\n' 'empty' - - "$(mem used_memory)" - 0
step() {
	local name=$1
	shift
	redis-cli -p "$PORT" config resetstat >/dev/null
	local c0
	c0=$(cpu)
	/usr/bin/time -o time.txt -f '%e' "$@" >out.txt 2>&1 </dev/null || { cat out.txt >&2; exit 1; }
	sleep 0.3 # let Redis's cron sample the peak
	printf '%-34s %8s %8.2f %14s %14s %8s\n' "$name" "$(cat time.txt)" "$(awk -v a="$c0" -v b="$(cpu)" 'BEGIN {print b - a}')" \
		"$(mem used_memory)" "$(mem used_memory_peak)" "$(fields)"
}
for i in 1 2 3; do
	step "upload $i (generation $i)" "$SEER" upload --config seer.yaml --entity store --no-gc "$DATA/data.csv"
done
cp out.txt out3.txt
step "upload 4, collecting beside it" "$SEER" upload --config seer.yaml --entity store --gc-grace 0s "$DATA/data.csv"
cp out.txt out4.txt
step "seer upload --gc --gc-grace 0s" "$SEER" upload --config seer.yaml --gc --gc-grace 0s
grep -h . out4.txt out.txt | sed 's/^/# /'
echo "# $(uptime)"
