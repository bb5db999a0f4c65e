#!/usr/bin/env bash
# restore.sh - restores the same full backup of a pgbench database with
# `pgbackrest restore` (2.45) and with `pgsidecar restore`, same repository,
# same process-max, each into a fresh directory as the OS user pgsidecar, and
# prints a table: seconds, MB/s (restored bytes per second), peak RSS, and
# the speed-up of pgsidecar over pgbackrest.
#
# How: a cluster is initialised with pgbench -i -s SCALE (scale 100 is about
# 1.5 GB), archiving with pgbackrest, and one full backup is taken with
# pgbackrest into a posix repository (lz4 + aes-256-cbc by default). The
# cluster is then stopped, and each tool restores the backup ROUNDS times;
# the best round counts. RSS is the peak resident size of the tool's
# processes (pgbackrest's local workers included), sampled every 20 ms. Page
# cache is not dropped between runs: both tools read a warm repository
# (REPO=s3: MinIO's, through HTTPS).
#
# Usage: bench/restore.sh            (as root; needs bin/pgsidecar: make build)
# Env:   SCALE (default 100), PROCESS_MAX (default 2), ROUNDS (default 1),
#        REPO (posix or s3; default posix),
#        COMPRESS (default lz4), CIPHER (aes-256-cbc or none; default aes-256-cbc),
#        PGSIDECAR (default bin/pgsidecar), CPUPROFILE (a file: pgsidecar's CPU
#        profile of the last round is written there, for `go tool pprof`).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SCALE=${SCALE:-100}
PROCESS_MAX=${PROCESS_MAX:-2}
ROUNDS=${ROUNDS:-1}
COMPRESS=${COMPRESS:-lz4}
CIPHER=${CIPHER:-aes-256-cbc}
PGSIDECAR=${PGSIDECAR:-$ROOT/bin/pgsidecar}
CPUPROFILE=${CPUPROFILE:-}
REPO=${REPO:-posix}
OS_USER=pgsidecar
W=/tmp/pgsidecar-bench-restore
PORT=55498
BUCKET=pgsidecar-bench-restore
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ -x $PGSIDECAR ]] || { echo "restore.sh: $PGSIDECAR missing: run 'make build' first" >&2; exit 1; }
bash scripts/services.sh postgres >/dev/null

prepare_workdir "$([[ $REPO == s3 ]] && echo true || echo false)"

CONF=$W/pgbackrest.conf
{
	echo "[global]"
	repo_conf 1 "$REPO" "$([[ $REPO == s3 ]] && echo "$BUCKET" || echo "$W/repo")"
	if [[ $CIPHER != none ]]; then
		echo "repo1-cipher-type=$CIPHER"
		echo "repo1-cipher-pass=bench-restore-passphrase"
	fi
	echo "repo1-retention-full=1"
	common_conf
} >"$CONF"
chown "$OS_USER:$OS_USER" "$CONF"

echo "creating a pgbench database of scale $SCALE and backing it up with pgbackrest..."
make_source "$CONF"
as_user pgbackrest --config="$CONF" --stanza=db --type=full --start-fast backup
stop_pg "$W/source"
label=$(as_user pgbackrest --config="$CONF" --stanza=db --output=json info |
	grep -o '"label":"[0-9]*-[0-9]*F"' | tail -1 | cut -d'"' -f4)
repo_bytes=$(as_user pgbackrest --config="$CONF" --stanza=db --output=json info |
	grep -o '"repository":{"delta":[0-9]*,"size":[0-9]*}' | tail -1 | grep -o '[0-9]*}' | tr -d '}')
echo "backup $label: $((repo_bytes >> 20)) MiB in the repository"

declare -A SECS BYTES RSS
run() {
	local tool=$1 bin pattern dir round
	case $tool in
	pgsidecar) bin="$W/pgsidecar"; pattern="pgsidecar --config"
		[[ -n $CPUPROFILE ]] && bin="env PGSIDECAR_CPUPROFILE=$W/cpu.prof $bin" ;;
	pgbackrest) bin=/usr/bin/pgbackrest; pattern="pgbackrest --config" ;;
	esac
	for ((round = 1; round <= ROUNDS; round++)); do
		dir=$W/restore-$tool
		rm -rf "$dir"
		as_user mkdir -m 0700 "$dir"
		local rssfile=$W/rss t0 t1 secs
		echo 0 >"$rssfile"
		sample_rss "$pattern" "$rssfile" &
		local sampler=$!
		t0=$(date +%s.%N)
		as_user $bin --config="$CONF" --stanza=db --pg1-path="$dir" --process-max="$PROCESS_MAX" \
			--set="$label" --type=immediate --target-action=promote restore >"$W/log/$tool-restore.out" 2>&1 ||
			{ kill "$sampler"; echo "restore.sh: $tool restore failed:" >&2; cat "$W/log/$tool-restore.out" >&2; exit 1; }
		t1=$(date +%s.%N)
		kill "$sampler" 2>/dev/null || true
		wait "$sampler" 2>/dev/null || true
		[[ -f $W/cpu.prof ]] && cp "$W/cpu.prof" "$CPUPROFILE"
		secs=$(calc "$t1 - $t0")
		if [[ -z ${SECS[$tool]:-} ]] || awk "BEGIN { exit !($secs < ${SECS[$tool]}) }"; then
			SECS[$tool]=$secs
			RSS[$tool]=$(($(cat "$rssfile") / 1024))
		fi
		BYTES[$tool]=$(du -sb --exclude=postgresql.auto.conf --exclude=recovery.signal "$dir" | cut -f1)
	done
}

for tool in pgbackrest pgsidecar; do
	run "$tool"
done
if [[ ${BYTES[pgbackrest]} != "${BYTES[pgsidecar]}" ]]; then
	echo "restore.sh: warning: pgbackrest restored ${BYTES[pgbackrest]} bytes, pgsidecar ${BYTES[pgsidecar]}" >&2
fi
printf '\nscale %s, %s repository, %s + %s, process-max %s, %s MiB restored from %s MiB\n' "$SCALE" "$REPO" "$COMPRESS" "$CIPHER" "$PROCESS_MAX" \
	"$((BYTES[pgbackrest] >> 20))" "$((repo_bytes >> 20))"
printf '%-12s %8s %8s %9s\n' tool seconds MB/s peak-RSS
for tool in pgbackrest pgsidecar; do
	printf '%-12s %8.2f %8.1f %9s\n' "$tool" "${SECS[$tool]}" "$(calc "${BYTES[$tool]} / 1000000 / ${SECS[$tool]}")" "${RSS[$tool]}MiB"
done
printf 'speed-up of pgsidecar over pgbackrest: %.2fx\n' "$(calc "${SECS[pgbackrest]} / ${SECS[pgsidecar]}")"
