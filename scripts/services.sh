#!/usr/bin/env bash
# services.sh - install and run the object-storage services the pgsidecar test
# suites talk to: MinIO (S3, HTTPS), fake-gcs-server (GCS, HTTP) and Azurite
# (Azure Blob, HTTP), all on 127.0.0.1. It also installs PostgreSQL 15 and
# pgBackRest 2.45 (Debian packages) and creates the non-root OS user that the
# tests initdb their clusters as.
#
# Usage: scripts/services.sh start|stop|status|postgres
#
#   start   install what is missing (idempotent), then start every service that
#           does not already answer and wait until each one does.
#   stop    stop the services this script started (the pids it recorded).
#           Services started some other way (no pid file) are left alone.
#   status  print each service, its recorded pid and whether it answers;
#           exits 0 only when all of them answer.
#   postgres  only install PostgreSQL 15 and pgBackRest and create the OS
#           user (what `make demo` needs; no object-storage service).
#
# Environment:
#   PGSIDECAR_CACHE         cache and run-state dir (default $HOME/.cache/pgsidecar)
#   GO                      go command used to build missing binaries (default go)
#   PGSIDECAR_WAIT_SECONDS  how long start waits for each service (default 60)
#   PGSIDECAR_NODE_MIN_MAJOR  oldest system node Azurite may run on (default 20);
#                           an older one makes start fetch Node.js 22 from npm
#
# Layout: binaries in $PGSIDECAR_CACHE/bin, Azurite in $PGSIDECAR_CACHE/npm
# (and, only when needed, Node.js in $PGSIDECAR_CACHE/node),
# pid/log/data/certs in $PGSIDECAR_CACHE/run/<service>/.
set -euo pipefail

PGSIDECAR_CACHE=${PGSIDECAR_CACHE:-$HOME/.cache/pgsidecar}
GO=${GO:-go}
WAIT_SECONDS=${PGSIDECAR_WAIT_SECONDS:-60}

BIN_DIR=$PGSIDECAR_CACHE/bin
NPM_DIR=$PGSIDECAR_CACHE/npm
RUN_DIR=$PGSIDECAR_CACHE/run
NODE_DIR=$PGSIDECAR_CACHE/node

MINIO_MODULE=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
FAKEGCS_MODULE=github.com/fsouza/fake-gcs-server@v1.56.1
AZURITE_PACKAGE=azurite@3.37.0
NODE_MIN_MAJOR=${PGSIDECAR_NODE_MIN_MAJOR:-20}
NODE_FALLBACK_MAJOR=22
PGBACKREST_VERSION=2.45
PG_BIN=/usr/lib/postgresql/15/bin
OS_USER=pgsidecar
OS_USER_HOME=/var/lib/pgsidecar

MINIO_USER=pgsidecar
MINIO_PASSWORD=pgsidecar-secret
MINIO_REGION=us-east-1

SERVICES=(minio gcs azurite)

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: %s\n' "$*" >&2; }
die() {
	printf 'services: error: %s\n' "$*" >&2
	exit 1
}

# as_root runs a command as root: directly when we are root, through
# non-interactive sudo otherwise.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "need root to run: $* (run this script as root or install sudo)"
	fi
}

# ---------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------

deb_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

