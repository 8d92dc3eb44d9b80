#!/usr/bin/env bash
# edgepool benchmark: the same pgbench workloads against direct PostgreSQL 15, PgBouncer 1.18 and the
# edgepool pooler, interleaved in one run on one machine, repeated, reported as medians and ratios,
# with p99 latency, the poolers' CPU time and system calls per transaction, a chart, and the memory
# an idle client costs (plain and TLS). See docs/benchmarks.md.
#
# Usage: bench/run.sh            (or `make bench`)
# Env:
#   BENCH_SECONDS=10            duration of each pgbench run (1,000-client runs get 20 s more: connecting
#                               1,000 SCRAM clients eats into pgbench's clock)
#   BENCH_ROUNDS=3              rounds; each runs every workload on every target; medians are reported
#   BENCH_SCALE=10              pgbench scale factor (-s)
#   BENCH_TARGETS="direct pgbouncer edgepool"   add model-goroutine and/or model-loop for the lab relays of
#                               bench/relaymodels (what the concurrency model alone costs; plain workloads
#                               except select-prepared and connect; a second table in the report)
#   BENCH_WORKLOADS="select-simple-20 select-simple-100 select-simple-1000 select-simple-tls-100
#                    select-simple-tls-1000 select-extended-100 select-prepared-100 tpcb-50 connect-50"
#   IDLE_CLIENTS=10000          idle client connections for the memory test (0 skips it)
#   BENCH_SYSCALLS=1            strace -c of each pooler under pgbench -S -c 100 (0 skips it)
#   BENCH_HTTP=1                edgepool's HTTP SQL endpoint vs its TCP listener (0 skips it)
#   BENCH_PRISMA=1              Prisma 7 findUnique via accelerateUrl vs adapter-pg (bench/prisma/run.sh; 0 skips it)
#   POOL_SIZE=20                upstream connections of PgBouncer and edgepool
#   PGBOUNCER=path              the PgBouncer binary to compare with (default: the Debian package's); from 1.21 on
#                               it runs -M prepared too (max_prepared_statements = 200)
#   BENCH_OUT=bench/results/latest.md   (the chart goes next to it as .svg, the raw runs as -runs.tsv)
#   BENCH_KEEP=1                keep the temporary directory (data, configs, logs) after the run
#
# Needs root (installs packages, drops to the postgres user for initdb/postgres/pgbouncer).
# Exit status: 0 when every target ran every workload cleanly; 1 otherwise (the report is still
# written, with the failures in it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The knobs set for this run (besides seconds and rounds), for the report's command line.
knobs=""
for v in BENCH_TARGETS BENCH_WORKLOADS BENCH_SCALE POOL_SIZE IDLE_CLIENTS BENCH_SYSCALLS BENCH_PROFILE BENCH_HTTP \
	BENCH_PRISMA PGBOUNCER BENCH_OUT; do
	if [[ -n "${!v+x}" ]]; then knobs+="$v=\"${!v}\" "; fi
done

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_SCALE="${BENCH_SCALE:-10}"
BENCH_TARGETS="${BENCH_TARGETS:-direct pgbouncer edgepool}"
BENCH_WORKLOADS="${BENCH_WORKLOADS:-select-simple-20 select-simple-100 select-simple-1000 select-simple-tls-100 select-simple-tls-1000 select-extended-100 select-prepared-100 tpcb-50 connect-50}"
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
POOL_SIZE="${POOL_SIZE:-20}"
BENCH_OUT="${BENCH_OUT:-bench/results/latest.md}"
BENCH_HTTP="${BENCH_HTTP:-1}"
BENCH_SYSCALLS="${BENCH_SYSCALLS:-1}"
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
DB=bench
DB_USER=bench

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and runs PostgreSQL as the postgres user)"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started_at=$SECONDS

