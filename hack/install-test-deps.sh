#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, idempotently:
# PostgreSQL 15 server binaries and psql/pgbench (Debian packages).
# Prints nothing but progress on stderr; safe to run repeatedly.
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

need=()
dpkg -s postgresql-15 >/dev/null 2>&1 || need+=(postgresql-15)
command -v pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client-15)
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done

if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  log "missing packages ${need[*]}; run as root or install them"
  exit 1
fi
log "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${need[@]}" >/tmp/edgepool-apt.log 2>&1; then
  apt-get update >/tmp/edgepool-apt.log 2>&1
  apt-get install -y --no-install-recommends "${need[@]}" >>/tmp/edgepool-apt.log 2>&1 || {
    cat /tmp/edgepool-apt.log >&2
    exit 1
  }
fi
# The Debian package creates a default cluster and may start it; tests start their own.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
    pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
  done
fi
id postgres >/dev/null 2>&1 || { log "the postgres user is missing after install"; exit 1; }
log "done"
