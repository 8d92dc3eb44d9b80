#!/usr/bin/env bash
# make flake-check: the `make test` suite FLAKE_RUNS times (default 5) — the Go tests once with
# -count=FLAKE_RUNS (with the race detector, each package's timeout scaled by the runs), then the
# short fuzz runs FLAKE_RUNS times — and a report of every test that failed at least once.
# FLAKE_PKGS narrows the packages (default ./...); FLAKE_FUZZ=0 leaves the fuzz runs out.
# Exits non-zero when anything failed; the full go test -json log is kept and named.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${FLAKE_RUNS:-5}
pkgs=${FLAKE_PKGS:-./...}
go=${GO:-go}
log=$(mktemp -t edgepool-flake-XXXXXX.json)
fuzzlog=$(mktemp -t edgepool-flake-fuzz-XXXXXX.log)
status=0

# shellcheck disable=SC2086 # FLAKE_PKGS is a list of packages
$go test -race -count="$runs" -timeout "$((20 * runs))m" -json $pkgs >"$log"
$go run ./hack/flakereport -runs "$runs" <"$log" || status=1

if [[ ${FLAKE_FUZZ:-1} != 0 ]]; then
	fuzzfail=0
	for ((i = 1; i <= runs; i++)); do
		if ! make --no-print-directory fuzz FUZZTIME=50000x >>"$fuzzlog" 2>&1; then
			fuzzfail=$((fuzzfail + 1))
		fi
	done
	if ((fuzzfail > 0)); then
		echo "FAIL $fuzzfail/$runs  make fuzz (log: $fuzzlog)"
		status=1
	fi
fi
echo "go test -json log: $log"
exit $status