install_debs() {
	local want=(postgresql-15 postgresql-contrib pgbackrest openssl curl ca-certificates time)
	local missing=() pkg
	for pkg in "${want[@]}"; do
		deb_installed "$pkg" || missing+=("$pkg")
	done
	if ! command -v node >/dev/null 2>&1; then
		missing+=(nodejs)
	fi
	if ! command -v npm >/dev/null 2>&1; then
		missing+=(npm)
	fi
	if [[ ${#missing[@]} -eq 0 ]]; then
		return
	fi
	command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get to install them"
	say "installing Debian packages: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# go_install_once builds a Go program into $BIN_DIR unless it is already there.
go_install_once() {
	local name=$1 module=$2 note=${3:-}
	if [[ -x $BIN_DIR/$name ]]; then
		return
	fi
	command -v "$GO" >/dev/null 2>&1 || die "$name is missing from $BIN_DIR and there is no Go toolchain ($GO) to build it"
	mkdir -p "$BIN_DIR"
	say "building $name from $module${note:+ ($note)}"
	local start=$SECONDS
	(cd / && GOBIN=$BIN_DIR CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" install "$module") ||
		die "go install $module failed"
	say "built $name in $((SECONDS - start))s"
}

# node_major prints the major version of a node binary (0 if it cannot run).
node_major() {
	local v
	v=$("$1" --version 2>/dev/null || echo v0)
	v=${v#v}
	echo "${v%%.*}"
}

# azurite_node prints the node binary Azurite runs with: the system node when
# it is recent enough, else the one ensure_azurite_node put in the cache.
azurite_node() {
	local sys
	sys=$(command -v node || true)
	if [[ -n $sys && $(node_major "$sys") -ge $NODE_MIN_MAJOR ]]; then
		echo "$sys"
	else
		echo "$NODE_DIR/node_modules/.bin/node"
	fi
}

# ensure_azurite_node installs a Node.js 22 binary from the npm registry
# (package node-linux-<arch>) when the system node is older than
# NODE_MIN_MAJOR, as Debian 12's node 18 is. Azurite 3.37 declares node >= 22;
# node 20 is known to run it.
ensure_azurite_node() {
	local node
	node=$(azurite_node)
	if [[ -x $node && $(node_major "$node") -ge $NODE_MIN_MAJOR ]]; then
		return
	fi
	local arch
	case $(uname -m) in
	x86_64) arch=x64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) die "system node is older than $NODE_MIN_MAJOR and there is no Node.js package for $(uname -m)" ;;
	esac
	mkdir -p "$NODE_DIR"
	say "system node is older than v$NODE_MIN_MAJOR; installing node-linux-$arch@$NODE_FALLBACK_MAJOR into $NODE_DIR"
	npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "node-linux-$arch@$NODE_FALLBACK_MAJOR" </dev/null ||
		die "npm install node-linux-$arch@$NODE_FALLBACK_MAJOR failed"
	ln -sfn "../node-linux-$arch/bin/node" "$NODE_DIR/node_modules/.bin/node"
	[[ $(node_major "$NODE_DIR/node_modules/.bin/node") -ge $NODE_MIN_MAJOR ]] ||
		die "the node installed in $NODE_DIR does not run"
}

install_azurite() {
	ensure_azurite_node
	if [[ -x $NPM_DIR/node_modules/.bin/azurite-blob ]]; then
		return
	fi
	mkdir -p "$NPM_DIR"
	say "installing $AZURITE_PACKAGE into $NPM_DIR"
	npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "$AZURITE_PACKAGE" </dev/null ||
		die "npm install $AZURITE_PACKAGE failed"
	[[ -x $NPM_DIR/node_modules/.bin/azurite-blob ]] || die "npm installed $AZURITE_PACKAGE but azurite-blob is missing"
}

ensure_os_user() {
	if id -u "$OS_USER" >/dev/null 2>&1; then
		return
	fi
	say "creating system user $OS_USER (home $OS_USER_HOME)"
	as_root useradd --system --user-group --create-home --home-dir "$OS_USER_HOME" \
		--shell /bin/bash --comment "pgsidecar test clusters" "$OS_USER"
}

verify_tools() {
	local out
	out=$(pgbackrest version 2>&1) || die "pgbackrest version failed: $out"
	[[ $out == "pgBackRest $PGBACKREST_VERSION" || $out == "pgBackRest $PGBACKREST_VERSION "* ]] ||
		die "pgbackrest must be $PGBACKREST_VERSION (Debian 12 package), got: $out"
	out=$("$PG_BIN/postgres" --version 2>&1) || die "$PG_BIN/postgres --version failed: $out"
	[[ $out == *"PostgreSQL) 15."* ]] || die "expected PostgreSQL 15 in $PG_BIN, got: $out"
	say "tools: $(pgbackrest version), $out"
}

# ensure_minio_cert generates MinIO's self-signed certificate once.
ensure_minio_cert() {
	local dir=$RUN_DIR/minio/certs
	if [[ -s $dir/public.crt && -s $dir/private.key ]]; then
		return
	fi
	mkdir -p "$dir"
	say "generating self-signed certificate in $dir (IP:127.0.0.1, DNS:localhost, 10 years)"
	local tmp
	tmp=$(mktemp -d "$dir/.gen.XXXXXX")
	openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
		-subj "/CN=localhost/O=pgsidecar test" \
		-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$tmp/private.key" -out "$tmp/public.crt" >/dev/null 2>&1 ||
		{
			rm -rf "$tmp"
			die "openssl could not generate the MinIO certificate"
		}
	chmod 600 "$tmp/private.key"
	chmod 644 "$tmp/public.crt"
	mv "$tmp/private.key" "$dir/private.key"
	mv "$tmp/public.crt" "$dir/public.crt"
	rmdir "$tmp"
}

install_all() {
	install_debs
	verify_tools
	ensure_os_user
	go_install_once minio "$MINIO_MODULE" "takes about 5 minutes"
	go_install_once fake-gcs-server "$FAKEGCS_MODULE"
	install_azurite
	ensure_minio_cert
}

# ---------------------------------------------------------------------------
# Per-service definitions
# ---------------------------------------------------------------------------

# url_of prints the address a service is probed at.
url_of() {
	case $1 in
	minio) echo "https://127.0.0.1:9000/minio/health/live" ;;
	gcs) echo "http://127.0.0.1:4443/storage/v1/b" ;;
	azurite) echo "http://127.0.0.1:10000/" ;;
	*) die "unknown service $1" ;;
	esac
}

