#!/usr/bin/env bash
# archive.sh - drains the same backlog of real WAL segments through
# PostgreSQL's own archiver with pgsidecar and with pgbackrest 2.45, to one
# repository and to four, with lz4 + aes-256-cbc, and prints a table:
# seconds, MB/s, CPU seconds per GiB, peak RSS, and the ratio to pgbackrest.
#
# How: a cluster is made once with archiving failing, so SEGMENTS segments
# pile up in pg_wal as .ready files; it is stopped and kept as a template.
# Each run copies the template, points archive_command at the tool, starts
# PostgreSQL and waits until pg_stat_archiver has archived every segment.
# CPU is the whole machine's busy time during the run (run it idle); RSS is
# the peak resident size of the tool's processes, sampled every 20 ms.
#
# Usage: bench/archive.sh            (as root; needs bin/pgsidecar: make build)
# Tools: pgsidecar (archive_command pushes, no daemon), pgsidecar-daemon (the
#        same archive_command with `pgsidecar run` started before PostgreSQL:
#        look-ahead pushes, answers over its socket), pgbackrest (sync) and
#        pgbackrest-async (archive-async=y, process-max=2).
# Env:   SEGMENTS (default 64), TOOLS (default "pgsidecar pgsidecar-daemon pgbackrest pgbackrest-async"),
#        REPOS (default "1 4"), LATENCY_TOOLS (default "pgsidecar-daemon pgbackrest-async").
#
# Latency: archive_command's time for a segment the tool has already pushed
# ahead, which is what PostgreSQL's archiver waits per segment when the tool
# keeps up. With PostgreSQL stopped, the backlog is pushed ahead (the daemon
# does it by itself; pgbackrest-async after one call starts its async
# process), then archive-push is timed for each .ready segment in order, as
# the archiver calls it, one repository; median and 95th percentile.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SEGMENTS=${SEGMENTS:-64}
TOOLS=${TOOLS:-"pgsidecar pgsidecar-daemon pgbackrest pgbackrest-async"}
REPOS=${REPOS:-"1 4"}
LATENCY_TOOLS=${LATENCY_TOOLS:-"pgsidecar-daemon pgbackrest-async"}
OS_USER=pgsidecar
W=/tmp/pgsidecar-bench-archive
PORT=55499
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ -x $ROOT/bin/pgsidecar ]] || { echo "archive.sh: run 'make build' first" >&2; exit 1; }
bash scripts/services.sh postgres >/dev/null

psql_q() { as_user "$PG_BIN/psql" -h "$W/run" -p "$PORT" -U postgres -Atqc "$1"; }

# stop_daemon: SIGTERM to the pgsidecar daemon this script started, and wait.
stop_daemon() {
	[[ -s $W/daemon.pid ]] || return 0
	local pid
	pid=$(<"$W/daemon.pid")
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	rm -f "$W/daemon.pid"
}

