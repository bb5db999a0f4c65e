# lib.sh - shell functions the benchmark scripts share; source it after
# setting W (the work directory) and OS_USER.
# shellcheck shell=bash

PG_BIN=/usr/lib/postgresql/15/bin
PGSIDECAR_CACHE=${PGSIDECAR_CACHE:-$HOME/.cache/pgsidecar}
# MinIO as scripts/services.sh starts it (the test-services contract).
MINIO_HOST=127.0.0.1
MINIO_PORT=9000
MINIO_KEY=pgsidecar
MINIO_SECRET=pgsidecar-secret
MINIO_CA=$PGSIDECAR_CACHE/run/minio/certs/public.crt

as_user() { runuser -u "$OS_USER" -- "$@"; }

# stop_pg DIR [MODE]: stop the cluster in DIR (fast by default), quietly.
stop_pg() { as_user "$PG_BIN/pg_ctl" -D "$1" -m "${2:-fast}" stop >/dev/null 2>&1 || true; }

calc() { awk "BEGIN { print $* }"; }

# busy_ticks: the machine's busy CPU time so far, in clock ticks.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

# sample_rss PATTERN OUT: write to OUT the peak summed RSS (KiB) of the
# processes whose command line matches PATTERN, every 20 ms, until killed.
sample_rss() {
	local peak=0 cur
	while :; do
		cur=$(ps -eo rss=,args= | awk -v p="$1" '$0 ~ p && $0 !~ /awk/ {s+=$1} END {print s+0}')
		((cur > peak)) && peak=$cur && echo "$peak" >"$2"
		sleep 0.02
	done
}

# minio METHOD BUCKET: create (PUT) or remove (DELETE) a bucket on MinIO.
minio() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$MINIO_KEY:$MINIO_SECRET" --cacert "$MINIO_CA" -X "$1" "https://$MINIO_HOST:$MINIO_PORT/$2")
	[[ $code == 2* || ($1 == PUT && $code == 409) ]] || { echo "minio $1 $2: HTTP $code" >&2; return 1; }
}

# minio_empty BUCKET: remove every object of BUCKET (pgbackrest repo-rm is
# not a thing; a bucket must be empty to be deleted).
minio_empty() {
	local keys i
	for ((i = 0; i < 1000; i++)); do
		keys=$(curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user "$MINIO_KEY:$MINIO_SECRET" --cacert "$MINIO_CA" \
			"https://$MINIO_HOST:$MINIO_PORT/$1?list-type=2&max-keys=1000" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g') || true
		[[ -z $keys ]] && return 0
		while read -r k; do
			curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user "$MINIO_KEY:$MINIO_SECRET" \
				--cacert "$MINIO_CA" -X DELETE "https://$MINIO_HOST:$MINIO_PORT/$1/$k"
		done <<<"$keys"
	done
	echo "minio_empty $1: objects left after 1000 rounds" >&2
	return 1
}

# repo_conf N TYPE WHERE: pgBackRest options of repository N: TYPE posix
# (WHERE is its directory) or s3 (WHERE is the MinIO bucket).
repo_conf() {
	case $2 in
	posix) echo "repo$1-path=$3" ;;
	s3)
		echo "repo$1-type=s3"
		echo "repo$1-path=/repo"
		echo "repo$1-s3-bucket=$3"
		echo "repo$1-s3-endpoint=$MINIO_HOST"
		echo "repo$1-storage-port=$MINIO_PORT"
		echo "repo$1-s3-region=us-east-1"
		echo "repo$1-s3-key=$MINIO_KEY"
		echo "repo$1-s3-key-secret=$MINIO_SECRET"
		echo "repo$1-s3-uri-style=path"
		# pgbackrest 2.45 matches only DNS names of the certificate, and
		# MinIO's is for IP:127.0.0.1: no verification (as the tests).
		echo "repo$1-storage-verify-tls=n"
		;;
	*) echo "repo_conf: unknown repository type $2" >&2; return 1 ;;
	esac
}

# common_conf: the [global] options after the repositories and the [db]
# section of the source cluster $W/source (pgBackRest INI lines).
common_conf() {
	echo "compress-type=$COMPRESS"
	echo "process-max=$PROCESS_MAX"
	echo "log-path=$W/log"
	echo "lock-path=$W/run"
	echo "spool-path=$W/spool"
	echo "log-level-console=warn"
	echo "log-level-file=off"
	echo "[db]"
	echo "pg1-path=$W/source"
	echo "pg1-port=$PORT"
	echo "pg1-socket-path=$W/run"
	echo "pg1-user=postgres"
}

# make_source CONF: a cluster in $W/source (data checksums) archiving with
# pgbackrest per CONF, started, its stanza created, and a pgbench database
# of scale $SCALE.
make_source() {
	as_user "$PG_BIN/initdb" -A trust -U postgres -D "$W/source" --data-checksums >/dev/null
	cat >>"$W/source/postgresql.conf" <<EOC
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W/run'
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$1 --stanza=db archive-push %p'
max_wal_size = 4GB
checkpoint_timeout = 1h
EOC
	as_user "$PG_BIN/pg_ctl" -D "$W/source" -l "$W/source.log" -w start >/dev/null
	as_user pgbackrest --config="$1" --stanza=db stanza-create
	as_user "$PG_BIN/pgbench" -h "$W/run" -p "$PORT" -U postgres -i -q -s "$SCALE" postgres 2>&1 | tail -1
}

# prepare_workdir USES_S3: a fresh $W (run and log directories, the
# pgsidecar binary $PGSIDECAR installed as $W/pgsidecar), with the MinIO
# bucket $BUCKET when USES_S3 is true; all of it is removed at exit.
prepare_workdir() {
	USES_S3=$1
	cleanup() {
		[[ -f $W/source/postmaster.pid ]] && stop_pg "$W/source"
		if [[ $USES_S3 == true ]]; then
			minio_empty "$BUCKET" 2>/dev/null && minio DELETE "$BUCKET" 2>/dev/null || true
		fi
		rm -rf "$W"
	}
	trap cleanup EXIT
	cleanup
	mkdir -p "$W"/run "$W"/log
	install -m 0755 "$PGSIDECAR" "$W/pgsidecar"
	chown -R "$OS_USER:$OS_USER" "$W"
	if [[ $USES_S3 == true ]]; then minio PUT "$BUCKET"; fi
}
