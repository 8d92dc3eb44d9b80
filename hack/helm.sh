#!/usr/bin/env bash
# Builds the helm CLI from its Go module (the Go module proxy is the only registry CI reaches) and
# caches it per version outside the repository, like hack/envtest-binaries.sh. Idempotent.
# Prints the path of the helm binary on stdout; progress goes to stderr.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
CACHE_ROOT="${EDGEPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgepool}"
OUT="$CACHE_ROOT/tools/helm-v$HELM_VERSION"

log() { printf 'helm: %s\n' "$*" >&2; }

if [[ -x "$OUT/helm" ]]; then
  echo "$OUT/helm"
  exit 0
fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if [[ -x "$OUT/helm" ]]; then
  echo "$OUT/helm"
  exit 0
fi
log "building helm v$HELM_VERSION from the Go module proxy (a few minutes on 2 cores)..."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
GOBIN="$work" GOFLAGS=-mod=mod go install -trimpath \
  -ldflags "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
mv "$work/helm" "$OUT/helm"
log "helm ready in $OUT"
echo "$OUT/helm"