# proc_marker is a string the service's command line contains; it guards
# against acting on a recycled pid.
proc_marker() {
	case $1 in
	minio) echo "$BIN_DIR/minio" ;;
	gcs) echo "$BIN_DIR/fake-gcs-server" ;;
	azurite) echo "azurite-blob" ;;
	*) die "unknown service $1" ;;
	esac
}

# answers reports whether the service responds on its port.
answers() {
	local svc=$1 url code
	url=$(url_of "$svc")
	case $svc in
	minio)
		curl -skf -o /dev/null --max-time 3 "$url"
		;;
	gcs)
		curl -sf -o /dev/null --max-time 3 "$url"
		;;
	azurite)
		# Any HTTP answer (even an error status) means Azurite is up.
		code=$(curl -s -o /dev/null --max-time 3 -w '%{http_code}' "$url" || true)
		[[ -n $code && $code != 000 ]]
		;;
	esac
}

pid_file() { echo "$RUN_DIR/$1/pid"; }

# recorded_pid prints the pid recorded for the service when that process is
# still alive and is the service; it prints nothing otherwise.
recorded_pid() {
	local svc=$1 file pid cmdline
	file=$(pid_file "$svc")
	[[ -f $file ]] || return 0
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
	[[ $cmdline == *"$(proc_marker "$svc")"* ]] || return 0
	echo "$pid"
}

# launch starts the service detached in its own session, output to its log;
# the pid written is the service's own (exec keeps it).
launch() {
	local svc=$1
	shift
	local dir=$RUN_DIR/$svc
	mkdir -p "$dir"
	rm -f "$dir/pid"
	if [[ -f $dir/log ]]; then
		mv -f "$dir/log" "$dir/log.1"
	fi
	printf '===== %s: starting %s\n' "$(date -u +%FT%TZ)" "$*" >"$dir/log"
	# shellcheck disable=SC2016 # expanded by the inner bash, on purpose
	setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$dir/pid" "$@" \
		</dev/null >>"$dir/log" 2>&1 9>&- &
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -s $dir/pid ]] && break
		sleep 0.1
	done
	[[ -s $dir/pid ]] || die "$svc did not record its pid; see $dir/log"
	say "$svc: started, pid $(<"$dir/pid"), log $dir/log"
}

start_minio() {
	mkdir -p "$RUN_DIR/minio/data"
	# The credentials go through the environment (bash exports assignments
	# that prefix a function call), so they never appear in the log header.
	MINIO_ROOT_USER=$MINIO_USER \
		MINIO_ROOT_PASSWORD=$MINIO_PASSWORD \
		MINIO_SITE_REGION=$MINIO_REGION \
		MINIO_UPDATE=off \
		launch minio "$BIN_DIR/minio" server \
		--address 127.0.0.1:9000 \
		--console-address 127.0.0.1:9001 \
		--certs-dir "$RUN_DIR/minio/certs" \
		"$RUN_DIR/minio/data"
}

start_gcs() {
	# The memory backend keeps full generation semantics (conditional writes,
	# ifGenerationMatch) and holds 64 MiB objects without touching the disk.
	launch gcs "$BIN_DIR/fake-gcs-server" \
		-scheme http \
		-host 127.0.0.1 \
		-port 4443 \
		-backend memory \
		-public-host 127.0.0.1:4443 \
		-external-url http://127.0.0.1:4443 \
		-log-level warn
}

start_azurite() {
	mkdir -p "$RUN_DIR/azurite/data"
	launch azurite "$(azurite_node)" "$NPM_DIR/node_modules/.bin/azurite-blob" \
		--blobHost 127.0.0.1 \
		--blobPort 10000 \
		--skipApiVersionCheck \
		--disableTelemetry \
		--location "$RUN_DIR/azurite/data"
}

