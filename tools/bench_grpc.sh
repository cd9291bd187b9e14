#!/usr/bin/env bash
# gRPC against HTTP/JSON for the same 200-candidate /v1/predict query: one
# standalone redis-server on a loopback port holding 200 stores (20
# features) and one consumer (10 features), uploaded with `seer upload`; a
# linear model of those 30 features; seer serving both APIs; and
# tools/grpcload driving them alternately, one round of each per line.
# docs/performance.md ("gRPC and HTTP") has the figures.
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
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The catalog, the model and the data.
cd "$WORK"
{
	echo 'entities: {store: {key: "st_{id}"}, consumer: {key: "cx_{id}"}}'
	echo 'features:'
	for i in $(seq 0 19); do echo "  - {name: store_f$i, entity: store, type: float, store: main, default: 0}"; done
	for i in $(seq 0 9); do echo "  - {name: consumer_f$i, entity: consumer, type: float, store: main, default: 0}"; done
} >catalog.yaml
mkdir -p models/ranker/1
{
	echo 'name: ranker'
	echo 'version: "1"'
	echo 'format: linear'
	echo 'inputs:'
	for i in $(seq 0 19); do echo "  - name: store_f$i"; done
	for i in $(seq 0 9); do echo "  - name: consumer_f$i"; done
	echo 'linear:'
	echo '  link: logistic'
	echo '  intercept: -1'
	echo '  weights:'
	for i in $(seq 0 19); do echo "    store_f$i: 0.0$i"; done
	for i in $(seq 0 9); do echo "    consumer_f$i: -0.0$i"; done
} >models/ranker/1/manifest.yaml
python3 - <<'EOF'
import json
cols = ["store_f%d" % i for i in range(20)]
with open("stores.csv", "w") as f:
    f.write("id," + ",".join(cols) + "\n")
    for s in range(200):
        f.write("%d," % (100000 + s) + ",".join("%.3f" % ((s * 7 + i) % 100 / 10) for i in range(20)) + "\n")
with open("consumers.jsonl", "w") as f:
    f.write(json.dumps({"id": 42, **{"consumer_f%d" % i: i / 4 for i in range(10)}}) + "\n")
cands = [{"entities": {"store": 100000 + s}} for s in range(200)]
with open("body.json", "w") as f:
    json.dump({"queries": [{"model": "ranker", "context": {"consumer": 42}, "candidates": cands}]}, f)
EOF

# The store and seer.
RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no --logfile redis.log &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.05; done
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
"$LOAD" -http "http://127.0.0.1:$HP" -grpc "127.0.0.1:$GP" -body body.json -c "$CONC" -d "${DURATION}s" -rounds "$ROUNDS" -pid "$SPID"
echo "uptime at end: $(uptime)"
