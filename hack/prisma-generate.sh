#!/usr/bin/env bash
# Generates the Prisma 7 client of a node project from its schema (DIR/schema.prisma or
# DIR/prisma/schema.prisma) with the project's own pinned prisma CLI (installed by
# hack/install-node-deps.sh DIR):
#   hack/prisma-generate.sh test/prisma
# Client generation needs no schema engine, but the CLI would download one unless
# PRISMA_SCHEMA_ENGINE_BINARY names an executable; any will do (it is never run for `generate`).
# Skips the work when the schema and the CLI are unchanged since the last generation.
set -euo pipefail
dir=${1:?usage: prisma-generate.sh DIR}
cd "$(dirname "$0")/../$dir"
schema=schema.prisma
[[ -f $schema ]] || schema=prisma/schema.prisma
mapfile -t outs < <(sed -nE 's/^\s*output\s*=\s*"([^"]+)".*/\1/p' "$schema")
((${#outs[@]})) || { echo "$schema has no generator output" >&2; exit 1; }
want=$(cat "$schema" node_modules/prisma/package.json | sha256sum | cut -d' ' -f1)
fresh=1
for out in "${outs[@]}"; do
  stamp="$(dirname "$schema")/$out/.edgepool-schema.sha256"
  [[ -f $stamp && $(cat "$stamp") == "$want" ]] || fresh=0
done
((fresh)) && exit 0
if ! log=$(PRISMA_SCHEMA_ENGINE_BINARY=/usr/bin/true CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
  node_modules/.bin/prisma generate --schema "$schema" 2>&1); then
  printf '%s\n' "$log" >&2
  exit 1
fi
for out in "${outs[@]}"; do
  echo "$want" >"$(dirname "$schema")/$out/.edgepool-schema.sha256"
done
