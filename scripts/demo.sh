#!/usr/bin/env bash
# demo.sh - the main job of pgsidecar on its embedded default: a local volume
# repository (repo1, posix) beside a throwaway PostgreSQL 15 cluster, all under
# .build/demo, removed again at the end. `make demo` builds bin/pgsidecar and
# runs this script.
#
# It shows what pgsidecar can do so far; each step prints the command it runs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin/pgsidecar
DEMO=$ROOT/.build/demo
PG_BIN=/usr/lib/postgresql/15/bin
OS_USER=pgsidecar
PORT=${PGSIDECAR_DEMO_PORT:-55432}
STANZA=demo

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}
# as_user runs a command as the non-root OS user that owns the cluster, as the
# postgres container and the sidecar run in a pod.
as_user() {
	printf '$ %s\n' "$*"
	runuser -u "$OS_USER" -- "$@"
}

[[ -x $BIN ]] || {
	echo "demo: $BIN is missing; run 'make demo' (it builds first)" >&2
	exit 1
}

step "PostgreSQL 15, pgBackRest 2.45 and the OS user '$OS_USER' (installed if missing)"
bash scripts/services.sh postgres

# The cluster and the sidecar run as $OS_USER: when the checkout is not
# reachable by that user (a home directory of mode 0700), work under /tmp.
if ! runuser -u "$OS_USER" -- test -x "$BIN"; then
	DEMO=/tmp/pgsidecar-demo
	mkdir -p "$DEMO/bin"
	install -m 0755 "$BIN" "$DEMO/bin/pgsidecar"
	BIN=$DEMO/bin/pgsidecar
	echo "demo: $ROOT is not readable by $OS_USER; working in $DEMO"
fi

cleanup() {
	if [[ -n ${DAEMON:-} ]]; then kill "$DAEMON" 2>/dev/null || true; fi
	for d in "$DEMO/pgdata" "$DEMO/restored" "$DEMO/pitr"; do
		if [[ -f $d/postmaster.pid ]]; then
			runuser -u "$OS_USER" -- "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
		fi
	done
	if [[ -z ${PGSIDECAR_DEMO_KEEP:-} ]]; then
		rm -rf "$DEMO"
	else
		echo "demo: kept $DEMO (PGSIDECAR_DEMO_KEEP is set)"
	fi
}
trap cleanup EXIT
if [[ -f $DEMO/pgdata/postmaster.pid ]]; then
	runuser -u "$OS_USER" -- "$PG_BIN/pg_ctl" -D "$DEMO/pgdata" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$DEMO"/{pgdata,restored,pitr,run,repo1,conf.d,spool}
mkdir -p "$DEMO"/{run,repo1,conf.d,spool}
chown -R "$OS_USER:$OS_USER" "$DEMO"

step "A throwaway PostgreSQL 15 cluster on port $PORT"
as_user "$PG_BIN/initdb" --data-checksums -A trust -U postgres -D "$DEMO/pgdata" >/dev/null
cat >>"$DEMO/pgdata/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DEMO/run'
wal_level = replica
max_wal_senders = 2
archive_mode = on
archive_command = '$BIN --config=$DEMO/pgbackrest.conf --config-include-path=$DEMO/conf.d --stanza=$STANZA archive-push %p'
EOF
as_user "$PG_BIN/pg_ctl" -D "$DEMO/pgdata" -l "$DEMO/postgres.log" -w start >/dev/null
as_user "$PG_BIN/psql" -h "$DEMO/run" -p "$PORT" -U postgres -Atc "select 'PostgreSQL ' || current_setting('server_version')"

step "The configuration: the embedded default repo1 (a local volume) plus the cluster"
cat >"$DEMO/pgbackrest.conf" <<EOF
[global]
repo1-path=$DEMO/repo1
repo1-retention-full=2
log-level-console=info
compress-type=lz4
process-max=2
archive-async=y
spool-path=$DEMO/spool

