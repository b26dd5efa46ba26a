#!/usr/bin/env bash
# Runs every native fuzz target of the module briefly (FUZZTIME each, first
# argument), one after another: the seed corpora always run with `go test`;
# this adds fresh inputs on every CI run. A crasher is written under the
# package's testdata/fuzz and fails the run.
set -euo pipefail
fuzztime=${1:-10s}
fail=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort -u || true)
	for t in $targets; do
		echo "fuzz: $pkg $t ($fuzztime)"
		if ! go test -run='^$' -fuzz="^$t\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s "$pkg" >/tmp/nimbus-fuzz.log 2>&1; then
			cat /tmp/nimbus-fuzz.log
			fail=1
		fi
	done
done
exit $fail
