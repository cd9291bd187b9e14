#!/usr/bin/env bash
# What loading a large model costs the requests served meanwhile. seer
# serves the quickstart (embedded store, store_ranker) under `hey -c 8`,
# 50 candidates a query, for 10 s; 3 s in, a valid 100 MB ONNX model (an
# MLP 8 -> 5000 -> 5000 -> 1, written with python3-onnx) is copied into the
# models root, and the next poll loads it. Each run prints the slowest
# request of the load and the collector's longest mark phase
# (GODEBUG=gctrace=1): a goroutine that cannot be preempted while the
# artifact loads holds up the mark phase, and with it every request that
# allocates. With OLD=/path/to/an/older/seer the two builds take turns,
# ROUNDS runs each. docs/soak.md ("Loading a 200 MiB artifact") has
# figures. Needs python3-onnx, hey and curl.
#
#   go build -o /tmp/seer ./cmd/seer
#   tools/bench_model_load.sh [rounds, default 3]
set -euo pipefail

SEER=${SEER:-/tmp/seer}
OLD=${OLD:-}
ROUNDS=${1:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib/bench.sh"

cd "$WORK"
cp -r "$REPO/configs/quickstart" quickstart
mkdir -p big/1
/usr/bin/python3 - <<'PY'
import numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
rng = np.random.default_rng(1)
weights = [rng.standard_normal(s, dtype=np.float32) * 0.01 for s in ((8, 5000), (5000, 5000), (5000, 1))]
nodes = [helper.make_node("MatMul", ["x", "W0"], ["h0"]), helper.make_node("Relu", ["h0"], ["r0"]),
         helper.make_node("MatMul", ["r0", "W1"], ["h1"]), helper.make_node("Relu", ["h1"], ["r1"]),
         helper.make_node("MatMul", ["r1", "W2"], ["score"])]
graph = helper.make_graph(nodes, "big",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
    [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
    [numpy_helper.from_array(w, "W%d" % i) for i, w in enumerate(weights)])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, "big/1/model.onnx")
PY
{
	echo 'name: big'
	echo 'version: "1"'
	echo 'format: onnx'
	echo 'artifact: model.onnx'
	echo 'inputs:'
	for i in $(seq 0 7); do echo "  - {name: x_$i, source: request, type: float, tensor: x}"; done
} >big/1/manifest.yaml
python3 - <<'PY'
import csv, json
stores = [r["id"] for r in csv.DictReader(open("quickstart/stores.csv"))]
consumer = json.loads(open("quickstart/consumers.jsonl").readline())["id"]
cands = [{"entities": {"store": stores[i % len(stores)]}} for i in range(50)]
json.dump({"queries": [{"model": "store_ranker", "context": {"consumer": str(consumer)},
    "features": {"hour_of_day": 13}, "candidates": cands}]}, open("body.json", "w"))
PY

run() { # run BINARY: one run; prints the slowest request and the longest mark phase
	local port pid
	port=$(freeport)
	cat >seer.yaml <<EOF
listen: 127.0.0.1:$port
catalog: quickstart/catalog.yaml
models: quickstart/models
models_poll: 1s
log_level: warn
stores: {main: {mode: embedded}}
seed:
  - {entity: store, file: quickstart/stores.csv}
  - {entity: consumer, file: quickstart/consumers.jsonl}
predict: {timeout: 1s, retrieval_timeout: 150ms}
EOF
	rm -rf quickstart/models/big
	pid=$(GODEBUG=gctrace=1 serve "$1" "$port" seer.yaml)
	PIDS+=("$pid")
	hey -z 10s -c 8 -m POST -D body.json "http://127.0.0.1:$port/v1/predict" >hey.txt &
	local hp=$!
	sleep 3
	cp -r big quickstart/models/big
	wait "$hp"
	if ! curl -sf "http://127.0.0.1:$port/v1/models" | grep -q '"name":"big"'; then
		echo "the 100 MB model did not load" >&2
		exit 1
	fi
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	printf '%-10s slowest request %8s s   longest mark phase %8s ms\n' "$(basename "$1")" \
		"$(awk '/Slowest:/ {print $2}' hey.txt)" \
		"$(sed -nE 's/^gc .*: [0-9.]+\+([0-9.]+)\+[0-9.]+ ms clock.*/\1/p' seer.yaml.log | sort -n | tail -1)"
}

echo "uptime at start: $(uptime)"
for _ in $(seq "$ROUNDS"); do
	[ -z "$OLD" ] || run "$OLD"
	run "$SEER"
done
echo "uptime at end: $(uptime)"
