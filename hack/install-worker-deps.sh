#!/usr/bin/env bash
# Installs the Cloudflare Worker example's dependencies (examples/cloudflare-worker: hono, pg,
# @neondatabase/serverless, wrangler with its workerd binary package) exactly as locked in
# package-lock.json. npm 11 skips install scripts unless approved; none is needed: workerd's
# binary comes in its platform package (@cloudflare/workerd-linux-64), which npm picks as an
# optional dependency. Installs Node.js from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../examples/cloudflare-worker"

log() { printf 'install-worker-deps: %s\n' "$*" >&2; }

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
if [[ -f $stamp && $(cat "$stamp") == "$want" && -x node_modules/.bin/wrangler ]]; then
  exit 0
fi
log "npm ci in examples/cloudflare-worker (wrangler + workerd: about 30 s)"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