# ---------------------------------------------------------------------------------------------
# Dependencies (idempotent).
install_deps() {
	local missing=()
	[[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" ]] || missing+=("postgresql-$PG_VERSION")
	command -v pgbench >/dev/null || missing+=("postgresql-client-$PG_VERSION")
	command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v curl >/dev/null || missing+=(curl)
	if [[ "$BENCH_SYSCALLS" == 1 ]] && ! command -v strace >/dev/null; then missing+=(strace); fi
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}
install_deps
PGBOUNCER="${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}"
[[ -x "$PGBOUNCER" ]] || die "PGBOUNCER=$PGBOUNCER is not an executable"
pb_ver="$("$PGBOUNCER" --version | head -1 | awk '{print $2}')"
# Protocol-level prepared statements in transaction mode arrived in PgBouncer 1.21.
pb_prepared=0
if [[ "$(printf '%s\n' 1.21 "$pb_ver" | sort -V | head -1)" == 1.21 ]]; then pb_prepared=1; fi
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
# One certificate for every TLS endpoint (PostgreSQL, PgBouncer, edgepool); clients use
# sslmode=require, so it is not verified, only used.
mkdir -p "$tmp/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-keyout "$tmp/tls/server.key" -out "$tmp/tls/server.crt" >/dev/null 2>&1 || die "openssl failed"
chown -R postgres:postgres "$tmp/tls"
chmod 600 "$tmp/tls/server.key"

# ---------------------------------------------------------------------------------------------
# PostgreSQL 15: throwaway cluster, scram-sha-256, loopback only, TLS available.
free_port PG_PORT
PG_PASSWORD="bench-$RANDOM$RANDOM"
export PGHOST=127.0.0.1 PGCONNECT_TIMEOUT=30 PGSSLMODE=disable
log "starting PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT ($tmp)"
mkdir -p "$tmp/pg" "$tmp/run"
printf '%s\n' "$PG_PASSWORD" >"$tmp/pwfile"
chown -R postgres:postgres "$tmp/pg" "$tmp/run" "$tmp/pwfile"
"${as_postgres[@]}" "$PG_BIN/initdb" -D "$tmp/pg/data" -U postgres --pwfile="$tmp/pwfile" \
	--auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log" >&2; die "initdb failed"; }
# Durability off: the benchmark measures the poolers, not the disk (same for every target).
# max_connections covers direct runs with 1,000 clients.
"${as_postgres[@]}" "$PG_BIN/postgres" -D "$tmp/pg/data" \
	-c listen_addresses=127.0.0.1 -c port="$PG_PORT" -c unix_socket_directories="$tmp/run" \
	-c max_connections=1100 -c shared_buffers=256MB -c password_encryption=scram-sha-256 \
	-c ssl=on -c ssl_cert_file="$tmp/tls/server.crt" -c ssl_key_file="$tmp/tls/server.key" \
	-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
	-c log_min_messages=warning -c logging_collector=off \
	>"$tmp/postgres.log" 2>&1 &
pids+=($!)
pg_pid=$!
wait_port "$PG_PORT" 30 "$pg_pid" || { tail -20 "$tmp/postgres.log" >&2; die "PostgreSQL did not start"; }

psql_admin() { PGPASSWORD="$PG_PASSWORD" PGSSLMODE=disable psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -U postgres "$@"; }
until psql_admin -d postgres -c 'select 1' >/dev/null 2>&1; do
	kill -0 "$pg_pid" 2>/dev/null || die "PostgreSQL exited"
	sleep 0.2
done
psql_admin -d postgres -c "create role $DB_USER login password '$PG_PASSWORD'" \
	-c "create database $DB owner $DB_USER"
psql_direct() { PGPASSWORD="$PG_PASSWORD" PGSSLMODE=disable psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -U "$DB_USER" -d "$DB" "$@"; }

log "pgbench -i -s $BENCH_SCALE"
PGPASSWORD="$PG_PASSWORD" PGSSLMODE=disable pgbench -i -q -s "$BENCH_SCALE" -p "$PG_PORT" -U "$DB_USER" "$DB" \
	>"$tmp/pgbench-init.log" 2>&1 || { cat "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }

has_target() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }

# port/pass/user per target and transport ("plain" or "tls"); status per target.
declare -A port=() pass=() user=() status=() proc=()
port[direct,plain]=$PG_PORT port[direct,tls]=$PG_PORT user[direct]=$DB_USER status[direct]=ok
pass[direct,plain]=$PG_PASSWORD pass[direct,tls]=$PG_PASSWORD

# ---------------------------------------------------------------------------------------------
# PgBouncer 1.18, transaction mode, two instances: plain clients, and TLS clients
# (client_tls_sslmode = require, the same certificate). The userlist holds the role's SCRAM
# secret (as pg_authid does), so client auth is SCRAM without the plaintext anywhere and PgBouncer
# passes it upstream. Towards PostgreSQL both use plain TCP, as edgepool does.
start_pgbouncer() { # name port tls(0|1) -> sets pid[name]; returns 1 if it did not start
	local name=$1 p=$2 tls=$3 dir="$tmp/$1"
	mkdir -p "$dir"
	printf '"%s" "%s"\n' "$DB_USER" "$secret" >"$dir/userlist.txt"
	{
		echo "[databases]"
		echo "$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB"
		echo "[pgbouncer]"
		echo "listen_addr = 127.0.0.1"
		echo "listen_port = $p"
		echo "unix_socket_dir ="
		echo "auth_type = scram-sha-256"
		echo "auth_file = $dir/userlist.txt"
		echo "pool_mode = transaction"
		echo "default_pool_size = $POOL_SIZE"
		echo "max_db_connections = $POOL_SIZE"
		echo "max_client_conn = $((IDLE_CLIENTS + 1500))"
		echo "server_tls_sslmode = disable"
		echo "logfile = $dir/pgbouncer.log"
		echo "log_connections = 0"
		echo "log_disconnections = 0"
		echo "log_pooler_errors = 1"
		if ((pb_prepared)); then echo "max_prepared_statements = 200"; fi
		if ((tls)); then
			echo "client_tls_sslmode = require"
			echo "client_tls_key_file = $tmp/tls/server.key"
			echo "client_tls_cert_file = $tmp/tls/server.crt"
		fi
	} >"$dir/pgbouncer.ini"
	chown -R postgres:postgres "$dir"
	chmod 600 "$dir/userlist.txt"
	"${as_postgres[@]}" "$PGBOUNCER" "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
	pids+=($!)
	proc[$name]=$!
	wait_port "$p" 20 "${proc[$name]}"
}
if has_target pgbouncer; then
	free_port PB_PORT
	free_port PB_TLS_PORT
	log "starting PgBouncer on 127.0.0.1:$PB_PORT (plain) and :$PB_TLS_PORT (TLS)"
	secret="$(psql_admin -d postgres -At -c "select rolpassword from pg_authid where rolname = '$DB_USER'")"
	status[pgbouncer]=ok
	for inst in pgbouncer:$PB_PORT:0 pgbouncer-tls:$PB_TLS_PORT:1; do
		IFS=: read -r name p tls <<<"$inst"
		if ! start_pgbouncer "$name" "$p" "$tls"; then
			status[pgbouncer]="PgBouncer ($name) did not start: $(tail -3 "$tmp/$name/"*.log | tr '\n' ' ')"
			log "${status[pgbouncer]}"
		fi
	done
	port[pgbouncer,plain]=$PB_PORT port[pgbouncer,tls]=$PB_TLS_PORT user[pgbouncer]=$DB_USER
	pass[pgbouncer,plain]=$PG_PASSWORD pass[pgbouncer,tls]=$PG_PASSWORD
fi

# ---------------------------------------------------------------------------------------------
# edgepool pooler: built from this checkout, config rendered from pooler/config's own types. Two
# instances, as for PgBouncer: plain clients, and TLS clients (SSLRequest answered 'S' with the
# same certificate; the HTTP listener then serves HTTPS, so HTTP and Prisma use the plain one).
start_edgepool() { # name tls(0|1) -> sets EP_PORT EP_HTTP EP_ADMIN EP_KEY proc[name]; returns 1 with status set
	local name=$1 dir="$tmp/$1" tlsflags=()
	free_port EP_PORT; free_port EP_HTTP; free_port EP_ADMIN
	mkdir -p "$dir"
	(($2)) && tlsflags=(-tls-cert "$tmp/tls/server.crt" -tls-key "$tmp/tls/server.key")
	if ! UPSTREAM_PASSWORD="$PG_PASSWORD" "$tmp/poolerconfig" \
		-out "$dir/pooler.json" -key-out "$dir/key" -listen "127.0.0.1:$EP_PORT" -http "127.0.0.1:$EP_HTTP" \
		-admin "127.0.0.1:$EP_ADMIN" -db "$DB" -upstream-port "$PG_PORT" -upstream-db "$DB" \
		-upstream-user "$DB_USER" -key-name "$DB_USER" -pool-size "$POOL_SIZE" "${tlsflags[@]}" \
		-max-clients $((IDLE_CLIENTS + 1500)) >/dev/null 2>"$dir/config.log"; then
		status[edgepool]="config generation failed: $(head -c 300 "$dir/config.log" | tr '\n' ' ')"
		return 1
	fi
	EP_KEY="$(cat "$dir/key")"
	bin/edgepool pooler --config "$dir/pooler.json" >"$dir/pooler.log" 2>&1 &
	pids+=($!)
	proc[$name]=$!
	if ! wait_port "$EP_PORT" 20 "${proc[$name]}"; then
		status[edgepool]="pooler did not start: $(tail -c 400 "$dir/pooler.log" | tr '\n' ' ')"
		return 1
	fi
	local out mode=disable
	(($2)) && mode=require
	if ! out="$(PGPASSWORD="$EP_KEY" PGSSLMODE=$mode psql -X -At -p "$EP_PORT" -U "$DB_USER" -d "$DB" \
		-c 'select count(*) from pgbench_branches' 2>&1)" || [[ "$out" != "$BENCH_SCALE" ]]; then
		status[edgepool]="pooler started but a query through it failed: $(tr '\n' ' ' <<<"$out" | head -c 300)"
		return 1
	fi
}
if has_target edgepool; then
	log "building edgepool and its config tool"
	mkdir -p bin
	status[edgepool]=ok
	if ! go build -o bin/edgepool ./cmd/edgepool 2>"$tmp/build.log" ||
		! go build -o "$tmp/poolerconfig" ./bench/poolerconfig 2>>"$tmp/build.log"; then
		status[edgepool]="build failed: $(head -c 300 "$tmp/build.log" | tr '\n' ' ')"
	elif start_edgepool edgepool-tls 1; then
		EP_TLS_PORT=$EP_PORT EP_TLS_ADMIN=$EP_ADMIN EP_TLS_KEY=$EP_KEY
		if start_edgepool edgepool 0; then
			log "edgepool on 127.0.0.1:$EP_PORT (plain) and :$EP_TLS_PORT (TLS)"
			port[edgepool,plain]=$EP_PORT port[edgepool,tls]=$EP_TLS_PORT user[edgepool]=$DB_USER
			pass[edgepool,plain]=$EP_KEY pass[edgepool,tls]=$EP_TLS_KEY
		fi
	fi
	if [[ "${status[edgepool]}" != ok ]]; then
		printf '\n!!!!! EDGEPOOL FAILED: %s\n!!!!! its column reports the failure; no numbers are made up.\n\n' \
			"${status[edgepool]}" >&2
	fi
fi

# ---------------------------------------------------------------------------------------------
# Relay models (bench/relaymodels), only when BENCH_TARGETS names them: two byte relays without
# authentication or checks that differ only in their concurrency model, against the same
# PostgreSQL with the same pool size (docs/benchmarks.md, "Relay models").
for t in model-goroutine model-loop; do
	has_target "$t" || continue
	[[ -x "$tmp/relaymodels" ]] || go build -o "$tmp/relaymodels" ./bench/relaymodels 2>"$tmp/build-models.log" ||
		{ status[$t]="build failed: $(head -c 300 "$tmp/build-models.log" | tr '\n' ' ')"; continue; }
	free_port MODEL_PORT
	PGPASSWORD="$PG_PASSWORD" "$tmp/relaymodels" -model "${t#model-}" -listen "127.0.0.1:$MODEL_PORT" -pool "$POOL_SIZE" \
		-upstream "postgres://$DB_USER@127.0.0.1:$PG_PORT/$DB?sslmode=disable" >"$tmp/$t.log" 2>&1 &
	pids+=($!)
	proc[$t]=$!
	if wait_port "$MODEL_PORT" 20 "${proc[$t]}"; then
		status[$t]=ok port[$t,plain]=$MODEL_PORT user[$t]=$DB_USER pass[$t,plain]=unused
		log "$t on 127.0.0.1:$MODEL_PORT"
	else
		status[$t]="did not start: $(tail -c 300 "$tmp/$t.log" | tr '\n' ' ')"
	fi
done

# ---------------------------------------------------------------------------------------------
failures=0

# Idle-client memory: RSS growth of the pooler process per authenticated idle client, measured
# first, on freshly started poolers, so no earlier workload has pre-grown their allocators. TLS
# clients go to PgBouncer's TLS instance (fresh) and to a second, fresh edgepool.
declare -A idle=()
idle_run() { # key instance-pid port password sslmode [metrics-url]
	local k=$1 ppid=$2 p=$3 pw=$4 mode=$5 extra=() line=""
	[[ -n "${6:-}" ]] && extra=(-metrics "$6")
	log "idle clients: $IDLE_CLIENTS to $k"
	if line="$(PGPASSWORD="$pw" "$tmp/idleclients" -port "$p" -user "$DB_USER" -db "$DB" -sslmode "$mode" \
		-n "$IDLE_CLIENTS" -pid "$ppid" "${extra[@]}" 2>"$tmp/idle-$k.log" | grep '^RESULT')"; then
		idle[$k]="$line"
	else
		failures=$((failures + 1))
		idle[$k]="FAILED: ${line:-$(tail -2 "$tmp/idle-$k.log" | tr '\n' ' ')}"
	fi
	log "$k: ${idle[$k]}"
}
if ((IDLE_CLIENTS > 0)); then
	go build -o "$tmp/idleclients" ./bench/idleclients
	if has_target pgbouncer && [[ "${status[pgbouncer]}" == ok ]]; then
		idle_run pgbouncer "${proc[pgbouncer]}" "$PB_PORT" "$PG_PASSWORD" disable
		idle_run pgbouncer-tls "${proc[pgbouncer-tls]}" "$PB_TLS_PORT" "$PG_PASSWORD" require
	fi
	if has_target edgepool && [[ "${status[edgepool]}" == ok ]]; then
		idle_run edgepool "${proc[edgepool]}" "$EP_PORT" "$EP_KEY" disable "http://127.0.0.1:$EP_ADMIN/metrics"
		idle_run edgepool-tls "${proc[edgepool-tls]}" "$EP_TLS_PORT" "$EP_TLS_KEY" require \
			"http://127.0.0.1:$EP_TLS_ADMIN/metrics"
	fi
fi

# ---------------------------------------------------------------------------------------------
# Workloads: name -> pgbench flags, transport, clients. Every run starts from the same database
# state (the vacuum/truncate pgbench itself would do, run once directly, then pgbench -n so no
# pooler sees maintenance commands).
declare -A wl_args=() wl_transport=() wl_clients=()
define_workload() { wl_args[$1]=$2 wl_transport[$1]=$3 wl_clients[$1]=$4; }
define_workload select-simple-20 "-S -M simple -c 20 -j 2" plain 20
define_workload select-simple-100 "-S -M simple -c 100 -j 2" plain 100
define_workload select-simple-1000 "-S -M simple -c 1000 -j 2" plain 1000
define_workload select-simple-tls-100 "-S -M simple -c 100 -j 2" tls 100
define_workload select-simple-tls-1000 "-S -M simple -c 1000 -j 2" tls 1000
define_workload select-extended-100 "-S -M extended -c 100 -j 2" plain 100
define_workload select-prepared-100 "-S -M prepared -c 100 -j 2" plain 100
define_workload tpcb-50 "-M simple -c 50 -j 2" plain 50
define_workload connect-50 "-S -M simple -C -c 50 -j 2" plain 50
for wl in $BENCH_WORKLOADS; do
	[[ -n "${wl_args[$wl]:-}" ]] || die "unknown workload $wl"
done

reset_db() {
	psql_direct -c 'vacuum pgbench_branches' -c 'vacuum pgbench_tellers' -c 'truncate pgbench_history' >/dev/null
}

cpu_ticks() { # pid -> utime+stime in clock ticks, or nothing
	if [[ -n "${1:-}" && -r "/proc/$1/stat" ]]; then awk '{print $14 + $15}' "/proc/$1/stat"; fi
}

percentile() { # sorted file of latencies (µs), q -> ms
	awk -v q="$2" '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		k = int(q / 100 * NR + 0.5); if (k < 1) k = 1; if (k > NR) k = NR
		printf "%.2f\n", v[k] / 1000
	}' "$1"
}

runs_tsv="$tmp/runs.tsv"
printf 'round\tworkload\ttransport\tclients\ttarget\ttps\tp50_ms\tp99_ms\tcpu_us_per_tx\n' >"$runs_tsv"
tck="$(getconf CLK_TCK)"

run_pgbench() { # round workload target
	local round=$1 wl=$2 t=$3 tr=${wl_transport[$2]} rc=0
	local logf="$tmp/pgbench-$2-$3-$1.log" tlog="$tmp/tlog-$2-$3-$1"
	local row_fail="$round	$wl	$tr	${wl_clients[$wl]}	$t	FAILED	-	-	-"
	if [[ "${status[$t]:-}" != ok ]]; then
		echo "$row_fail" >>"$runs_tsv"
		return
	fi
	if [[ $t == pgbouncer && $wl == select-prepared-* ]] && ((!pb_prepared)); then
		return # PgBouncer before 1.21 cannot: protocol-level prepared statements arrived in 1.21
	fi
	if [[ $t == model-* && ($tr == tls || $wl == select-prepared-* || $wl == connect-*) ]]; then
		return # the lab relays speak plain TCP, hold no statements and have no login to measure
	fi
	local ppid=""
	case $t in
	pgbouncer) ppid=${proc[pgbouncer]}; [[ $tr == tls ]] && ppid=${proc[pgbouncer-tls]} ;;
	edgepool) ppid=${proc[edgepool]}; [[ $tr == tls ]] && ppid=${proc[edgepool-tls]} ;;
	model-*) ppid=${proc[$t]} ;;
	esac
	local secs=$BENCH_SECONDS
	((${wl_clients[$wl]} >= 1000)) && secs=$((secs + 20))
	local sslmode=disable
	[[ $tr == tls ]] && sslmode=require
	reset_db
	rm -rf "$tlog" && mkdir -p "$tlog"
	local c0 c1
	c0="$(cpu_ticks "$ppid")"
	# shellcheck disable=SC2086 # the workload's argument list is a word list
	(cd "$tlog" && PGPASSWORD="${pass[$t,$tr]}" PGSSLMODE=$sslmode timeout $((secs + 180)) \
		pgbench -n ${wl_args[$wl]} -T "$secs" -l --log-prefix=tx -p "${port[$t,$tr]}" -U "${user[$t]}" "$DB") \
		>"$logf" 2>&1 || rc=$?
	c1="$(cpu_ticks "$ppid")"
	local t_tps t_done t_failed
	t_tps="$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$logf" | head -1)"
	t_failed="$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$logf" | head -1)"
	t_done="$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$logf" | head -1)"
	if ((rc != 0)) || [[ -z "$t_tps" || "${t_done:-0}" == 0 ]] || [[ -n "$t_failed" && "$t_failed" != 0 ]]; then
		failures=$((failures + 1))
		local why="exit $rc"
		[[ "${t_done:-0}" == 0 ]] && why+=", no transaction completed"
		[[ -n "$t_failed" && "$t_failed" != 0 ]] && why+=", $t_failed failed transactions"
		notes+=("$wl on $t (round $round): FAILED ($why)")
		log "$wl on $t failed; last lines of its log:"
		tail -5 "$logf" | sed 's/^/   /' >&2
		mkdir -p bench/results/logs
		cp "$logf" "bench/results/logs/"
		echo "$row_fail" >>"$runs_tsv"
		rm -rf "$tlog"
		return
	fi
	# The writes must have reached PostgreSQL: every TPC-B-like transaction inserts one history row
	# (a few more may land from transactions in flight when the clock ran out).
	if [[ $wl == tpcb-* ]]; then
		local rows clients
		rows="$(psql_direct -At -c 'select count(*) from pgbench_history')"
		clients="$(sed -nE 's/^number of clients: ([0-9]+).*/\1/p' "$logf")"
		if ((rows < t_done || rows > t_done + clients)); then
			failures=$((failures + 1))
			notes+=("$wl on $t (round $round): FAILED (pgbench counted $t_done transactions, PostgreSQL has $rows history rows)")
			echo "$row_fail" >>"$runs_tsv"
			rm -rf "$tlog"
			return
		fi
	fi
	cat "$tlog"/tx.* | awk '{ print $3 }' | sort -n >"$tlog/lat"
	local p50 p99 cpu="-"
	p50="$(percentile "$tlog/lat" 50)"
	p99="$(percentile "$tlog/lat" 99)"
	if [[ -n "$c0" && -n "$c1" ]]; then
		cpu="$(awk -v a="$c0" -v b="$c1" -v n="$t_done" -v tck="$tck" 'BEGIN { printf "%.1f", (b - a) * 1e6 / tck / n }')"
	fi
	rm -rf "$tlog"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wl" "$tr" "${wl_clients[$wl]}" "$t" "$t_tps" "$p50" "$p99" "$cpu" >>"$runs_tsv"
	log "$(printf 'round %s %-24s %-9s %8.0f tps  p99 %7s ms  pooler CPU %s µs/tx' "$round" "$wl" "$t" "$t_tps" "$p99" "$cpu")"
}

