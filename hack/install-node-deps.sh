#!/usr/bin/env bash
# Installs a node project's dependencies exactly as locked in its package-lock.json:
#   hack/install-node-deps.sh test/node                    (@neondatabase/serverless, ws)
#   hack/install-node-deps.sh examples/cloudflare-worker   (hono, pg, neon, wrangler + workerd)
#   hack/install-node-deps.sh test/prisma                  (prisma CLI, @prisma/client, extension-accelerate, adapter-pg)
# npm 11 skips install scripts unless approved; none is needed (workerd's binary comes in its
# platform package, @cloudflare/workerd-linux-64, an optional dependency npm picks), so scripts
# are off. Skips npm when node_modules already matches the lock file. Installs Node.js from
# Debian when it is missing.
set -euo pipefail
dir=${1:?usage: install-node-deps.sh DIR}
cd "$(dirname "$0")/../$dir"

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

stamp=node_modules/.edgepool-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
log "npm ci in $dir"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
