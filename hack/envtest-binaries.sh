#!/usr/bin/env bash
# Builds envtest's kube-apiserver and etcd from the Go module proxy (no download host needed)
# and caches them per version outside the repository. Idempotent: a cached build is reused.
# Prints the directory holding both binaries on stdout (use it as KUBEBUILDER_ASSETS);
# progress goes to stderr.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
CACHE_ROOT="${EDGEPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgepool}"
OUT="$CACHE_ROOT/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

log() { printf 'envtest-binaries: %s\n' "$*" >&2; }

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" ]]; then
  log "cached in $OUT"
  echo "$OUT"
  exit 0
fi
mkdir -p "$OUT"
# One build at a time per cache dir: parallel test runs wait for the first one's result.
exec 9>"$OUT/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" ]]; then
  log "cached in $OUT"
  echo "$OUT"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

staging_minor="0.${K8S_VERSION#1.}"
k8s_minor="${K8S_VERSION#1.}"
k8s_minor="${k8s_minor%%.*}"

if [[ ! -x "$OUT/etcd" ]]; then
  log "building etcd v$ETCD_VERSION from the Go module proxy (about 1 minute)..."
  mkdir -p "$work/etcd"
  (
    cd "$work/etcd"
    go mod init envtest-etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
      go mod edit -replace="go.etcd.io/etcd/$m=go.etcd.io/etcd/$m@v$ETCD_VERSION"
    done
    printf 'package main\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod go build -trimpath -o "$OUT/etcd.tmp.$$" go.etcd.io/etcd/server/v3
  )
  mv "$OUT/etcd.tmp.$$" "$OUT/etcd"
  log "etcd ready"
fi

if [[ ! -x "$OUT/kube-apiserver" ]]; then
  log "building kube-apiserver v$K8S_VERSION from the Go module proxy (about 6 minutes on 2 cores)..."
  mkdir -p "$work/k8s"
  (
    cd "$work/k8s"
    go mod init envtest-k8s >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    # k8s.io/kubernetes requires its staging modules at v0.0.0; replace each with the release tag.
    modfile=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile"); do
      go mod edit -replace="$m=$m@v$staging_minor"
    done
    printf 'package main\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' >tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod go build -trimpath -o "$OUT/kube-apiserver.tmp.$$" \
      -ldflags "-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$OUT/kube-apiserver.tmp.$$" "$OUT/kube-apiserver"
  log "kube-apiserver ready"
fi
echo "$OUT"
