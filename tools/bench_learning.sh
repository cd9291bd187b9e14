#!/usr/bin/env bash
# What learning from traffic costs under load: hey against the real binary
# on the quickstart (embedded store, 40 candidates a query), with the
# feature log off, at sample 0.05 and at 1, and with one shadow (a second
# version of the demo model), the configurations one after the other,
# round after round. It prints hey's rate and latencies per run, with the
# feature log's and the shadow's counters and the load average.
#
#   go build -o /tmp/seer ./cmd/seer
#   tools/bench_learning.sh [rounds, default 3] [requests, default 6000]
#
# Needs hey and curl. Everything it starts is stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
ROUNDS=${1:-3}
N=${2:-6000}
PORT=${PORT:-18091}
QS=$(cd "$(dirname "$0")/../configs/quickstart" && pwd)
. "$(dirname "$0")/lib/bench.sh"

# The models: the quickstart's, and a copy with version 2 shadowing 1.
cp -r "$QS/models" "$WORK/models"
cp -r "$QS/models" "$WORK/models-shadow"
cp -r "$WORK/models-shadow/store_ranker/1" "$WORK/models-shadow/store_ranker/2"
sed -i 's/version: "1"/version: "2"/' "$WORK/models-shadow/store_ranker/2/manifest.yaml"
echo 'production: "1"' >"$WORK/models-shadow/store_ranker/aliases.yaml"
echo 'shadows: [store_ranker@2]' >"$WORK/models-shadow/store_ranker/shadows.yaml"

for v in off log005 log1 shadow; do
	models=$WORK/models
	[ "$v" = shadow ] && models=$WORK/models-shadow
	cat >"$WORK/$v.yaml" <<CONF
listen: 127.0.0.1:$PORT
catalog: $QS/catalog.yaml
models: $models
models_poll: 0s
stores: {main: {mode: embedded}}
seed: [{entity: store, file: $QS/stores.csv}, {entity: consumer, file: $QS/consumers.jsonl}]
predict: {timeout: 1s, retrieval_timeout: 200ms}
shutdown_delay: 0s
log_level: warn
CONF
done
echo "feature_log: {path: $WORK/logs/features.jsonl, sample: 0.05}" >>"$WORK/log005.yaml"
echo "feature_log: {path: $WORK/logs/features.jsonl, sample: 1}" >>"$WORK/log1.yaml"

# Every store of the quickstart as a candidate.
{
	printf '{"queries": [{"id": "q", "model": "store_ranker", "context": {"consumer": "1001"}, "features": {"hour_of_day": 13}, "candidates": ['
	tail -n +2 "$QS/stores.csv" | cut -d, -f1 | sed 's/.*/{"entities": {"store": "&"}, "features": {"distance_km": 1.5}}/' | paste -sd, -
	printf ']}]}\n'
} >"$WORK/body.json"

url=http://127.0.0.1:$PORT
for round in $(seq "$ROUNDS"); do
	for v in off log005 log1 shadow; do
		rm -rf "$WORK/logs"
		"$SEER" serve --config "$WORK/$v.yaml" >/dev/null 2>"$WORK/$v.err" &
		PID=$!
		PIDS+=("$PID")
		for _ in $(seq 100); do curl -sf -o /dev/null "$url/healthz" && break; sleep 0.1; done
		hey -n 500 -c 4 -m POST -T application/json -D "$WORK/body.json" "$url/v1/predict" >/dev/null
		echo "== round $round $v: $(uptime)"
		hey -n "$N" -c 8 -m POST -T application/json -D "$WORK/body.json" "$url/v1/predict" |
			grep -E 'Requests/sec|  50%|  99%|\[200\]|\[5'
		curl -s "$url/metrics" | grep -E '^seer_(feature_log_queries_total|shadow_(queries|dropped)_total)' || true
		kill -TERM "$PID"
		wait "$PID" || true
		PID=
	done
done
