#!/usr/bin/env bash
# edgepool benchmark: the same pgbench workloads against direct PostgreSQL 15, PgBouncer 1.18 and the
# edgepool pooler, in one run, on one machine, reported side by side as ratios; plus the memory an
# idle client costs PgBouncer and edgepool. See docs/benchmarks.md.
#
# Usage: bench/run.sh            (or `make bench`)
# Env:
#   BENCH_SECONDS=15            duration of each pgbench run
#   BENCH_SCALE=10              pgbench scale factor (-s)
#   BENCH_TARGETS="direct pgbouncer edgepool"
#   BENCH_WORKLOADS="select-simple select-extended select-prepared tpcb connect"
#   IDLE_CLIENTS=10000          idle client connections for the memory test (0 skips it)
#   BENCH_HTTP=1                edgepool's HTTP SQL endpoint vs its TCP listener (0 skips it)
#   BENCH_PRISMA=1              Prisma 7 findUnique via accelerateUrl vs adapter-pg (bench/prisma/run.sh; 0 skips it)
#   POOL_SIZE=20                upstream connections of PgBouncer and edgepool
#   BENCH_OUT=bench/results/latest.md
#   BENCH_KEEP=1                keep the temporary directory (data, configs, logs) after the run
#
# Needs root (installs packages, drops to the postgres user for initdb/postgres/pgbouncer).
# Exit status: 0 when every target ran every workload cleanly; 1 otherwise (the report is still
# written, with the failures in it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

