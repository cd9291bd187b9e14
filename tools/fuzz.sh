#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 30s), one
# after the other, and stops at the first that fails; its input is then in
# that package's testdata/fuzz, where `go test` runs it from then on.
#
#   FUZZTIME=2m tools/fuzz.sh        # or: make fuzz FUZZTIME=2m
#
# Minimizing is held to 2 s an input: with go's default of 60 s, the first
# new input of a target with large seeds (a 200-candidate request, a
# Parquet file, an ONNX model) is minimized for the whole run, and the
# target runs a dozen inputs instead of hundreds of thousands.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
grep -rn --include='*_test.go' '^func Fuzz' . |
	sed -E 's|^\./(.*)/[^/]*:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort -u |
	while read -r pkg name; do
		echo "== ./$pkg $name"
		go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "./$pkg"
	done