cleanup() {
	stop_daemon
	for d in "$W"/data "$W"/template; do [[ -f $d/postmaster.pid ]] && stop_pg "$d" immediate; done
	rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W"/run
install -m 0755 "$ROOT/bin/pgsidecar" "$W/pgsidecar"
chown -R "$OS_USER:$OS_USER" "$W"

echo "building a backlog of $SEGMENTS WAL segments..."
as_user "$PG_BIN/initdb" -A trust -U postgres -D "$W/template" >/dev/null
cat >>"$W/template/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W/run'
wal_level = replica
archive_mode = on
archive_command = 'false'
max_wal_size = 4GB
min_wal_size = 4GB
checkpoint_timeout = 1h
EOF
as_user "$PG_BIN/pg_ctl" -D "$W/template" -l "$W/template.log" -w start >/dev/null
psql_q "create table filler (id bigint, payload text)"
for ((i = 0; i < SEGMENTS; i++)); do
	psql_q "insert into filler select g, md5(g::text) || repeat('x', 100) from generate_series(1, 60000) g; select pg_switch_wal()" >/dev/null
done
# A clean shutdown: each run starts without crash recovery (replaying the
# backlog would cost every tool seconds before its first segment).
stop_pg "$W/template" fast
ready=$(find "$W/template/pg_wal/archive_status" -name '*.ready' | wc -l)
bytes=$((ready * 16 * 1024 * 1024))
echo "backlog: $ready segments ($((bytes >> 20)) MiB)"

# conf TOOL NREPOS: a pgBackRest-style configuration with NREPOS posix repos.
conf() {
	local f=$W/$1-$2.conf n
	{
		echo "[global]"
		for ((n = 1; n <= $2; n++)); do
			echo "repo$n-path=$W/repo-$1-$2-$n"
			echo "repo$n-cipher-type=aes-256-cbc"
			echo "repo$n-cipher-pass=bench-archive-passphrase-$n"
			echo "repo$n-retention-full=1"
		done
		echo "compress-type=lz4"
		echo "log-path=$W/log"
		echo "lock-path=$W/run"
		echo "spool-path=$W/spool-$1-$2"
		echo "log-level-console=warn"
		echo "log-level-file=off"
		if [[ $1 == pgbackrest-async || $1 == pgsidecar-daemon ]]; then
			# pgsidecar-daemon: the socket is <spool-path>/pgsidecar-db.sock.
			echo "archive-async=y"
			echo "process-max=2"
		fi
		echo "[db]"
		echo "pg1-path=$W/data"
		echo "pg1-port=$PORT"
		echo "pg1-socket-path=$W/run"
		echo "pg1-user=postgres"
	} >"$f"
	chown "$OS_USER:$OS_USER" "$f"
	echo "$f"
}


declare -A SECS
run() {
	local tool=$1 nrepos=$2 cfg bin pattern
	cfg=$(conf "$tool" "$nrepos")
	case $tool in
	pgsidecar*) bin="$W/pgsidecar"; pattern="pgsidecar --config" ;;
	pgbackrest*) bin=/usr/bin/pgbackrest; pattern="pgbackrest --config" ;;
	esac
	rm -rf "$W/data" && cp -a "$W/template" "$W/data"
	sed -i "s|^archive_command = 'false'|archive_command = '$bin --config=$cfg --stanza=db archive-push %p'|" "$W/data/postgresql.conf"
	# The stanza is created by its own tool, on a copy that does not archive.
	if [[ $tool == pgsidecar* ]]; then
		as_user "$W/pgsidecar" --config="$cfg" --stanza=db stanza-create >/dev/null
	else
		as_user pgbackrest --config="$cfg" --stanza=db stanza-create >/dev/null 2>&1 ||
			as_user pgbackrest --config="$cfg" --stanza=db --no-online stanza-create >/dev/null
	fi
	if [[ $tool == pgsidecar-daemon ]]; then
		# The sidecar runs before PostgreSQL starts, as in a pod.
		start_daemon "$cfg" "$W/daemon-$nrepos.log"
	fi
	local rssfile=$W/rss
	echo 0 >"$rssfile"
	sample_rss "$pattern" "$rssfile" &
	local sampler=$!
	local t0 c0 t1 c1 archived=0
	c0=$(busy_ticks)
	t0=$(date +%s.%N)
	as_user "$PG_BIN/pg_ctl" -D "$W/data" -l "$W/data.log" -w start >/dev/null
	while ((archived < ready)); do
		archived=$(psql_q "select archived_count from pg_stat_archiver" 2>/dev/null || echo 0)
		sleep 0.05
	done
	t1=$(date +%s.%N)
	c1=$(busy_ticks)
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	stop_pg "$W/data" immediate
	stop_daemon
	local secs cpu mbs cpug rss
	secs=$(calc "$t1 - $t0")
	cpu=$(calc "($c1 - $c0) / $(getconf CLK_TCK)")
	mbs=$(calc "$bytes / 1000000 / $secs")
	cpug=$(calc "$cpu / ($bytes / 1073741824)")
	rss=$(($(cat "$rssfile") / 1024))
	SECS[$tool-$nrepos]=$secs
	printf '%-18s %5s %8.2f %8.1f %10.2f %9s\n' "$tool" "$nrepos" "$secs" "$mbs" "$cpug" "${rss}MiB"
	rm -rf "$W"/repo-"$tool"-"$nrepos"-* "$W"/spool-"$tool"-"$nrepos"
}

