#!/usr/bin/env bash
# seer's side of the /v1/features comparison with Feast's Go feature server
# (issue 9, goal 5): one standalone redis-server on a loopback port holding
# 10,000 entities of 3 features (two floats and an int, as Feast's
# driver_hourly_stats), uploaded with `seer upload`, and tools/floorload
# sending /v1/features for 1 entity and for 100 entities per request,
# reporting seer's process CPU time per request, and Redis's. Prints uptime at start and
# end. docs/performance.md ("/v1/features") has figures.
#
#   go build -o /tmp/seer ./cmd/seer && go build -o /tmp/floorload ./tools/floorload
#   tools/bench_features.sh [seconds per round, default 10] [concurrencies, default 1,8] [rounds, default 3]
#
# With OLD=/path/to/an/older/seer, that binary serves the same Redis too and
# takes its turn in every round; with OLD_UPLOAD=1 as well, it reads its
# own redis-server, where it uploaded the drivers itself: for a build from
# before generations, such as 468e491 (where issue 9 was filed), which
# reads the fields that a newer build's upload leaves empty. With
# FLOOR=/path/to/httpfloor (go build -o /tmp/httpfloor ./tools/httpfloor),
# after seer's rounds of each body the same rounds are run against that
# constant-answer net/http server, which answers seer's own answer for the
# body: the floor no feature server on net/http goes below. Needs
# redis-server, redis-cli, curl and python3. Everything it starts is
# stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
LOAD=${LOAD:-/tmp/floorload}
OLD=${OLD:-}
FLOOR=${FLOOR:-}
DURATION=${1:-10}
CONCS=${2:-1,8}
ROUNDS=${3:-3}
. "$(dirname "$0")/lib/bench.sh"

cd "$WORK"
cat >catalog.yaml <<'EOF2'
entities: {driver: {key: "driver_{id}"}}
features:
  - {name: conv_rate, entity: driver, type: float, store: main}
  - {name: acc_rate, entity: driver, type: float, store: main}
  - {name: avg_daily_trips, entity: driver, type: int, store: main}
EOF2
mkdir -p models
python3 - <<'EOF2'
import json, random
random.seed(1)
with open("drivers.csv", "w") as f:
    f.write("id,conv_rate,acc_rate,avg_daily_trips\n")
    for d in range(10000):
        f.write("%d,%.6f,%.6f,%d\n" % (1000 + d, random.random(), random.random(), random.randint(0, 1000)))
names = ["conv_rate", "acc_rate", "avg_daily_trips"]
for n in (1, 100):
    ids = random.sample(range(1000, 11000), n)
    with open("body%d.json" % n, "w") as f:
        json.dump({"queries": [{"features": names, "candidates": [{"entities": {"driver": str(i)}} for i in ids]}]}, f)
EOF2

start_redis
REDIS_PID=${PIDS[-1]}
config() {
	cat <<EOF2
listen: 127.0.0.1:$1
catalog: catalog.yaml
models: models
models_poll: 0s
log_level: warn
stores:
  main: {mode: standalone, addr: 127.0.0.1:$RP, read_timeout: 3s} # an overloaded machine must not open the breaker
predict:
  timeout: 3s
  retrieval_timeout: 2s
EOF2
}
HP=$(freeport)
config "$HP" >seer.yaml
"$SEER" upload --config seer.yaml --entity driver drivers.csv >/dev/null
SPID=$(serve "$SEER" "$HP" seer.yaml)
PIDS+=("$SPID")
if [ -n "$OLD" ] && [ -n "${OLD_UPLOAD:-}" ]; then
	# The older build reads its own redis-server, the same drivers
	# uploaded by itself.
	MAIN_RP=$RP
	start_redis
	OLD_REDIS_PID=${PIDS[-1]}
	config "$(freeport)" >oldupload.yaml
	"$OLD" upload --config oldupload.yaml --entity driver drivers.csv >/dev/null
	serve_old
	OLDARGS+=(-old-redis-pid "$OLD_REDIS_PID")
	RP=$MAIN_RP
else
	serve_old
fi

echo "uptime at start: $(uptime)"
for n in 1 100; do
	echo "== /v1/features, $n entities x 3 features"
	"$LOAD" -floor=false -path /v1/features -url "http://127.0.0.1:$HP" -pid "$SPID" -redis-pid "$REDIS_PID" "${OLDARGS[@]}" \
		-body "body$n.json" -c "$CONCS" -d "${DURATION}s" -rounds "$ROUNDS"
	if [ -n "$FLOOR" ]; then
		echo "== the net/http floor, seer's answer for $n entities"
		curl -sf -X POST --data-binary "@body$n.json" "http://127.0.0.1:$HP/v1/features" >"answer$n.json"
		FP=$(freeport)
		"$FLOOR" -listen "127.0.0.1:$FP" -answer "answer$n.json" >/dev/null &
		FPID=$!
		PIDS+=("$FPID")
		for _ in $(seq 100); do curl -sf -X POST -d '{}' "http://127.0.0.1:$FP/" >/dev/null && break; sleep 0.05; done
		"$LOAD" -floor=false -path /v1/features -url "http://127.0.0.1:$FP" -pid "$FPID" \
			-body "body$n.json" -c "$CONCS" -d "${DURATION}s" -rounds "$ROUNDS"
		kill "$FPID"
	fi
done
echo "uptime at end: $(uptime)"