BENCH_SECONDS="${BENCH_SECONDS:-15}"
BENCH_SCALE="${BENCH_SCALE:-10}"
BENCH_TARGETS="${BENCH_TARGETS:-direct pgbouncer edgepool}"
BENCH_WORKLOADS="${BENCH_WORKLOADS:-select-simple select-extended select-prepared tpcb connect}"
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
POOL_SIZE="${POOL_SIZE:-20}"
BENCH_OUT="${BENCH_OUT:-bench/results/latest.md}"
BENCH_HTTP="${BENCH_HTTP:-1}"
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
DB=bench
DB_USER=bench

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and runs PostgreSQL as the postgres user)"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------------
# Dependencies (idempotent).
install_deps() {
	local missing=()
	[[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" ]] || missing+=("postgresql-$PG_VERSION")
	command -v pgbench >/dev/null || missing+=("postgresql-client-$PG_VERSION")
	command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}
install_deps
PGBOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
# The Debian packages start services; this benchmark runs its own throwaway instances only.

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped on any exit (success, failure, Ctrl-C).
tmp="$(mktemp -d /tmp/edgepool-bench.XXXXXX)"
chmod 755 "$tmp"
declare -a pids=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	# Give them a moment, then insist.
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.5
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	if [[ "${BENCH_KEEP:-}" == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# File descriptors: 10,000 idle clients need as many sockets in the pooler and in the client
# program. Raise the soft limit to the hard one (and the hard one if we may); children inherit it.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
if ((IDLE_CLIENTS > 0)) && (($(ulimit -n) < IDLE_CLIENTS + 200)); then
	log "open-file limit $(ulimit -n) is below IDLE_CLIENTS+200; lowering IDLE_CLIENTS"
	IDLE_CLIENTS=$(($(ulimit -n) - 200))
fi

# free_port VAR: store in VAR a free loopback port below 32768 (the Linux ephemeral range starts
# there), never one handed out before in this run.
used_ports=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		[[ "$used_ports" == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_port() { # port timeout_s pid
	local deadline=$((SECONDS + $2))
	while ((SECONDS < deadline)); do
		kill -0 "$3" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# A command prefix, not a function: `"${as_postgres[@]}" cmd &` must leave $! = the server's pid
# (setpriv execs), so that cleanup and the RSS measurement reach the right process.
as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# ---------------------------------------------------------------------------------------------
# PostgreSQL 15: throwaway cluster, scram-sha-256, loopback only.
free_port PG_PORT
PG_PASSWORD="bench-$RANDOM$RANDOM"
export PGHOST=127.0.0.1 PGCONNECT_TIMEOUT=10
log "starting PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT ($tmp)"
mkdir -p "$tmp/pg" "$tmp/run"
printf '%s\n' "$PG_PASSWORD" >"$tmp/pwfile"
chown -R postgres:postgres "$tmp/pg" "$tmp/run" "$tmp/pwfile"
"${as_postgres[@]}" "$PG_BIN/initdb" -D "$tmp/pg/data" -U postgres --pwfile="$tmp/pwfile" \
	--auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log" >&2; die "initdb failed"; }
# Durability off: the benchmark measures the poolers, not the disk (same for every target).
"${as_postgres[@]}" "$PG_BIN/postgres" -D "$tmp/pg/data" \
	-c listen_addresses=127.0.0.1 -c port="$PG_PORT" -c unix_socket_directories="$tmp/run" \
	-c max_connections=400 -c shared_buffers=256MB -c password_encryption=scram-sha-256 \
	-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
	-c log_min_messages=warning -c logging_collector=off \
	>"$tmp/postgres.log" 2>&1 &
pids+=($!)
pg_pid=$!
wait_port "$PG_PORT" 30 "$pg_pid" || { tail -20 "$tmp/postgres.log" >&2; die "PostgreSQL did not start"; }

psql_admin() { PGPASSWORD="$PG_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -U postgres "$@"; }
until psql_admin -d postgres -c 'select 1' >/dev/null 2>&1; do
	kill -0 "$pg_pid" 2>/dev/null || die "PostgreSQL exited"
	sleep 0.2
done
psql_admin -d postgres -c "create role $DB_USER login password '$PG_PASSWORD'" \
	-c "create database $DB owner $DB_USER"
psql_direct() { PGPASSWORD="$PG_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -U "$DB_USER" -d "$DB" "$@"; }

log "pgbench -i -s $BENCH_SCALE"
PGPASSWORD="$PG_PASSWORD" pgbench -i -q -s "$BENCH_SCALE" -p "$PG_PORT" -U "$DB_USER" "$DB" \
	>"$tmp/pgbench-init.log" 2>&1 || { cat "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }

# ---------------------------------------------------------------------------------------------
# PgBouncer 1.18, transaction mode. The userlist holds the role's SCRAM secret (as pg_authid
# does), so client auth is SCRAM without the plaintext anywhere and PgBouncer passes it upstream.
has_target() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }

declare -A port=() pass=() user=() status=()
port[direct]=$PG_PORT pass[direct]=$PG_PASSWORD user[direct]=$DB_USER status[direct]=ok

if has_target pgbouncer; then
	free_port PB_PORT
	log "starting PgBouncer on 127.0.0.1:$PB_PORT"
	secret="$(psql_admin -d postgres -At -c "select rolpassword from pg_authid where rolname = '$DB_USER'")"
	mkdir -p "$tmp/pgbouncer"
	printf '"%s" "%s"\n' "$DB_USER" "$secret" >"$tmp/pgbouncer/userlist.txt"
	cat >"$tmp/pgbouncer/pgbouncer.ini" <<-EOF
		[databases]
		$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB
		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $PB_PORT
		unix_socket_dir =
		auth_type = scram-sha-256
		auth_file = $tmp/pgbouncer/userlist.txt
		pool_mode = transaction
		default_pool_size = $POOL_SIZE
		max_db_connections = $POOL_SIZE
		max_client_conn = $((IDLE_CLIENTS + 500))
		logfile = $tmp/pgbouncer/pgbouncer.log
		log_connections = 0
		log_disconnections = 0
		log_pooler_errors = 1
	EOF
	chown -R postgres:postgres "$tmp/pgbouncer"
	chmod 600 "$tmp/pgbouncer/userlist.txt"
	"${as_postgres[@]}" "$PGBOUNCER" "$tmp/pgbouncer/pgbouncer.ini" >"$tmp/pgbouncer/stdout.log" 2>&1 &
	pids+=($!)
	pb_pid=$!
	if wait_port "$PB_PORT" 20 "$pb_pid"; then
		port[pgbouncer]=$PB_PORT pass[pgbouncer]=$PG_PASSWORD user[pgbouncer]=$DB_USER status[pgbouncer]=ok
	else
		status[pgbouncer]="PgBouncer did not start: $(tail -3 "$tmp/pgbouncer/"*.log | tr '\n' ' ')"
		log "${status[pgbouncer]}"
	fi
fi

# ---------------------------------------------------------------------------------------------
# edgepool pooler: built from this checkout, config rendered from pooler/config's own types.
if has_target edgepool; then
	free_port EP_PORT; free_port EP_HTTP; free_port EP_ADMIN
	log "building edgepool and starting the pooler on 127.0.0.1:$EP_PORT"
	mkdir -p "$tmp/edgepool" bin
	status[edgepool]=ok
	if ! go build -o bin/edgepool ./cmd/edgepool 2>"$tmp/edgepool/build.log"; then
		status[edgepool]="build failed: $(head -c 300 "$tmp/edgepool/build.log" | tr '\n' ' ')"
	elif ! EP_KEY="$(UPSTREAM_PASSWORD="$PG_PASSWORD" go run ./bench/poolerconfig \
		-out "$tmp/edgepool/pooler.json" -listen "127.0.0.1:$EP_PORT" -http "127.0.0.1:$EP_HTTP" \
		-admin "127.0.0.1:$EP_ADMIN" -db "$DB" -upstream-port "$PG_PORT" -upstream-db "$DB" \
		-upstream-user "$DB_USER" -key-name "$DB_USER" -pool-size "$POOL_SIZE" \
		-max-clients $((IDLE_CLIENTS + 500)) 2>"$tmp/edgepool/config.log")"; then
		status[edgepool]="config generation failed: $(head -c 300 "$tmp/edgepool/config.log" | tr '\n' ' ')"
	else
		bin/edgepool pooler --config "$tmp/edgepool/pooler.json" >"$tmp/edgepool/pooler.log" 2>&1 &
		pids+=($!)
		ep_pid=$!
		if ! wait_port "$EP_PORT" 20 "$ep_pid"; then
			status[edgepool]="pooler did not start: $(tail -c 400 "$tmp/edgepool/pooler.log" | tr '\n' ' ')"
		elif ! out="$(PGPASSWORD="$EP_KEY" psql -X -At -p "$EP_PORT" -U "$DB_USER" -d "$DB" \
			-c 'select count(*) from pgbench_branches' 2>&1)" || [[ "$out" != "$BENCH_SCALE" ]]; then
			status[edgepool]="pooler started but a query through it failed: $(tr '\n' ' ' <<<"$out" | head -c 300)"
		else
			port[edgepool]=$EP_PORT pass[edgepool]=$EP_KEY user[edgepool]=$DB_USER
		fi
	fi
	if [[ "${status[edgepool]}" != ok ]]; then
		printf '\n!!!!! EDGEPOOL FAILED: %s\n!!!!! its column reports the failure; no numbers are made up.\n\n' \
			"${status[edgepool]}" >&2
	fi
fi

# ---------------------------------------------------------------------------------------------
failures=0

# Idle-client memory: RSS growth of the pooler process per authenticated idle client, measured
# first, on freshly started poolers, so no earlier workload has pre-grown their allocators.
declare -A idle=()
if ((IDLE_CLIENTS > 0)); then
	go build -o "$tmp/idleclients" ./bench/idleclients
	for t in pgbouncer edgepool; do
		has_target "$t" || continue
		if [[ "${status[$t]}" != ok ]]; then
			idle[$t]="FAILED (not running)"
			continue
		fi
		pid_var=pb_pid extra=()
		if [[ $t == edgepool ]]; then
			pid_var=ep_pid extra=(-metrics "http://127.0.0.1:$EP_ADMIN/metrics")
		fi
		log "idle clients: $IDLE_CLIENTS to $t"
		line=""
		if line="$(PGPASSWORD="${pass[$t]}" "$tmp/idleclients" -port "${port[$t]}" -user "${user[$t]}" \
			-db "$DB" -n "$IDLE_CLIENTS" -pid "${!pid_var}" "${extra[@]}" 2>"$tmp/idle-$t.log" | grep '^RESULT')"; then
			idle[$t]="$line"
		else
			failures=$((failures + 1))
			idle[$t]="FAILED: ${line:-$(tail -2 "$tmp/idle-$t.log" | tr '\n' ' ')}"
		fi
		log "$t: ${idle[$t]}"
	done
fi

# ---------------------------------------------------------------------------------------------
# Workloads. Every run starts from the same database state (the vacuum/truncate pgbench itself
# would do, run once directly, then pgbench -n so no pooler sees maintenance commands).
declare -A wl_args=(
	[select-simple]="-S -M simple -c 100 -j 2"
	[select-extended]="-S -M extended -c 100 -j 2"
	[select-prepared]="-S -M prepared -c 100 -j 2"
	[tpcb]="-M simple -c 50 -j 2"
	[connect]="-S -M simple -C -c 50 -j 2"
)
declare -A wl_title=(
	[select-simple]="select-only, simple protocol, 100 clients"
	[select-extended]="select-only, extended protocol, 100 clients"
	[select-prepared]="select-only, prepared statements, 100 clients"
	[tpcb]="TPC-B-like (read/write), 50 clients"
	[connect]="select-only, new connection per transaction, 50 clients"
)
declare -A tps=() lat=() note=()

reset_db() {
	psql_direct -c 'vacuum pgbench_branches' -c 'vacuum pgbench_tellers' -c 'truncate pgbench_history' >/dev/null
}

run_pgbench() { # workload target
	local wl=$1 t=$2 logf="$tmp/pgbench-$1-$2.log" rc=0
	if [[ "${status[$t]:-}" != ok ]]; then
		note[$wl,$t]="FAILED (not running)"
		return
	fi
	if [[ $t == pgbouncer && $wl == select-prepared ]]; then
		note[$wl,$t]="n/a¹"
		return
	fi
	reset_db
	# shellcheck disable=SC2086 # the workload's argument list is a word list
	PGPASSWORD="${pass[$t]}" timeout $((BENCH_SECONDS + 120)) \
		pgbench -n ${wl_args[$wl]} -T "$BENCH_SECONDS" -p "${port[$t]}" -U "${user[$t]}" "$DB" \
		>"$logf" 2>&1 || rc=$?
	local t_tps t_lat t_failed
	t_tps="$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$logf" | head -1)"
	t_lat="$(sed -nE 's/^latency average = ([0-9.]+) ms.*/\1/p' "$logf" | head -1)"
	t_failed="$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$logf" | head -1)"
	local t_done
	t_done="$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$logf" | head -1)"
	if ((rc != 0)) || [[ -z "$t_tps" || "${t_done:-0}" == 0 ]] || [[ -n "$t_failed" && "$t_failed" != 0 ]]; then
		failures=$((failures + 1))
		local why="exit $rc"
		[[ "${t_done:-0}" == 0 ]] && why+=", no transaction completed"
		[[ -n "$t_failed" && "$t_failed" != 0 ]] && why+=", $t_failed failed transactions"
		note[$wl,$t]="FAILED ($why)"
		log "$wl on $t failed; last lines of its log:"
		tail -5 "$logf" | sed 's/^/   /' >&2
		mkdir -p bench/results/logs
		cp "$logf" "bench/results/logs/"
		return
	fi
	# The writes must have reached PostgreSQL: every TPC-B-like transaction inserts one history row
	# (a few more may land from transactions in flight when the clock ran out).
	if [[ $wl == tpcb ]]; then
		local rows clients
		rows="$(psql_direct -At -c 'select count(*) from pgbench_history')"
		clients="$(sed -nE 's/^number of clients: ([0-9]+).*/\1/p' "$logf")"
		if ((rows < t_done || rows > t_done + clients)); then
			failures=$((failures + 1))
			note[$wl,$t]="FAILED (pgbench counted $t_done transactions, PostgreSQL has $rows history rows)"
			log "$wl on $t: ${note[$wl,$t]}"
			return
		fi
	fi
	tps[$wl,$t]=$t_tps
	lat[$wl,$t]=$t_lat
	log "$(printf '%-16s %-9s %10.0f tps  %7.3f ms' "$wl" "$t" "$t_tps" "$t_lat")"
}

log "warm-up (direct, unrecorded)"
reset_db
PGPASSWORD="$PG_PASSWORD" pgbench -n -S -c 10 -j 2 -T 3 -p "$PG_PORT" -U "$DB_USER" "$DB" >/dev/null 2>&1 || true

# Interleave targets within each workload so drift on a shared machine hits all of them alike.
for wl in $BENCH_WORKLOADS; do
	[[ -n "${wl_args[$wl]:-}" ]] || die "unknown workload $wl"
	for t in direct pgbouncer edgepool; do
		has_target "$t" || continue
		run_pgbench "$wl" "$t"
	done
done

# ---------------------------------------------------------------------------------------------
# edgepool's HTTP SQL endpoint (POST /sql, what the Neon serverless driver's neon() uses) next to
# its TCP listener: the same one-row select at 50 concurrent clients, latency percentiles for both
# (pgbench's per-transaction log gives the TCP ones).
declare -A httpres=()
percentiles() { # file of latencies in microseconds -> "p50 p90 p99" in ms
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "- - -"; exit }
		split("50 90 99", q, " ")
		for (i = 1; i <= 3; i++) { k = int((q[i] / 100) * NR + 0.5); if (k < 1) k = 1; if (k > NR) k = NR; printf "%.2f ", v[k] / 1000 }
		print ""
	}'
}
if [[ "$BENCH_HTTP" == 1 ]] && has_target edgepool; then
	if [[ "${status[edgepool]}" != ok ]]; then
		httpres[error]="FAILED (edgepool not running)"
	else
		log "HTTP SQL endpoint: 50 concurrent POST /sql"
		reset_db
		hq="select abalance from pgbench_accounts where aid = 1"
		if out="$(EDGEPOOL_CONN="postgres://$DB_USER:$EP_KEY@127.0.0.1:$EP_PORT/$DB" timeout $((BENCH_SECONDS + 120)) \
			go run ./bench/http -url "http://127.0.0.1:$EP_HTTP/sql" -c 50 -d "${BENCH_SECONDS}s" \
			-query "$hq" -json 2>"$tmp/http.log")" && [[ "$out" == *requestsPerSec* ]]; then
			for k in requestsPerSec p50ms p90ms p99ms errors requests; do
				httpres[$k]="$(sed -nE "s/.*\"$k\":(-?[0-9.e+]+).*/\\1/p" <<<"$out")"
			done
			log "$(printf 'http-select      edgepool %10.0f req/s  p50 %.2f ms  p99 %.2f ms  %s errors' \
				"${httpres[requestsPerSec]}" "${httpres[p50ms]}" "${httpres[p99ms]}" "${httpres[errors]}")"
			((${httpres[errors]:-0} == 0)) || failures=$((failures + 1))
		else
			failures=$((failures + 1))
			httpres[error]="FAILED: $(tail -c 300 "$tmp/http.log" | tr '\n' ' ')"
			log "http-select on edgepool ${httpres[error]}"
		fi
		log "TCP for comparison: pgbench -S -c 50 through edgepool, per-transaction log"
		reset_db
		mkdir -p "$tmp/pgblog"
		if (cd "$tmp/pgblog" && PGPASSWORD="$EP_KEY" timeout $((BENCH_SECONDS + 120)) \
			pgbench -n -S -M simple -c 50 -j 2 -T "$BENCH_SECONDS" -l --log-prefix=tcp \
			-p "$EP_PORT" -U "$DB_USER" "$DB" >"$tmp/pgbench-tcp50.log" 2>&1); then
			httpres[tcp_tps]="$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$tmp/pgbench-tcp50.log" | head -1)"
			cat "$tmp/pgblog"/tcp.* | awk '{ print $3 }' >"$tmp/tcp-latencies"
			read -r httpres[tcp_p50] httpres[tcp_p90] httpres[tcp_p99] < <(percentiles "$tmp/tcp-latencies")
		else
			failures=$((failures + 1))
			httpres[tcp_error]="FAILED: $(tail -3 "$tmp/pgbench-tcp50.log" | tr '\n' ' ')"
		fi
	fi
fi

# ---------------------------------------------------------------------------------------------
# Prisma 7 through edgepool: accelerateUrl vs adapter-pg (self-contained: bench/prisma/run.sh).
if [[ "${BENCH_PRISMA:-1}" == 1 ]] && has_target edgepool; then
	if [[ "${status[edgepool]}" != ok ]]; then
		printf '\n## Prisma 7 through edgepool\n\nFAILED (edgepool not running)\n' >"$tmp/prisma.md"
	else
		reset_db
		EP_HTTP="127.0.0.1:$EP_HTTP" EP_PORT=$EP_PORT EP_KEY=$EP_KEY EP_PID=$ep_pid DB=$DB DB_USER=$DB_USER BENCH_SECONDS=$BENCH_SECONDS \
			BENCH_SCALE=$BENCH_SCALE bench/prisma/run.sh >"$tmp/prisma.md" || failures=$((failures + 1))
	fi
fi

# ---------------------------------------------------------------------------------------------
# Report.
ratio() { # a b -> a/b with 2 decimals, or — when either is missing
	if [[ -n "${1:-}" && -n "${2:-}" ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else printf '—'; fi
}
cell() { # workload target
	if [[ -n "${tps[$1,$2]:-}" ]]; then
		printf '%.0f (%.2f ms)' "${tps[$1,$2]}" "${lat[$1,$2]}"
	else
		printf '%s' "${note[$1,$2]:-—}"
	fi
}
field() { sed -nE "s/.* $2=(-?[0-9.]+).*/\\1/p" <<<"$1"; }

pg_ver="$("$PG_BIN/postgres" --version | awk '{print $3}')"
pb_ver="$("$PGBOUNCER" --version | head -1 | awk '{print $2}')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=""
git diff --quiet HEAD -- pooler cmd 2>/dev/null || dirty=" (with uncommitted pooler/cmd changes)"

report="$tmp/report.md"
{
	echo "# edgepool benchmark results"
	echo
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit \`$commit\`$dirty"
	echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average at start $load_at_start, at end $(cut -d' ' -f1-3 /proc/loadavg); everything on loopback"
	echo "- PostgreSQL $pg_ver (fsync/synchronous_commit/full_page_writes off, max_connections 400), PgBouncer $pb_ver, edgepool \`bin/edgepool pooler\`"
	echo "- Pools: transaction mode, $POOL_SIZE upstream connections for PgBouncer and edgepool; SCRAM-SHA-256 auth everywhere"
	echo "- Each cell: pgbench tps (average latency), \`-T $BENCH_SECONDS\`, scale $BENCH_SCALE; command: \`BENCH_SECONDS=$BENCH_SECONDS make bench\`"
	load_at_end="$(cut -d' ' -f1 /proc/loadavg)"
	if awk -v a="${load_at_start%% *}" -v b="$load_at_end" -v n="$(nproc)" 'BEGIN { exit !(a > n || b > n) }'; then
		echo "- **Busy machine**: the load average at start or end exceeded the CPU count, so other work competed"
		echo "  with all three targets; absolute numbers are depressed and noisy, compare ratios only."
	fi
	echo
	echo "| workload | pgbench flags | direct | PgBouncer | edgepool | edgepool/direct | edgepool/PgBouncer |"
	echo "|---|---|---:|---:|---:|---:|---:|"
	for wl in $BENCH_WORKLOADS; do
		printf '| %s | `%s` | %s | %s | %s | %s | %s |\n' "${wl_title[$wl]}" "${wl_args[$wl]}" \
			"$(cell "$wl" direct)" "$(cell "$wl" pgbouncer)" "$(cell "$wl" edgepool)" \
			"$(ratio "${tps[$wl,edgepool]:-}" "${tps[$wl,direct]:-}")" \
			"$(ratio "${tps[$wl,edgepool]:-}" "${tps[$wl,pgbouncer]:-}")"
	done
	echo
	echo "Ratios are of tps (above 1: edgepool is faster)."
	echo "¹ PgBouncer 1.18 cannot run \`-M prepared\` in transaction mode (protocol-level prepared statements arrived in 1.21)."
	if ((IDLE_CLIENTS > 0)); then
		echo
		echo "## Idle clients: $IDLE_CLIENTS connected, authenticated, idle"
		echo
		echo "| pooler | RSS before | RSS after | RSS per idle client | of which Go heap / stacks | goroutines per client |"
		echo "|---|---:|---:|---:|---:|---:|"
		for t in pgbouncer edgepool; do
			has_target "$t" || continue
			r="${idle[$t]:-}"
			if [[ "$r" == RESULT* ]]; then
				gomem="" gor=""
				if [[ "$r" == *heap_inuse_per_client_bytes=* ]]; then
					gomem="$(field "$r" heap_inuse_per_client_bytes) / $(field "$r" stack_inuse_per_client_bytes) bytes"
					gor="$(field "$r" goroutines_per_client)"
				fi
				printf '| %s | %s KiB | %s KiB | %s bytes | %s | %s |\n' "$t" "$(field "$r" rss_before_kb)" \
					"$(field "$r" rss_after_kb)" "$(field "$r" per_client_bytes)" "$gomem" "$gor"
			else
				printf '| %s | %s | | | | |\n' "$t" "${r:-not measured}"
			fi
		done
		if [[ "${idle[pgbouncer]:-}" == RESULT* && "${idle[edgepool]:-}" == RESULT* ]]; then
			echo
			echo "edgepool/PgBouncer bytes per idle client: $(ratio "$(field "${idle[edgepool]}" per_client_bytes)" "$(field "${idle[pgbouncer]}" per_client_bytes)")"
		fi
	fi
	if [[ "$BENCH_HTTP" == 1 ]] && has_target edgepool; then
		echo
		echo "## edgepool over HTTP (POST /sql) and TCP: one-row select, 50 concurrent clients"
		echo
		echo "| transport | requests or transactions/s | p50 | p90 | p99 |"
		echo "|---|---:|---:|---:|---:|"
		if [[ -n "${httpres[requestsPerSec]:-}" ]]; then
			printf '| HTTP `POST /sql` (`bench/http -c 50`, keep-alive, %s errors) | %.0f | %.2f ms | %.2f ms | %.2f ms |\n' \
				"${httpres[errors]}" "${httpres[requestsPerSec]}" "${httpres[p50ms]}" "${httpres[p90ms]}" "${httpres[p99ms]}"
		else
			printf '| HTTP `POST /sql` | %s | | | |\n' "${httpres[error]:-not measured}"
		fi
		if [[ -n "${httpres[tcp_tps]:-}" ]]; then
			printf '| TCP (`pgbench -S -M simple -c 50 -j 2`) | %.0f | %s ms | %s ms | %s ms |\n' \
				"${httpres[tcp_tps]}" "${httpres[tcp_p50]}" "${httpres[tcp_p90]}" "${httpres[tcp_p99]}"
		else
			printf '| TCP | %s | | | |\n' "${httpres[tcp_error]:-${httpres[error]:-not measured}}"
		fi
		echo
		echo "HTTP query: \`select abalance from pgbench_accounts where aid = 1\`; pgbench -S selects one row by random aid."
	fi
	[[ -f "$tmp/prisma.md" ]] && cat "$tmp/prisma.md"
	for t in pgbouncer edgepool; do
		if has_target "$t" && [[ "${status[$t]}" != ok ]]; then
			echo
			echo "**$t FAILED:** ${status[$t]}"
		fi
	done
} >"$report"

mkdir -p "$(dirname "$BENCH_OUT")"
cp "$report" "$BENCH_OUT"
echo
cat "$report"
echo
log "written to $BENCH_OUT"

for t in $BENCH_TARGETS; do
	[[ "${status[$t]:-ok}" == ok ]] || failures=$((failures + 1))
done
((failures == 0)) || die "$failures failure(s); see above"
