#!/usr/bin/env bash
# seer against the floor of issue 9, over HTTP with the real binary: one
# standalone redis-server on a loopback port holding 200 stores (20 float
# features) and one consumer (10), uploaded with `seer upload`; a linear
# model of those 30 features; and tools/floorload alternating rounds of a
# plain go-redis client that pipelines the same 201 HMGETs and decodes
# every value (the floor) and of seer's uncached 200-candidate
# /v1/predict, at each concurrency. It prints every round, the medians and
# seer's ratios to the floor (request rate, CPU per request), with uptime
# at start and end. docs/performance.md ("Against the floor") has figures.
#
#   go build -o /tmp/seer ./cmd/seer && go build -o /tmp/floorload ./tools/floorload
#   tools/bench_floor.sh [seconds per round, default 10] [concurrencies, default 1,8] [rounds, default 3]
#
# With OLD=/path/to/an/older/seer, that binary serves the same Redis too and
# takes its turn in every round (old against new in one run). Needs
# redis-server, redis-cli, curl and python3. Everything it starts is
# stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
LOAD=${LOAD:-/tmp/floorload}
OLD=${OLD:-}
DURATION=${1:-10}
CONCS=${2:-1,8}
ROUNDS=${3:-3}
. "$(dirname "$0")/lib/bench.sh"
# The catalog, the model and the data.
cd "$WORK"
ranking_fixture

# The store, then seer (and the older build, when given).
start_redis
config() {
	cat <<EOF
listen: 127.0.0.1:$1
catalog: catalog.yaml
models: models
models_poll: 0s
log_level: warn
stores:
  main: {mode: standalone, addr: 127.0.0.1:$RP, read_timeout: 3s} # an overloaded machine must not open the breaker
predict:
  timeout: 3s
  retrieval_timeout: 2s # throughput, not deadlines: every value must be read
EOF
}
HP=$(freeport)
config "$HP" >seer.yaml
"$SEER" upload --config seer.yaml --entity store stores.csv >/dev/null
"$SEER" upload --config seer.yaml --entity consumer consumers.jsonl >/dev/null
SPID=$(serve "$SEER" "$HP" seer.yaml)
PIDS+=("$SPID")
serve_old

echo "uptime at start: $(uptime)"
"$LOAD" -redis "127.0.0.1:$RP" -catalog catalog.yaml -manifest models/ranker/1/manifest.yaml \
	-url "http://127.0.0.1:$HP" -pid "$SPID" "${OLDARGS[@]}" -body body.json \
	-c "$CONCS" -d "${DURATION}s" -rounds "$ROUNDS" -metrics
echo "uptime at end: $(uptime)"