declare -a notes=()
log "warm-up (direct, unrecorded)"
reset_db
PGPASSWORD="$PG_PASSWORD" PGSSLMODE=disable pgbench -n -S -c 10 -j 2 -T 3 -p "$PG_PORT" -U "$DB_USER" "$DB" >/dev/null 2>&1 || true

# Interleave: every round runs every workload on every target, targets back to back, so drift on a
# shared machine hits all of them alike; medians over the rounds are reported.
for round in $(seq "$BENCH_ROUNDS"); do
	for wl in $BENCH_WORKLOADS; do
		for t in direct pgbouncer edgepool model-goroutine model-loop; do
			has_target "$t" || continue
			run_pgbench "$round" "$wl" "$t"
		done
	done
done

# ---------------------------------------------------------------------------------------------
# System calls per transaction (strace -c -f on the pooler process during a fixed number of
# transactions: pgbench -S -M simple -c 100, 100 each). strace slows the pooler down; the counts,
# not the speed, are the point, and they do not depend on the machine's load.
declare -A sys=()
syscall_run() { # name pid port password
	local name=$1 spid=$2 p=$3 pw=$4 out="$tmp/strace-$1.txt" st
	strace -c -f -q -p "$spid" -o "$out" &
	st=$!
	sleep 1
	PGPASSWORD="$pw" PGSSLMODE=disable pgbench -n -S -M simple -c 100 -j 2 -t 100 -p "$p" -U "$DB_USER" "$DB" \
		>"$tmp/strace-pgbench-$name.log" 2>&1 || true
	kill -INT "$st" 2>/dev/null || true
	wait "$st" 2>/dev/null || true
	local done
	done="$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$tmp/strace-pgbench-$name.log" | head -1)"
	if [[ -z "$done" || "$done" == 0 || ! -s "$out" ]]; then
		sys[$name]="FAILED"
		return
	fi
	# "calls errors syscall" columns: per transaction, the main ones and the total.
	sys[$name]="$(awk -v n="$done" '
		$NF == "total" { total = $(NF-2) }
		NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
			calls = $4; errs = (NF == 6) ? $5 : 0; name = $NF
			c[name] += calls; e[name] += errs
		}
		END {
			printf "%.2f", total / n
			for (k in c) if (c[k] / n >= 0.05) printf " %s=%.2f%s", k, c[k] / n, (e[k] > 0 ? sprintf("(%.2f EAGAIN)", e[k] / n) : "")
		}' "$out")"
	log "syscalls per transaction, $name: ${sys[$name]}"
}
if [[ "$BENCH_SYSCALLS" == 1 ]] && command -v strace >/dev/null; then
	if has_target pgbouncer && [[ "${status[pgbouncer]}" == ok ]]; then
		reset_db
		syscall_run pgbouncer "${proc[pgbouncer]}" "$PB_PORT" "$PG_PASSWORD"
	fi
	if has_target edgepool && [[ "${status[edgepool]}" == ok ]]; then
		reset_db
		syscall_run edgepool "${proc[edgepool]}" "$EP_PORT" "$EP_KEY"
	fi
