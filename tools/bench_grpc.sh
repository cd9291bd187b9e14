#!/usr/bin/env bash
# gRPC against HTTP/JSON for the same 200-candidate /v1/predict query: one
# standalone redis-server on a loopback port holding 200 stores (20
# features) and one consumer (10 features), uploaded with `seer upload`; a
# linear model of those 30 features; seer serving both APIs; and
# tools/grpcload driving them alternately, one round of each per line.
# docs/performance.md ("gRPC and HTTP") has the figures. With FEATURES=N,
# the query is /v1/features (GetFeatures) of the first N stores' first
# three features instead.
#
#   go build -o /tmp/seer ./cmd/seer && go build -o /tmp/grpcload ./tools/grpcload
#   tools/bench_grpc.sh [seconds per round, default 10] [concurrency, default 8] [rounds, default 3]
#
# Needs redis-server, redis-cli, curl and python3. Everything it starts is
# stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
LOAD=${LOAD:-/tmp/grpcload}
DURATION=${1:-10}
CONC=${2:-8}
ROUNDS=${3:-3}
GRPCLOAD_ARGS=()
. "$(dirname "$0")/lib/bench.sh"
# The catalog, the model and the data.
cd "$WORK"
ranking_fixture
BODY=body.json
if [ -n "${FEATURES:-}" ]; then
	BODY=features.json
	FEATURES=$FEATURES python3 -c '
import json, os
cands = [{"entities": {"store": 100000 + s}} for s in range(int(os.environ["FEATURES"]))]
json.dump({"queries": [{"features": ["store_f0", "store_f1", "store_f2"], "candidates": cands}]}, open("features.json", "w"))'
	GRPCLOAD_ARGS=(-features)
fi

# The store and seer.
start_redis
HP=$(freeport)
GP=$(freeport)
cat >seer.yaml <<EOF
listen: 127.0.0.1:$HP
grpc_listen: 127.0.0.1:$GP
catalog: catalog.yaml
models: models
models_poll: 0s
log_level: warn
stores:
  main: {mode: standalone, addr: 127.0.0.1:$RP}
predict:
  timeout: 3s
  retrieval_timeout: 2s # throughput, not deadlines: every value must be read
EOF
"$SEER" upload --config seer.yaml --entity store stores.csv >/dev/null
"$SEER" upload --config seer.yaml --entity consumer consumers.jsonl >/dev/null
"$SEER" serve --config seer.yaml --shutdown-delay 0s >/dev/null 2>serve.log &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null && break; sleep 0.05; done
echo "uptime at start: $(uptime)"
"$LOAD" "${GRPCLOAD_ARGS[@]}" -http "http://127.0.0.1:$HP" -grpc "127.0.0.1:$GP" -body "$BODY" -c "$CONC" -d "${DURATION}s" -rounds "$ROUNDS" -pid "$SPID"
echo "uptime at end: $(uptime)"
