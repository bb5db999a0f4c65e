#!/usr/bin/env bash
# backup.sh - full backups of the same pgbench database with `pgbackrest
# backup` (2.45) and `pgsidecar backup`, same repositories, same
# process-max, zst + aes-256-cbc by default, to a posix repository and to
# MinIO, and prints a table: seconds, MB/s (cluster bytes per second), CPU
# seconds per GB, peak RSS, and the speed-up of pgsidecar over pgbackrest.
#
# How: a cluster is initialised with pgbench -i -s SCALE (scale 140 is about
# 2.1 GB) with data checksums, archiving with pgbackrest to both
# repositories; then each tool takes ROUNDS full backups (start-fast) into
# each repository, alternating tools; the best round counts. CPU is the
# user+system time of the tool and its children (pgbackrest's local workers);
# MinIO's own CPU is not counted (both tools make it work alike). RSS is the
# peak summed resident size of the tool's processes, sampled every 20 ms.
#
# Usage: bench/backup.sh            (as root; needs bin/pgsidecar: make build,
#                                    and MinIO: bash scripts/services.sh start)
# Env:   SCALE (default 140), PROCESS_MAX (default 2), ROUNDS (default 1),
#        COMPRESS (default zst), CIPHER (aes-256-cbc or none), REPOS (default
#        "posix s3"), PGSIDECAR (default bin/pgsidecar).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SCALE=${SCALE:-140}
PROCESS_MAX=${PROCESS_MAX:-2}
ROUNDS=${ROUNDS:-1}
COMPRESS=${COMPRESS:-zst}
CIPHER=${CIPHER:-aes-256-cbc}
REPOS=${REPOS:-"posix s3"}
PGSIDECAR=${PGSIDECAR:-$ROOT/bin/pgsidecar}
OS_USER=pgsidecar
W=/tmp/pgsidecar-bench-backup
PORT=55497
BUCKET=pgsidecar-bench-backup
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ -x $PGSIDECAR ]] || { echo "backup.sh: $PGSIDECAR missing: run 'make build' first" >&2; exit 1; }
bash scripts/services.sh postgres >/dev/null

prepare_workdir "$([[ " $REPOS " == *" s3 "* ]] && echo true || echo false)"

CONF=$W/pgbackrest.conf
declare -A REPO_NUM
{
	echo "[global]"
	n=0
	for r in $REPOS; do
		n=$((n + 1))
		REPO_NUM[$r]=$n
		repo_conf "$n" "$r" "$([[ $r == s3 ]] && echo "$BUCKET" || echo "$W/repo-$r")"
		if [[ $CIPHER != none ]]; then
			echo "repo$n-cipher-type=$CIPHER"
			echo "repo$n-cipher-pass=bench-backup-passphrase-$n"
		fi
		echo "repo$n-retention-full=99"
	done
	echo "start-fast=y"
	common_conf
} >"$CONF"
chown "$OS_USER:$OS_USER" "$CONF"

echo "creating a pgbench database of scale $SCALE..."
make_source "$CONF"
as_user "$PG_BIN/psql" -h "$W/run" -p "$PORT" -U postgres -Atqc "checkpoint" >/dev/null
DB_BYTES=$(du -sb --exclude=pg_wal "$W/source" | cut -f1)
echo "cluster: $((DB_BYTES >> 20)) MiB (pg_wal excluded)"

declare -A SECS CPU RSS
run() {
	local tool=$1 repo=$2 bin pattern key=$1/$2
	case $tool in
	pgsidecar) bin="$W/pgsidecar"; pattern="pgsidecar --config" ;;
	pgbackrest) bin=/usr/bin/pgbackrest; pattern="pgbackrest --config" ;;
	esac
	local rssfile=$W/rss timefile=$W/time secs cpu
	echo 0 >"$rssfile"
	sample_rss "$pattern" "$rssfile" &
	local sampler=$!
	/usr/bin/time -o "$timefile" -f "%e %U %S" runuser -u "$OS_USER" -- "$bin" --config="$CONF" --stanza=db \
		--repo="${REPO_NUM[$repo]}" --type=full backup >"$W/log/$tool-backup.out" 2>&1 ||
		{ kill "$sampler"; echo "backup.sh: $tool backup to $repo failed:" >&2; cat "$W/log/$tool-backup.out" >&2; exit 1; }
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	read -r secs user sys <"$timefile"
	cpu=$(calc "$user + $sys")
	if [[ -z ${SECS[$key]:-} ]] || awk "BEGIN { exit !($secs < ${SECS[$key]}) }"; then
		SECS[$key]=$secs CPU[$key]=$cpu RSS[$key]=$(($(cat "$rssfile") / 1024))
	fi
}

for ((round = 1; round <= ROUNDS; round++)); do
	for repo in $REPOS; do
		for tool in pgbackrest pgsidecar; do
			echo "round $round: $tool backup to $repo..."
			run "$tool" "$repo"
		done
	done
done
# Both tools' backups must be listed and valid in every repository.
as_user pgbackrest --config="$CONF" --stanza=db info >"$W/log/info.txt"
want=$((ROUNDS * 2))
for repo in $REPOS; do
	got=$(grep -c "full backup:" <(as_user pgbackrest --config="$CONF" --stanza=db --repo="${REPO_NUM[$repo]}" info))
	[[ $got == "$want" ]] || { echo "backup.sh: $got backups in $repo, want $want" >&2; cat "$W/log/info.txt" >&2; exit 1; }
done

printf '\nscale %s (%s MiB), %s + %s, process-max %s, best of %s\n' "$SCALE" "$((DB_BYTES >> 20))" "$COMPRESS" "$CIPHER" \
	"$PROCESS_MAX" "$ROUNDS"
printf '%-6s %-11s %8s %8s %10s %9s\n' repo tool seconds MB/s CPU-s/GB peak-RSS
for repo in $REPOS; do
	for tool in pgbackrest pgsidecar; do
		k=$tool/$repo
		printf '%-6s %-11s %8.2f %8.1f %10.2f %9s\n' "$repo" "$tool" "${SECS[$k]}" "$(calc "$DB_BYTES / 1000000 / ${SECS[$k]}")" \
			"$(calc "${CPU[$k]} / ($DB_BYTES / 1000000000)")" "${RSS[$k]}MiB"
	done
	printf '%-6s speed-up of pgsidecar over pgbackrest: %.2fx\n' "$repo" "$(calc "${SECS[pgbackrest/$repo]} / ${SECS[pgsidecar/$repo]}")"
done
