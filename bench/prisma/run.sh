#!/usr/bin/env bash
# Prisma 7 through edgepool, two ways, interleaved rounds on one running pooler (called by
# bench/run.sh, which starts PostgreSQL with pgbench's tables and the pooler):
#   accelerate  findUnique through accelerateUrl (the pooler's Prisma Accelerate endpoint, HTTP)
#   adapter-pg  the same findUnique through @prisma/adapter-pg + pg over the pooler's Postgres listener
# Env (from bench/run.sh): EP_HTTP (host:port), EP_PORT, EP_KEY, EP_PID (the pooler, for its CPU
# time), DB, DB_USER, BENCH_SECONDS, BENCH_SCALE; PRISMA_CLIENTS=50, PRISMA_ROUNDS=3. Prints a markdown section; exit 1 when a run
# failed or had errors (the section says which).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${EP_HTTP:?} ${EP_PORT:?} ${EP_KEY:?} ${DB:?} ${DB_USER:?}"
seconds=${BENCH_SECONDS:-15} clients=${PRISMA_CLIENTS:-50} rounds=${PRISMA_ROUNDS:-3}
accounts=$((100000 * ${BENCH_SCALE:-10}))

"$root/hack/install-node-deps.sh" bench/prisma >&2
"$root/hack/prisma-generate.sh" bench/prisma >&2

export CLIENTS=$clients ACCOUNTS=$accounts
export ACCELERATE_URL="prisma+postgres://127.0.0.1:${EP_HTTP##*:}/?api_key=$EP_KEY"
export DATABASE_URL="postgres://$DB_USER:$EP_KEY@127.0.0.1:$EP_PORT/$DB?sslmode=disable"

# CPU seconds (user+system) the pooler has used so far, from /proc (clock ticks).
pooler_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/${EP_PID:-0}/stat" 2>/dev/null || echo 0; }

declare -A rps=() lines=() poolcpu=()
failed=0
for r in $(seq "$rounds"); do
	for mode in accelerate adapter-pg; do
		printf '>> prisma %-10s round %d/%d: %d clients, %ss\n' "$mode" "$r" "$rounds" "$clients" "$seconds" >&2
		before=$(pooler_cpu)
		if ! out="$(cd "$root/bench/prisma" && BENCH_SECONDS="$seconds" timeout $((seconds + 120)) node --import tsx bench.mjs "$mode" 2>&1 | tail -1)" ||
			[[ "$out" != *requestsPerSec* ]]; then
			failed=1
			lines[$mode,$r]="FAILED: $(tr '\n' ' ' <<<"$out" | head -c 300)"
			continue
		fi
		lines[$mode,$r]=$out
		poolcpu[$mode,$r]=$(awk -v a="$before" -v b="$(pooler_cpu)" 'BEGIN { printf "%.1f", b - a }')
		rps[$mode]+="$(sed -nE 's/.*"requestsPerSec":([0-9.e+]+).*/\1/p' <<<"$out") "
		[[ "$out" == *'"errors":0,'* ]] || failed=1
		printf '>> %s\n' "$out" >&2
	done
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
field() { sed -nE "s/.*\"$2\":([0-9.e+-]+).*/\\1/p" <<<"$1"; }

echo
echo "## Prisma 7 through edgepool: accelerateUrl vs @prisma/adapter-pg"
echo
echo "\`findUnique({ where: { aid } })\` on pgbench_accounts (random aid of $accounts), $clients PrismaClients in one"
echo "node process, ${seconds} s per run, $rounds interleaved round(s); req/s is the median round. Prisma 7.10 compiles"
echo "each query in the client either way; accelerate posts the plan over HTTP (keep-alive) to the pooler, which"
echo "runs it; adapter-pg runs it through \`pg\` (one connection per client) over the pooler's Postgres listener."
echo
echo "| path | req/s (median) | each round: req/s, p50 / p99 ms, errors, CPU s of node client / pooler |"
echo "|---|---:|---|"
for mode in accelerate adapter-pg; do
	rounds_text=""
	for r in $(seq "$rounds"); do
		l="${lines[$mode,$r]:-}"
		if [[ "$l" == *requestsPerSec* ]]; then
			rounds_text+="$(printf '%.0f, %.1f / %.1f, %s, %.1f / %s' "$(field "$l" requestsPerSec)" "$(field "$l" p50ms)" "$(field "$l" p99ms)" \
				"$(field "$l" errors)" "$(field "$l" clientCpuSec)" "${poolcpu[$mode,$r]}"); "
		else
			rounds_text+="${l:-not run}; "
		fi
	done
	m="$(median "${rps[$mode]:-}")"
	printf '| %s | %s | %s |\n' "$mode" "$([[ -n "$m" ]] && printf '%.0f' "$m" || echo —)" "${rounds_text%; }"
done
a="$(median "${rps[accelerate]:-}")" b="$(median "${rps[adapter-pg]:-}")"
if [[ -n "$a" && -n "$b" ]]; then
	echo
	echo "accelerate/adapter-pg: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
fi
exit "$failed"
