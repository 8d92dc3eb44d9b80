#!/usr/bin/env bash
# Installs the node test dependencies (test/node: @neondatabase/serverless, ws) exactly as
# locked in package-lock.json. Neither package needs an install script, and npm 11 would skip
# them anyway, so scripts are off. Installs Node.js from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../test/node"

log() { printf 'install-node-deps: %s\n' "$*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    log "node and npm are missing; install Node.js 20 or newer"
    exit 1
  fi
  log "installing nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >/tmp/edgepool-apt-node.log 2>&1
  apt-get install -y --no-install-recommends nodejs npm >>/tmp/edgepool-apt-node.log 2>&1 || {
    cat /tmp/edgepool-apt-node.log >&2
    exit 1
  }
fi

# Skip the install when node_modules already matches the lock file.
stamp=node_modules/.edgepool-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
log "npm ci in test/node"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