fi

# ---------------------------------------------------------------------------------------------
# Profiles behind the numbers: CPU and allocations of the edgepool pooler (its admin port's
# /debug/pprof) during one extra, unrecorded pgbench -S -c 100 run per transport. The profiles
# and their top functions go next to the report (<BENCH_OUT>-profiles/); read them with
# `go tool pprof -top bin/edgepool <file>`.
declare -a profiled=()
profile_run() { # transport port password admin-port
	local tr=$1 p=$2 pw=$3 admin=$4 sslmode=disable secs=$((BENCH_SECONDS > 6 ? BENCH_SECONDS : 6))
	[[ $tr == tls ]] && sslmode=require
	local dir="$tmp/profiles" base="$tmp/profiles/edgepool-select-simple-$tr-100"
	mkdir -p "$dir"
	reset_db
	curl -sf -o "$base.cpu.pprof" "http://127.0.0.1:$admin/debug/pprof/profile?seconds=$((secs - 3))" &
	local c1=$!
	curl -sf -o "$base.allocs.pprof" "http://127.0.0.1:$admin/debug/pprof/allocs?seconds=$((secs - 3))" &
	local c2=$!
	PGPASSWORD="$pw" PGSSLMODE=$sslmode pgbench -n -S -M simple -c 100 -j 2 -T "$secs" -p "$p" -U "$DB_USER" "$DB" \
		>"$base.pgbench.log" 2>&1 || true
	if wait "$c1" && wait "$c2" && [[ -s "$base.cpu.pprof" && -s "$base.allocs.pprof" ]]; then
		go tool pprof -top -nodecount=30 bin/edgepool "$base.cpu.pprof" >"$base.cpu.top.txt" 2>/dev/null || true
		go tool pprof -top -nodecount=30 -sample_index=alloc_space bin/edgepool "$base.allocs.pprof" \
			>"$base.allocs.top.txt" 2>/dev/null || true
		profiled+=("$tr")
		log "profiled edgepool ($tr, pgbench -S -c 100)"
	else
		log "profiling edgepool ($tr) failed"
	fi
}
if [[ "${BENCH_PROFILE:-1}" == 1 ]] && has_target edgepool && [[ "${status[edgepool]}" == ok ]]; then
	profile_run plain "$EP_PORT" "$EP_KEY" "$EP_ADMIN"
	profile_run tls "$EP_TLS_PORT" "$EP_TLS_KEY" "$EP_TLS_ADMIN"
