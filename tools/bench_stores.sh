#!/usr/bin/env bash
# Load test of `seer serve` with each store mode: a standalone Redis, a ring
# of three and a three-master Redis Cluster, all on loopback ports of this
# machine. For each mode it writes a config, uploads 200 stores (20 features)
# and one consumer (10 features) with `seer upload`, serves a linear model
# of those 30 features, and sends the same 200-candidate /v1/predict query
# with hey. docs/performance.md ("Stores") has the figures.
#
#   go build -o /tmp/seer ./cmd/seer
#   tools/bench_stores.sh [seconds per mode, default 15] [concurrency, default 8]
#
# Needs redis-server, redis-cli, hey and python3. Everything it starts is
# stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
DURATION=${1:-15}
CONC=${2:-8}
. "$(dirname "$0")/lib/bench.sh"
# The catalog, the model and the data.
cd "$WORK"
ranking_fixture

# The stores.
P1=$(freeport); redis_on "$P1"
RING=(); for _ in 1 2 3; do p=$(freeport); redis_on "$p"; RING+=("127.0.0.1:$p"); done
CLUSTER=(); for _ in 1 2 3; do
	p=$(freeport); b=$(freeport)
	redis_on "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$b"
	CLUSTER+=("127.0.0.1:$p")
done
redis-cli --cluster create "${CLUSTER[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 200); do
	redis-cli -p "${CLUSTER[0]#*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.05
done
sleep 1 # let every node agree

join() { local IFS=,; echo "$*"; }
declare -A STORES=(
	[standalone]="{mode: standalone, addr: 127.0.0.1:$P1}"
	[ring]="{mode: ring, addrs: [$(join "${RING[@]}")]}"
	[cluster]="{mode: cluster, addrs: [$(join "${CLUSTER[@]}")]}"
)

printf '%-11s %10s %10s %10s %10s %9s %7s\n' mode 'req/s' 'p50 ms' 'p99 ms' 'errors' degraded load
for mode in standalone ring cluster; do
	port=$(freeport)
	cat >"seer-$mode.yaml" <<EOF
listen: 127.0.0.1:$port
catalog: catalog.yaml
models: models
models_poll: 0s
log_level: warn
stores:
  main: ${STORES[$mode]}
predict:
  retrieval_timeout: 100ms
EOF
	"$SEER" upload --config "seer-$mode.yaml" --entity store stores.csv >/dev/null
	"$SEER" upload --config "seer-$mode.yaml" --entity consumer consumers.jsonl >/dev/null
	"$SEER" serve --config "seer-$mode.yaml" >/dev/null 2>"serve-$mode.log" &
	spid=$!
	PIDS+=($spid)
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
	# Every candidate must be read, not defaulted.
	if curl -s -X POST -H 'Content-Type: application/json' --data @body.json "http://127.0.0.1:$port/v1/predict" | grep -q degraded; then
		echo "$mode: the first answer is degraded" >&2; exit 1
	fi
	hey -z 3s -c "$CONC" -m POST -T application/json -D body.json "http://127.0.0.1:$port/v1/predict" >/dev/null # warm up
	hey -z "${DURATION}s" -c "$CONC" -m POST -T application/json -D body.json "http://127.0.0.1:$port/v1/predict" >"hey-$mode.txt"
	rps=$(awk '/Requests\/sec/ {print $2}' "hey-$mode.txt")
	p50=$(awk '/50%% in/ || /50% in/ {printf "%.2f", $3*1000}' "hey-$mode.txt")
	p99=$(awk '/99% in/ {printf "%.2f", $3*1000}' "hey-$mode.txt")
	bad=$(awk '/^  \[[0-9]+\]/ && $1 != "[200]" {n += $2} END {print n+0}' "hey-$mode.txt")
	deg=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^seer_predict_degraded_total/ {n += $2} END {print n+0}')
	load=$(cut -d' ' -f1 /proc/loadavg)
	printf '%-11s %10s %10s %10s %10s %9s %7s\n' "$mode" "$rps" "$p50" "$p99" "$bad" "$deg" "$load"
	kill "$spid"; wait "$spid" 2>/dev/null || true
done
