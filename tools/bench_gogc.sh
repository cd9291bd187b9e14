#!/usr/bin/env bash
# The GC percentage (the `gogc` config key) against CPU per request and
# memory, with the real binary under the floor's load (tools/bench_floor.sh:
# one standalone redis-server holding 200 stores of 20 float features and
# one consumer of 10, a linear model of those 30 features, the uncached
# 200-candidate /v1/predict). One seer per setting serves the same Redis;
# tools/floorload drives each in turn, round after round, at one
# concurrency. Each round prints the setting's request rate, seer's CPU
# time, allocations and garbage collections per request, the collector's
# own CPU time per request (summed from GODEBUG=gctrace=1: pauses,
# assists, background and idle marking), and the resident memory (VmRSS)
# after the round and at its peak (VmHWM). uptime at start and end. docs/performance.md ("The GC percentage") has figures.
#
#   go build -o /tmp/seer ./cmd/seer && go build -o /tmp/floorload ./tools/floorload
#   tools/bench_gogc.sh [seconds per round, default 8] [concurrency, default 8] [rounds, default 3]
#
# SETTINGS lists the settings as gogc[/memory_limit], default
# "100 200 400 -1/128MiB" (-1: the collector runs only at the memory
# limit). Needs redis-server, redis-cli, curl and python3. Everything it
# starts is stopped on exit.
set -euo pipefail

SEER=${SEER:-/tmp/seer}
LOAD=${LOAD:-/tmp/floorload}
SETTINGS=${SETTINGS:-100 200 400 -1/128MiB}
DURATION=${1:-8}
CONC=${2:-8}
ROUNDS=${3:-3}
. "$(dirname "$0")/lib/bench.sh"
# The catalog, the model and the data: those of tools/bench_floor.sh.
cd "$WORK"
ranking_fixture

start_redis
config() { # PORT GOGC [MEMORY_LIMIT]
	cat <<EOF
listen: 127.0.0.1:$1
catalog: catalog.yaml
models: models
models_poll: 0s
log_level: warn
gogc: $2
memory_limit: ${3:-off}
stores:
  main: {mode: standalone, addr: 127.0.0.1:$RP, read_timeout: 3s} # an overloaded machine must not open the breaker
predict:
  timeout: 3s
  retrieval_timeout: 2s # throughput, not deadlines: every value must be read
EOF
}
gcs() { # URL: the collections so far
	curl -sf "$1/metrics" | awk '$1 == "go_gc_duration_seconds_count" { print $2 }'
}
kib() { # PID FIELD: a /proc/PID/status field in KiB
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

gccpu() { # LOG FROM: the collector's CPU milliseconds in LOG's gctrace lines after line FROM
	tail -n "+$(($2 + 1))" "$1" | awk '$1 == "gc" && $9 == "ms" && $10 == "cpu," {
		n = split($8, t, "[+/]"); for (i = 1; i <= n; i++) ms += t[i] } END { printf "%.1f", ms }'
}

declare -A PORT PID LOG
n=0
for s in $SETTINGS; do
	n=$((n + 1))
	port=$(freeport)
	config "$port" "${s%%/*}" "$([ "$s" != "${s#*/}" ] && echo "${s#*/}")" >"seer$n.yaml"
	if [ "$n" = 1 ]; then
		"$SEER" upload --config seer1.yaml --entity store stores.csv >/dev/null
		"$SEER" upload --config seer1.yaml --entity consumer consumers.jsonl >/dev/null
	fi
	GODEBUG=gctrace=1 "$SEER" serve --config "seer$n.yaml" >/dev/null 2>"seer$n.log" &
	PID[$s]=$!
	PIDS+=($!)
	PORT[$s]=$port
	LOG[$s]=$WORK/seer$n.log
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
done

echo "uptime at start: $(uptime)"
printf '%-5s %-12s %8s %8s %8s %9s %8s %9s %9s %6s\n' round setting req/s 'cpu µs' allocs 'GC/1k req' 'GC µs' 'RSS MiB' 'peak MiB' load
for r in $(seq "$ROUNDS"); do
	for s in $SETTINGS; do
		url="http://127.0.0.1:${PORT[$s]}"
		g0=$(gcs "$url")
		l0=$(wc -l <"${LOG[$s]}")
		out=$("$LOAD" -floor=false -url "$url" -pid "${PID[$s]}" -body body.json -c "$CONC" -d "${DURATION}s" -rounds 1 -metrics)
		g1=$(gcs "$url")
		# round c side req/s p50 p99 cpu errors load N allocs X KiB
		read -r _ _ _ rate _ _ cpu errors load allocs _ _ _ <<<"$(echo "$out" | awk '$3 == "seer"')"
		[ "$errors" = 0 ] || echo "$s: $errors errors"
		awk -v r="$r" -v s="$s" -v rate="$rate" -v cpu="$cpu" -v a="$allocs" -v g="$((g1 - g0))" -v d="$DURATION" \
			-v gcms="$(gccpu "${LOG[$s]}" "$l0")" -v rss="$(kib "${PID[$s]}" VmRSS)" -v hwm="$(kib "${PID[$s]}" VmHWM)" -v la="$load" \
			'BEGIN { n = rate * (d + 1); printf "%-5s %-12s %8.0f %8s %8s %9.1f %8.1f %9.1f %9.1f %6s\n",
				r, s, rate, cpu, a, 1000 * g / n, 1000 * gcms / n, rss / 1024, hwm / 1024, la }'
	done
done
echo "uptime at end: $(uptime)"