fi

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
		EP_HTTP="127.0.0.1:$EP_HTTP" EP_PORT=$EP_PORT EP_KEY=$EP_KEY EP_PID=${proc[edgepool]} DB=$DB DB_USER=$DB_USER BENCH_SECONDS=$BENCH_SECONDS \
			BENCH_SCALE=$BENCH_SCALE bench/prisma/run.sh >"$tmp/prisma.md" || failures=$((failures + 1))
	fi
fi

# ---------------------------------------------------------------------------------------------
# Report.
field() { sed -nE "s/.* $2=(-?[0-9.]+).*/\\1/p" <<<"$1"; }
ratio() { # a b -> a/b with 2 decimals, or — when either is missing
	if [[ -n "${1:-}" && -n "${2:-}" ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else printf '—'; fi
}

pg_ver="$("$PG_BIN/postgres" --version | awk '{print $3}')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=""
git diff --quiet HEAD -- pooler cmd 2>/dev/null || dirty=" (with uncommitted pooler/cmd changes)"
out_base="${BENCH_OUT%.md}"
mkdir -p "$(dirname "$BENCH_OUT")"
cp "$runs_tsv" "$out_base-runs.tsv"
go build -o "$tmp/summary" ./bench/summary
table="$("$tmp/summary" -in "$runs_tsv" -svg "$out_base.svg")" || { failures=$((failures + 1)); table="summary failed"; }

report="$tmp/report.md"
{
	echo "# edgepool benchmark results"
	echo
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit \`$commit\`$dirty; took $(((SECONDS - started_at) / 60)) min"
	echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average at start $load_at_start, at end $(cut -d' ' -f1-3 /proc/loadavg); everything on loopback"
	echo "- PostgreSQL $pg_ver (fsync/synchronous_commit/full_page_writes off, max_connections 1100), PgBouncer $pb_ver, edgepool \`bin/edgepool pooler\` (GOMAXPROCS ${GOMAXPROCS:-$(nproc) (default)})"
	echo "- Pools: transaction mode, $POOL_SIZE upstream connections for PgBouncer and edgepool; SCRAM-SHA-256 client auth everywhere; TLS runs: \`sslmode=require\`, PgBouncer \`client_tls_sslmode = require\`, one certificate for all"
	echo "- Each cell: the median of $BENCH_ROUNDS rounds of \`pgbench -T $BENCH_SECONDS\` (1,000 clients: $((BENCH_SECONDS + 20)) s), scale $BENCH_SCALE, rounds interleaving every workload and target; command: \`${knobs}BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS make bench\`"
	# The load at the end includes the benchmark's own runs (1,000 clients keep a thousand processes
	# runnable), so only the load before it started tells whether other work shared the machine.
	if awk -v a="${load_at_start%% *}" -v n="$(nproc)" 'BEGIN { exit !(a > n) }'; then
		echo "- **Busy machine**: the load average before the run exceeded the CPU count, so other work competed"
		echo "  with all three targets; absolute numbers are depressed and noisy, compare ratios only."
	fi
	echo
	echo "## Throughput and latency"
	echo
	echo "$table"
	echo
	echo "tps, p99 latency of pgbench's per-transaction log, ratios of the medians (tps: above 1 edgepool is faster;"
	echo "p99: below 1 edgepool's tail is shorter). Pooler CPU: the pooler process's user+system time per transaction"
	if ((pb_prepared)); then
		echo "during the run (PostgreSQL and pgbench not included). PgBouncer $pb_ver runs \`-M prepared\` with"
		echo "\`max_prepared_statements = 200\`. Every run: \`$(basename "$out_base")-runs.tsv\`."
	else
		echo "during the run (PostgreSQL and pgbench not included). PgBouncer $pb_ver cannot run \`-M prepared\` in"
		echo "transaction mode (n/a; it arrived in 1.21: set PGBOUNCER to a newer build). Every run: \`$(basename "$out_base")-runs.tsv\`."
	fi
	echo
	echo "![tps and p99 latency against clients](./$(basename "$out_base").svg)"
	for n in "${notes[@]}"; do
		echo
		echo "- $n"
	done
	if [[ "$BENCH_SYSCALLS" == 1 ]]; then
		echo
		echo "## System calls per transaction"
		echo
		echo "\`strace -c -f\` on the pooler during \`pgbench -S -M simple -c 100 -j 2 -t 100\` (10,000 transactions; strace"
		echo "slows everything down, so only the counts matter). Total, then every call made at least 0.05 times per transaction."
		echo
		echo "| pooler | system calls per transaction |"
		echo "|---|---|"
		for t in pgbouncer edgepool; do
			[[ -n "${sys[$t]:-}" ]] && printf '| %s | %s |\n' "$t" "${sys[$t]}"
		done
	fi
	if ((${#profiled[@]})); then
		echo
		echo "## Profiles"
		echo
		echo "CPU and allocation profiles of the edgepool pooler during one extra \`pgbench -S -M simple -c 100\` run per"
		echo "transport (${profiled[*]}), with their top functions: \`$(basename "$out_base")-profiles/\`."
	fi
	if ((IDLE_CLIENTS > 0)); then
		echo
		echo "## Idle clients: $IDLE_CLIENTS connected, authenticated, idle"
		echo
		echo "| pooler | clients | RSS before | RSS after | RSS per idle client | of which Go heap / stacks | goroutines per client |"
		echo "|---|---|---:|---:|---:|---:|---:|"
		for k in pgbouncer edgepool pgbouncer-tls edgepool-tls; do
			r="${idle[$k]:-}"
			[[ -n "$r" ]] || continue
			kind=plain
			[[ $k == *-tls ]] && kind="TLS"
			if [[ "$r" == RESULT* ]]; then
				gomem="" gor=""
				if [[ "$r" == *heap_inuse_per_client_bytes=* ]]; then
					gomem="$(field "$r" heap_inuse_per_client_bytes) / $(field "$r" stack_inuse_per_client_bytes) bytes"
					gor="$(field "$r" goroutines_per_client)"
				fi
				printf '| %s | %s | %s KiB | %s KiB | %s bytes | %s | %s |\n' "${k%-tls}" "$kind" "$(field "$r" rss_before_kb)" \
					"$(field "$r" rss_after_kb)" "$(field "$r" per_client_bytes)" "$gomem" "$gor"
			else
				printf '| %s | %s | %s | | | | |\n' "${k%-tls}" "$kind" "$r"
			fi
		done
		echo
		echo "edgepool/PgBouncer bytes per idle client: plain $(ratio "$(field "${idle[edgepool]:-}" per_client_bytes)" "$(field "${idle[pgbouncer]:-}" per_client_bytes)"), TLS $(ratio "$(field "${idle[edgepool-tls]:-}" per_client_bytes)" "$(field "${idle[pgbouncer-tls]:-}" per_client_bytes)")"
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
	for t in pgbouncer edgepool model-goroutine model-loop; do
		if has_target "$t" && [[ "${status[$t]}" != ok ]]; then
			echo
			echo "**$t FAILED:** ${status[$t]}"
		fi
	done
} >"$report"

cp "$report" "$BENCH_OUT"
if ((${#profiled[@]})); then
	rm -rf "$out_base-profiles" && mkdir -p "$out_base-profiles"
	cp "$tmp"/profiles/*.pprof "$tmp"/profiles/*.top.txt "$out_base-profiles/"
fi
echo
cat "$report"
echo
log "written to $BENCH_OUT, $out_base.svg and $out_base-runs.tsv"

for t in $BENCH_TARGETS; do
	[[ "${status[$t]:-ok}" == ok ]] || failures=$((failures + 1))
done
((failures == 0)) || die "$failures failure(s); see above"