# start_daemon CFG LOG: `pgsidecar run` as the OS user, as in a pod, before
# PostgreSQL; waits for its socket.
start_daemon() {
	local sock i
	sock=$(dirname "$(grep '^spool-path=' "$1" | cut -d= -f2-)/x")/pgsidecar-db.sock
	# shellcheck disable=SC2016 # expanded by the inner sh, on purpose
	as_user sh -c 'echo $$ >"$0" && exec "$@"' "$W/daemon.pid" "$W/pgsidecar" --config="$1" --stanza=db run >"$2" 2>&1 &
	for ((i = 0; i < 200; i++)); do [[ -S $sock ]] && break; sleep 0.05; done
	[[ -S $sock ]] || { echo "archive.sh: the daemon did not start; see $2" >&2; exit 1; }
}

# archived_count CFG: the WAL segments in repo1 of CFG.
archived_count() {
	find "$(grep '^repo1-path=' "$1" | cut -d= -f2-)/archive" -name '0000*-*' 2>/dev/null | wc -l
}

# latency TOOL: prints the median and 95th percentile (ms) of archive-push
# for segments already pushed ahead.
latency() {
	local tool=$1 cfg bin segs i
	cfg=$(conf "$tool" 1)
	case $tool in
	pgsidecar*) bin="$W/pgsidecar" ;;
	pgbackrest*) bin=/usr/bin/pgbackrest ;;
	esac
	rm -rf "$W/data" && cp -a "$W/template" "$W/data"
	mapfile -t segs < <(find "$W/data/pg_wal/archive_status" -name '*.ready' -printf '%f\n' | sed 's/\.ready$//' | sort)
	if [[ $tool == pgsidecar* ]]; then
		as_user "$W/pgsidecar" --config="$cfg" --stanza=db stanza-create >/dev/null
		start_daemon "$cfg" "$W/daemon-latency.log"
	else
		as_user pgbackrest --config="$cfg" --stanza=db --no-online stanza-create >/dev/null
		# The first call starts the async process, which pushes the rest ahead.
		(cd "$W/data" && as_user "$bin" --config="$cfg" --stanza=db archive-push "pg_wal/${segs[0]}" >/dev/null)
		segs=("${segs[@]:1}")
	fi
	for ((i = 0; i < 1200; i++)); do (($(archived_count "$cfg") >= ${#segs[@]})) && break; sleep 0.05; done
	# Timed in one shell with bash's clock (no fork around the call).
	as_user bash -c 'cd "$1" && shift && for s in "${@:4}"; do
		t0=$EPOCHREALTIME; "$1" "$2" "$3" archive-push "pg_wal/$s" >/dev/null 2>&1 || exit 1; t1=$EPOCHREALTIME
		echo $(( ${t1/./} - ${t0/./} )); done' _ "$W/data" "$bin" --config="$cfg" --stanza=db "${segs[@]}" |
		sort -n | awk '{v[NR]=$1} END {if (NR == 0) {print "failed"; exit} printf "%.2f %.2f\n", v[int((NR+1)/2)]/1000, v[int(NR*0.95+0.5)]/1000}'
	stop_daemon
	rm -rf "$W"/repo-"$tool"-1-* "$W"/spool-"$tool"-1
}

printf '\n%-18s %5s %8s %8s %10s %9s\n' tool repos seconds MB/s CPU-s/GiB peak-RSS
for n in $REPOS; do
	for tool in $TOOLS; do
		run "$tool" "$n"
	done
done
echo
for n in $REPOS; do
	for ours in pgsidecar pgsidecar-daemon; do
		for base in pgbackrest pgbackrest-async; do
			if [[ -n ${SECS[$ours-$n]:-} && -n ${SECS[$base-$n]:-} ]]; then
				printf 'speed-up of %-16s over %-16s with %s repo(s): %.2fx\n' "$ours" "$base" "$n" "$(calc "${SECS[$base-$n]} / ${SECS[$ours-$n]}")"
			fi
		done
	done
done
if [[ -n $LATENCY_TOOLS ]]; then
	printf '\narchive_command latency for a segment already pushed ahead (1 repo, %s calls)\n' "$((ready - 1))"
	printf '%-18s %10s %8s\n' tool median-ms p95-ms
	for tool in $LATENCY_TOOLS; do
		read -r med p95 < <(latency "$tool")
		printf '%-18s %10s %8s\n' "$tool" "$med" "$p95"
	done
fi