log_tail() {
	local log=$RUN_DIR/$1/log
	if [[ -f $log ]]; then
		warn "last lines of $log:"
		tail -n 30 "$log" | sed 's/^/    /' >&2
	else
		warn "no log at $log (the service was not started by this script)"
	fi
}

# wait_answers waits up to WAIT_SECONDS for the service, failing early if the
# process it started has exited.
wait_answers() {
	local svc=$1 deadline=$((SECONDS + WAIT_SECONDS)) started=${2:-}
	while ((SECONDS < deadline)); do
		if answers "$svc"; then
			return 0
		fi
		if [[ -n $started ]] && ! kill -0 "$started" 2>/dev/null; then
			warn "$svc (pid $started) exited before answering on $(url_of "$svc")"
			log_tail "$svc"
			rm -f "$(pid_file "$svc")"
			return 1
		fi
		sleep 0.5
	done
	warn "$svc does not answer on $(url_of "$svc") after ${WAIT_SECONDS}s"
	log_tail "$svc"
	return 1
}

cmd_start() {
	local t0=$SECONDS
	install_all
	mkdir -p "$RUN_DIR"

	local svc pid
	local -A waiting=()
	for svc in "${SERVICES[@]}"; do
		pid=$(recorded_pid "$svc")
		if answers "$svc"; then
			say "$svc: already answering on $(url_of "$svc")${pid:+ (pid $pid)}; left alone"
			continue
		fi
		if [[ -n $pid ]]; then
			say "$svc: pid $pid is running but not answering yet; waiting for it instead of starting another"
			waiting[$svc]=$pid
			continue
		fi
		rm -f "$(pid_file "$svc")"
		case $svc in
		minio) start_minio ;;
		gcs) start_gcs ;;
		azurite) start_azurite ;;
		esac
		waiting[$svc]=$(<"$(pid_file "$svc")")
	done

	local failed=0
	for svc in "${SERVICES[@]}"; do
		[[ -n ${waiting[$svc]:-} ]] || continue
		if wait_answers "$svc" "${waiting[$svc]}"; then
			say "$svc: answering on $(url_of "$svc")"
		else
			failed=1
		fi
	done
	((failed == 0)) || die "some services did not come up (see above)"
	say "all services answer (start took $((SECONDS - t0))s)"
}

# stop_pid sends TERM, waits up to 20 s, then KILLs.
stop_pid() {
	local svc=$1 pid=$2 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	warn "$svc: pid $pid ignored TERM for 20s; sending KILL"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	die "$svc: pid $pid survived KILL"
}

cmd_stop() {
	local svc pid file
	for svc in "${SERVICES[@]}"; do
		file=$(pid_file "$svc")
		if [[ ! -f $file ]]; then
			if answers "$svc"; then
				say "$svc: not started by this script (no pid file) but answering; left alone"
			else
				say "$svc: not running"
			fi
			continue
		fi
		pid=$(recorded_pid "$svc")
		if [[ -z $pid ]]; then
			say "$svc: recorded pid $(<"$file") is gone; removing stale pid file"
			rm -f "$file"
			continue
		fi
		stop_pid "$svc" "$pid"
		rm -f "$file"
		say "$svc: stopped pid $pid"
	done
}

cmd_status() {
	local svc pid state all=0
	printf '%-10s %-8s %-9s %s\n' SERVICE PID STATE PROBE
	for svc in "${SERVICES[@]}"; do
		pid=$(recorded_pid "$svc")
		if answers "$svc"; then
			state=answering
		else
			state=down
			all=1
		fi
		if [[ -z $pid && -f $(pid_file "$svc") ]]; then
			pid="stale"
		fi
		printf '%-10s %-8s %-9s %s\n' "$svc" "${pid:--}" "$state" "$(url_of "$svc")"
	done
	return "$all"
}

# lock serialises start and stop so that two concurrent starts cannot both
# launch a service. The services themselves never inherit the lock (fd 9 is
# closed in launch).
lock() {
	mkdir -p "$RUN_DIR"
	exec 9>"$RUN_DIR/.lock"
	if command -v flock >/dev/null 2>&1; then
		flock 9
	fi
}

main() {
	case ${1:-} in
	start)
		lock
		cmd_start
		;;
	stop)
		lock
		cmd_stop
		;;
	status) cmd_status ;;
	postgres)
		lock
		install_debs
		ensure_os_user
		verify_tools
		;;
	*)
		echo "usage: $0 start|stop|status|postgres" >&2
		exit 2
		;;
	esac
}

main "$@"
