# Shared by the tools/bench_*.sh scripts (source it): a work directory and
# process list cleaned up on exit, free ports, the ranking fixture of
# docs/performance.md and a standalone redis-server.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ranking_fixture [STORES]: in the current directory, the catalog (stores of
# 20 float features, a consumer of 10, all in store "main"), a linear model
# "ranker" of those 30 inputs, the data (STORES stores, default 200, from id
# 100000, and consumer 42) and body.json, a query of the first 200 stores
# as candidates.
ranking_fixture() {
	local stores=${1:-200}
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
	STORES=$stores python3 - <<'PY'
import json, os
n = int(os.environ["STORES"])
cols = ["store_f%d" % i for i in range(20)]
with open("stores.csv", "w") as f:
    f.write("id," + ",".join(cols) + "\n")
    for s in range(n):
        f.write("%d," % (100000 + s) + ",".join("%.3f" % ((s * 7 + i) % 100 / 10) for i in range(20)) + "\n")
with open("consumers.jsonl", "w") as f:
    f.write(json.dumps({"id": 42, **{"consumer_f%d" % i: i / 4 for i in range(10)}}) + "\n")
cands = [{"entities": {"store": 100000 + s}} for s in range(min(n, 200))]
with open("body.json", "w") as f:
    json.dump({"queries": [{"model": "ranker", "context": {"consumer": 42}, "candidates": cands}]}, f)
PY
}

# redis_on PORT [ARG...]: a redis-server without persistence on PORT, in a
# directory of its own under WORK, with the extra arguments given; its pid
# is the last of PIDS.
redis_on() {
	local port=$1
	shift
	mkdir -p "$WORK/redis-$port"
	redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$port" --save '' --appendonly no \
		--logfile redis.log "$@" &
	PIDS+=($!)
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
	echo "redis-server on $port did not start" >&2
	exit 1
}

# start_redis [ARG...]: redis_on a free port, in RP.
start_redis() {
	RP=$(freeport)
	redis_on "$RP" "$@"
}

# redis_cpu PORT: the CPU seconds, user and system, the redis-server on
# PORT used so far.
redis_cpu() {
	redis-cli -p "$1" info cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.3f", s}'
}

# serve BINARY PORT CONFIG: starts `BINARY serve`, waits until it is
# ready, prints its pid.
serve() {
	"$1" serve --config "$3" >/dev/null 2>"$3.log" &
	local pid=$!
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && break; sleep 0.05; done
	echo "$pid"
}

# serve_old: when OLD names an older build, serves it on a free port with
# the configuration `config PORT` writes, and sets OLDARGS to the load
# tool's flags for it (empty otherwise).
serve_old() {
	OLDARGS=()
	if [ -n "${OLD:-}" ]; then
		local op opid
		op=$(freeport)
		config "$op" >old.yaml
		opid=$(serve "$OLD" "$op" old.yaml)
		PIDS+=("$opid")
		OLDARGS=(-old-url "http://127.0.0.1:$op" -old-pid "$opid")
	fi
}
