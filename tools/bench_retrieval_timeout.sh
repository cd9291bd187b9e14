#!/usr/bin/env bash
# How much retrieval budget a query of max_candidates candidates needs, with
# the real binary against one standalone redis-server on a loopback port:
# 1000 stores of 20 float features and a consumer of 10 (30 inputs a row),
# uploaded with `seer upload`, a linear model of them, and for each
# predict.retrieval_timeout given, a fresh seer serving a background load of
# C closed-loop clients (hey, 200-candidate queries) while one more client
# sends N 1000-candidate queries one after another. It prints, per budget,
# how many of those came back degraded (and the degraded_values of the
# worst), and their latency; with a budget nothing misses (2s) the latency
# is what the reads and the scoring of such a query take under that load.
# uptime is printed at start and end. docs/performance.md ("The retrieval
# budget") has figures.
#
#   go build -o /tmp/seer ./cmd/seer
#   flock /tmp/seer-measure.lock tools/bench_retrieval_timeout.sh [budgets, default "2s 25ms 50ms 100ms 150ms"] [N, default 40] [C, default 4]
#
# Needs redis-server, redis-cli, curl, hey and python3. Everything it starts
# is stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
BUDGETS=${1:-2s 25ms 50ms 100ms 150ms}
N=${2:-40}
C=${3:-4}
. "$(dirname "$0")/lib/bench.sh"
cd "$WORK"
ranking_fixture 1000
python3 - <<'EOF'
import json
for name, n in (("body1000.json", 1000), ("body200.json", 200)):
    cands = [{"entities": {"store": 100000 + (s * 7) % 1000}} for s in range(n)]
    with open(name, "w") as f:
        json.dump({"queries": [{"model": "ranker", "context": {"consumer": 42}, "candidates": cands}]}, f)
EOF

start_redis
config() { # PORT BUDGET
	cat <<EOF
listen: 127.0.0.1:$1
catalog: catalog.yaml
models: models
models_poll: 0s
log_level: error
stores:
  main: {mode: standalone, addr: 127.0.0.1:$RP}
predict:
  timeout: 3s
  retrieval_timeout: $2
EOF
}
HP=$(freeport)
config "$HP" 2s >seer.yaml
"$SEER" upload --config seer.yaml --entity store stores.csv >/dev/null
"$SEER" upload --config seer.yaml --entity consumer consumers.jsonl >/dev/null

echo "uptime at start: $(uptime)"
printf '%-10s %6s %9s %12s %9s %9s %9s %9s %12s\n' budget tries degraded worst_values p50_ms p90_ms max_ms bg_rps all_degraded
for budget in $BUDGETS; do
	config "$HP" "$budget" >seer.yaml
	"$SEER" serve --config seer.yaml >/dev/null 2>serve.log &
	SPID=$!
	for _ in $(seq 200); do curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null && break; sleep 0.05; done
	# Warm: connections made, code paged in.
	for _ in 1 2 3; do curl -s -o /dev/null -X POST --data-binary @body1000.json "http://127.0.0.1:$HP/v1/predict"; done
	hey -z 600s -c "$C" -m POST -T application/json -D body200.json "http://127.0.0.1:$HP/v1/predict" >hey.txt 2>&1 &
	HEY=$!
	sleep 2
	python3 - "$HP" "$N" "$budget" <<'EOF'
import http.client, json, sys, time
port, n, budget = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = open("body1000.json", "rb").read()
conn = http.client.HTTPConnection("127.0.0.1", port)
lat, degraded, worst = [], 0, 0
for _ in range(n):
    t = time.perf_counter()
    conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    lat.append((time.perf_counter() - t) * 1000)
    if resp.status != 200:
        sys.exit("status %d: %s" % (resp.status, data[:200]))
    r = json.loads(data)["results"][0]
    if r.get("degraded"):
        degraded += 1
        worst = max(worst, r.get("degraded_values", 0))
    time.sleep(0.1)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
with open("fg.txt", "w") as f:
    f.write("%-10s %6d %9d %12d %9.1f %9.1f %9.1f" % (budget, n, degraded, worst, q(0.5), q(0.9), lat[-1]))
EOF
	# The background's own rate and degraded answers, from seer's metrics.
	metrics=$(curl -s "http://127.0.0.1:$HP/metrics")
	kill -INT "$HEY" 2>/dev/null || true
	wait "$HEY" 2>/dev/null || true
	bg_rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' hey.txt)
	bg_deg=$(echo "$metrics" | awk '/^seer_predict_degraded_queries_total/ {s += $2} END {printf "%d", s}')
	printf '%s %9s %12s\n' "$(cat fg.txt)" "${bg_rps:-?}" "$bg_deg"
	kill -KILL "$SPID"
	wait "$SPID" 2>/dev/null || true
done
echo "uptime at end: $(uptime)"