[$STANZA]
pg1-path=$DEMO/pgdata
pg1-port=$PORT
pg1-socket-path=$DEMO/run
pg1-user=postgres
EOF
chown "$OS_USER:$OS_USER" "$DEMO/pgbackrest.conf"
sed 's/^/    /' "$DEMO/pgbackrest.conf"
PGS=("$BIN" "--config=$DEMO/pgbackrest.conf" "--config-include-path=$DEMO/conf.d" "--stanza=$STANZA")

step "pgsidecar version"
as_user "$BIN" version

step "pgsidecar config: every resolved option and where it came from"
as_user "${PGS[@]}" config

step "pgsidecar stanza-create: archive.info and backup.info in repo1, read from pg_control"
as_user "${PGS[@]}" stanza-create
find "$DEMO/repo1" -type f | sed "s|$DEMO/||" | sort | sed 's/^/    /'

step "pgsidecar run: the warm sidecar daemon (socket $DEMO/spool/pgsidecar-$STANZA.sock)"
printf '$ %s &\n' "${PGS[*]} run"
DAEMON_LOG=$DEMO/daemon.log
# setpriv execs the daemon itself, so SIGTERM reaches it directly.
setpriv --reuid="$OS_USER" --regid="$OS_USER" --init-groups "${PGS[@]}" --log-level-console=info run >"$DAEMON_LOG" 2>&1 &
DAEMON=$!
for _ in $(seq 1 50); do [[ -S $DEMO/spool/pgsidecar-$STANZA.sock ]] && break; sleep 0.1; done

step "WAL archiving: PostgreSQL's archive_command is 'pgsidecar archive-push %p'"
grep '^archive_command' "$DEMO/pgdata/postgresql.conf" | sed 's/^/    /'
PSQL=("$PG_BIN/psql" -h "$DEMO/run" -p "$PORT" -U postgres -Atq)
as_user "${PSQL[@]}" -c "create table demo as select g, md5(g::text) from generate_series(1, 200000) g"
for _ in 1 2 3; do
	SEG=$(runuser -u "$OS_USER" -- "${PSQL[@]}" -c "insert into demo values (0, 'x'); select pg_walfile_name(pg_switch_wal())")
done
for _ in $(seq 1 100); do
	[[ $(runuser -u "$OS_USER" -- "${PSQL[@]}" -c "select coalesce(last_archived_wal, '') from pg_stat_archiver") == "$SEG" ]] && break
	sleep 0.1
done
as_user "${PSQL[@]}" -c "select 'archived: ' || archived_count || ', failed: ' || failed_count || ', last: ' || last_archived_wal from pg_stat_archiver"
find "$DEMO/repo1/archive" -type f -name '0000*' | sed "s|$DEMO/||" | sort | sed 's/^/    /'
echo "    the daemon's log:"
sed 's/^/      /' "$DEMO/daemon.log" | tail -n 12

step "archive-get (restore_command) fetches $SEG back: identical to pg_wal's copy"
as_user "${PGS[@]}" archive-get "$SEG" "$DEMO/run/$SEG.fetched"
sha1sum "$DEMO/pgdata/pg_wal/$SEG" "$DEMO/run/$SEG.fetched" | sed 's/^/    /'
cmp "$DEMO/pgdata/pg_wal/$SEG" "$DEMO/run/$SEG.fetched" && echo "    identical"

step "pgsidecar backup: a full backup, more writes, then an incremental one (queued and run by the daemon, one at a time)"
as_user "${PGS[@]}" --type=full --start-fast backup
runuser -u "$OS_USER" -- "${PSQL[@]}" -c "update demo set md5 = md5(md5) where g % 10 = 0"
as_user "${PGS[@]}" --type=incr --start-fast backup

step "pgsidecar info (pgBackRest's report, text and JSON)"
as_user "${PGS[@]}" info
as_user "${PGS[@]}" --output=json info
echo

step "stock pgbackrest 2.45 reads what pgsidecar wrote: info, and archive-get of $SEG"
PGBR=(pgbackrest --config="$DEMO/pgbackrest.conf" --log-path="$DEMO" --lock-path="$DEMO/run" --stanza="$STANZA")
as_user "${PGBR[@]}" info
as_user "${PGBR[@]}" --no-archive-async archive-get "$SEG" "$DEMO/run/$SEG.pgbackrest"
cmp "$DEMO/run/$SEG.fetched" "$DEMO/run/$SEG.pgbackrest" && echo "    identical to what pgsidecar fetched"

