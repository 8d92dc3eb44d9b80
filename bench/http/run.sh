#!/usr/bin/env bash
# One-row select through one edgepool pooler, same machine, same pool: POST /sql (bench/http) at
# C concurrent requests (uncached, then served by the query cache) next to TCP pgbench with C
# clients (simple and extended protocol).
# Starts a throwaway PostgreSQL and the real pooler via test/node/harness; stops both after.
#
# Usage: bench/http/run.sh      Env: C=50 SECONDS_EACH=15 POOL_SIZE=10 OUT=bench/results/http.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
C="${C:-50}"
SECONDS_EACH="${SECONDS_EACH:-15}"
POOL_SIZE="${POOL_SIZE:-10}"
OUT="${OUT:-bench/results/http.md}"

./hack/install-test-deps.sh
go build -o bin/edgepool ./cmd/edgepool
go build -o bin/edgepool-node-harness ./test/node/harness
go build -o bin/bench-http ./bench/http

tmp="$(mktemp -d)"
mkfifo "$tmp/in"
bin/edgepool-node-harness -pool-size "$POOL_SIZE" <"$tmp/in" >"$tmp/endpoints.json" 2>"$tmp/harness.log" &
harness=$!
exec 3>"$tmp/in" # the harness runs until this closes
cleanup() { exec 3>&- || true; wait "$harness" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
for _ in $(seq 600); do [[ -s "$tmp/endpoints.json" ]] && break; sleep 0.1; done
[[ -s "$tmp/endpoints.json" ]] || { cat "$tmp/harness.log" >&2; echo "harness did not start" >&2; exit 1; }

field() { python3 -c "import json,sys; print(json.load(open('$tmp/endpoints.json'))['$1'])"; }
http_addr="$(field http)"; pg_addr="$(field postgres)"; key="$(field key)"; user="$(field user)"; db="$(field database)"
export EDGEPOOL_CONN="postgres://$user:$key@localhost/$db"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
http_line="$(bin/bench-http -url "http://$http_addr/sql" -c "$C" -d "${SECONDS_EACH}s" -json)"
echo "$http_line" >&2
cached_line="$(bin/bench-http -url "http://$http_addr/sql" -c "$C" -d "${SECONDS_EACH}s" -cache-control max-age=3600 -json)"
echo "$cached_line" >&2

echo 'select 1 as one;' >"$tmp/select.sql"
pgbench_run() {
	PGPASSWORD="$key" pgbench -n -h "${pg_addr%:*}" -p "${pg_addr##*:}" -U "$user" -d "$db" -f "$tmp/select.sql" \
		-M "$1" -c "$C" -j 2 -T "$SECONDS_EACH" -r 2>&1
}
tps() { awk '/^tps/ {print $3; exit}'; }
lat() { awk '/^latency average/ {print $4; exit}'; }
simple="$(pgbench_run simple)"; echo "$simple" | tail -4 >&2
extended="$(pgbench_run extended)"; echo "$extended" | tail -4 >&2
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

py() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r['$1'])" "${2:-$http_line}"; }
mkdir -p "$(dirname "$OUT")"
{
	echo "# POST /sql vs TCP: one-row select through one pooler"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $load_before → $load_after (the machine is shared;"
	echo "compare rows of one run, not runs). Pool size $POOL_SIZE, $C concurrent clients, ${SECONDS_EACH}s each,"
	echo "\`select 1 as one\`, PostgreSQL 15 on loopback. Produced by \`bench/http/run.sh\`."
	echo
	echo "| transport | requests/s | p50 ms | p99 ms | avg ms | errors |"
	echo "|---|---|---|---|---|---|"
	printf '| HTTP `POST /sql` (bench/http, keep-alive) | %.0f | %.2f | %.2f | | %s |\n' \
		"$(py requestsPerSec)" "$(py p50ms)" "$(py p99ms)" "$(py errors)"
	printf '| HTTP `POST /sql`, query cache hits (`Cache-Control: max-age=3600`) | %.0f | %.2f | %.2f | | %s |\n' \
		"$(py requestsPerSec "$cached_line")" "$(py p50ms "$cached_line")" "$(py p99ms "$cached_line")" "$(py errors "$cached_line")"
	printf '| TCP pgbench `-M simple` | %.0f | | | %s | |\n' "$(echo "$simple" | tps)" "$(echo "$simple" | lat)"
	printf '| TCP pgbench `-M extended` | %.0f | | | %s | |\n' "$(echo "$extended" | tps)" "$(echo "$extended" | lat)"
	echo
	echo "pgbench reports average latency only; its tps counts one statement per transaction, like one HTTP request."
} >"$OUT"
cat "$OUT"
