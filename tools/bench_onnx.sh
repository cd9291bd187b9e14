#!/usr/bin/env bash
# Times seer's ONNX evaluator beside PyTorch on the speed goal's case: 200
# rows through the 64-256-128-1 MLP of models/testdata/onnx, both on one
# thread, interleaved for ROUNDS rounds (default 5) in one run, then prints
# the medians and their ratio. seer's figure is BenchmarkMLP of
# models/onnx (its allocations too); PyTorch's is tools/onnx_oracles.py
# --bench (the mean of 2000 calls, torch.set_num_threads(1)). Both are
# means over about a second.
#
#   tools/bench_onnx.sh [ROUNDS] [go test flags, e.g. -tags purego]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
bin=$(mktemp -d)/onnx.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" "$@" ./models/onnx
echo "before: $(uptime)"
seer=() torch=()
for _ in $(seq "$rounds"); do
  line=$(cd models/onnx && GOMAXPROCS=1 "$bin" -test.run '^$' -test.bench '^BenchmarkMLP$' -test.benchmem -test.count 1 | grep '^BenchmarkMLP')
  echo "seer:    $line"
  seer+=("$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") print $i / 1000}' <<<"$line")")
  line=$(OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 tools/onnx_oracles.py --bench 200 2 2>/dev/null)
  echo "$line"
  torch+=("$(awk '{print $4}' <<<"$line")")
done
echo "after:  $(uptime)"
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
s=$(median "${seer[@]}") t=$(median "${torch[@]}")
awk -v s="$s" -v t="$t" 'BEGIN {printf "median: seer %.1f us, pytorch %.1f us per 200 rows: seer takes %.2fx PyTorch'"'"'s time\n", s, t, s / t}'