step "stock pgbackrest restores pgsidecar's incremental backup beside the cluster (port $((PORT + 1)))"
WANT=$(runuser -u "$OS_USER" -- "${PSQL[@]}" -c "select count(*) || ' rows, ' || md5(string_agg(md5, ',' order by g)) from demo")
as_user "${PGBR[@]}" --pg1-path="$DEMO/restored" --type=immediate --target-action=promote \
	--archive-mode=off --log-level-console=warn restore
echo "port = $((PORT + 1))" >>"$DEMO/restored/postgresql.auto.conf"
as_user "$PG_BIN/pg_ctl" -D "$DEMO/restored" -l "$DEMO/restored.log" -w start >/dev/null
RPSQL=("$PG_BIN/psql" -h "$DEMO/run" -p $((PORT + 1)) -U postgres -Atq)
for _ in $(seq 1 100); do
	[[ $(runuser -u "$OS_USER" -- "${RPSQL[@]}" -c "select pg_is_in_recovery()" 2>/dev/null) == f ]] && break
	sleep 0.1
done
GOT=$(runuser -u "$OS_USER" -- "${RPSQL[@]}" -c "select count(*) || ' rows, ' || md5(string_agg(md5, ',' order by g)) from demo")
echo "    source:   $WANT"
echo "    restored: $GOT"
[[ $WANT == "$GOT" ]] && echo "    identical"
as_user "$PG_BIN/pg_ctl" -D "$DEMO/restored" -m fast stop >/dev/null

step "point-in-time recovery with pgsidecar restore: back to a named restore point"
runuser -u "$OS_USER" -- "${PSQL[@]}" -c "create table marks (phase text, at timestamptz default clock_timestamp())"
runuser -u "$OS_USER" -- "${PSQL[@]}" -c "insert into marks values ('before the target')"
as_user "${PSQL[@]}" -c "select 'restore point at ' || pg_create_restore_point('demo-target')"
runuser -u "$OS_USER" -- "${PSQL[@]}" -c "insert into marks values ('after the target')"
SEG=$(runuser -u "$OS_USER" -- "${PSQL[@]}" -c "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 100); do
	[[ $(runuser -u "$OS_USER" -- "${PSQL[@]}" -c "select coalesce(last_archived_wal, '') from pg_stat_archiver") == "$SEG" ]] && break
	sleep 0.1
done
as_user "${PGS[@]}" --pg1-path="$DEMO/pitr" --type=name --target=demo-target --target-action=promote restore
echo "port = $((PORT + 2))" >>"$DEMO/pitr/postgresql.auto.conf"
grep -A12 'Recovery settings' "$DEMO/pitr/postgresql.auto.conf" | sed 's/^/    /'
as_user "$PG_BIN/pg_ctl" -D "$DEMO/pitr" -l "$DEMO/pitr.log" -w start >/dev/null
PPSQL=("$PG_BIN/psql" -h "$DEMO/run" -p $((PORT + 2)) -U postgres -Atq)
for _ in $(seq 1 100); do
	[[ $(runuser -u "$OS_USER" -- "${PPSQL[@]}" -c "select pg_is_in_recovery()" 2>/dev/null) == f ]] && break
	sleep 0.1
done
echo "    rows of marks in the recovered cluster:"
runuser -u "$OS_USER" -- "${PPSQL[@]}" -c "select phase from marks order by at" | sed 's/^/      /'
as_user "$PG_BIN/pg_ctl" -D "$DEMO/pitr" -m fast stop >/dev/null

step "pgsidecar verify: every archived WAL and backup file decrypted, decompressed and checksummed"
as_user "${PGS[@]}" verify

step "stopping the daemon (SIGTERM: in-flight pushes drain first)"
kill -TERM "$DAEMON"
if wait "$DAEMON"; then
	echo "    daemon exited cleanly"
else
	echo "    daemon exited with status $?"
fi
tail -n 2 "$DAEMON_LOG" | sed 's/^/    /'
DAEMON=

step "done"
echo "demo: everything above ran against $DEMO; it is removed now."
