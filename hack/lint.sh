#!/usr/bin/env bash
# Run golangci-lint (pinned version, built from the Go module proxy into bin/) on the whole module.
#
#   hack/lint.sh                 lint everything with .golangci.yml
#   hack/lint.sh --fix           let the linters/formatters that can, fix in place
#   hack/lint.sh ./pooler/...    lint a subtree (any golangci-lint run arguments work)
#   hack/lint.sh fmt             rewrite files with the configured formatters (gofmt, goimports
#                                with local imports grouped last)
#
# Env: GOLANGCI_LINT_VERSION overrides the pin; GOLANGCI_LINT_FLAGS adds flags.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

version="${GOLANGCI_LINT_VERSION:-v2.15.0}"
bin="$root/bin/golangci-lint"

installed_version() {
	# "golangci-lint has version v2.15.0 built with ..." (or "version 2.15.0" for release builds)
	"$bin" version 2>/dev/null | sed -nE 's/.*has version v?([0-9][0-9.]*).*/v\1/p'
}

if [[ ! -x "$bin" || "$(installed_version)" != "$version" ]]; then
	echo ">> building golangci-lint $version into bin/ (one time; takes a few minutes)" >&2
	GOBIN="$root/bin" GOFLAGS=-buildvcs=false \
		go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version"
	got="$(installed_version)"
	if [[ "$got" != "$version" ]]; then
		echo "golangci-lint: wanted $version, bin/golangci-lint reports '${got:-nothing}'" >&2
		exit 1
	fi
fi

subcommand=run
if [[ "${1:-}" == fmt ]]; then
	subcommand=fmt
	shift
fi

# Lint the whole module unless package patterns were given.
args=("$@")
have_pkgs=0
for a in "${args[@]}"; do [[ "$a" == -* ]] || have_pkgs=1; done
((have_pkgs)) || args+=(./...)
# shellcheck disable=SC2086 # GOLANGCI_LINT_FLAGS is a word list on purpose
exec "$bin" "$subcommand" ${GOLANGCI_LINT_FLAGS:-} "${args[@]}"
