# What the example's deploy, database, cache and check scripts share; they
# source it after setting deploy_dir to this directory.
#
# An instance is the demo service of one release in one slot of an
# environment (development a, b and surge; staging blue and green;
# production stable and canary), on the slot's fixed port: the pipeline's
# var PORT_<SLOT> (PORT_CANARY, PORT_BLUE...). Everything lives under
# $MINT_STATE (set in deploy/local.env, which tools/run-local.sh writes into
# the example repository):
#
#   images/<digest>/          the image pulled from the registry (OCI layout)
#   slots/<env>-<slot>/       releases/<digest>/ (the image unpacked by
#                             umoci), pid, image (what runs), instance.log
#   launcher/                 requests to local/launcher.py
#   db/, cache/               the environments' database and cache state
#
# Instances are started by local/launcher.py, a process outside sluice:
# a deployment's commands run in a process group that sluice ends, with
# everything left in it, when the command exits.

set -eu

prog=$(basename "$0")

if [ -z "${MINT_STATE:-}" ] && [ -f "$deploy_dir/local.env" ]; then
	# shellcheck disable=SC1091
	. "$deploy_dir/local.env"
fi
[ -n "${MINT_STATE:-}" ] || {
	echo "$prog: MINT_STATE is not set and $deploy_dir/local.env does not set it" >&2
	exit 1
}

say() { printf '%s: %s\n' "$prog" "$*"; }
# The last line a command prints is what sluice reports for it.
die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

need_env() {
	[ -n "${SLUICE_ENV:-}" ] || die "SLUICE_ENV is not set"
	case $SLUICE_ENV in *[!a-zA-Z0-9_-]*) die "SLUICE_ENV \"$SLUICE_ENV\": not a name" ;; esac
}

# slot_port SLOT: the value of PORT_<SLOT>.
slot_port() {
	local var port
	case $1 in '' | *[!a-zA-Z0-9_]*) die "slot \"$1\": letters, digits and _ only" ;; esac
	var=PORT_$(printf '%s' "$1" | tr 'a-z' 'A-Z')
	eval "port=\${$var:-}"
	case $port in
	'' | *[!0-9]*) die "slot $1: $var is not set to a port (\"$port\")" ;;
	esac
	printf '%s\n' "$port"
}

slot_dir() { printf '%s/slots/%s-%s\n' "$MINT_STATE" "$SLUICE_ENV" "$1"; }

# The demo service knows the tracks stable, canary, blue and green; the
# development slots serve as stable.
slot_track() {
	case $1 in stable | canary | blue | green) printf '%s\n' "$1" ;; *) echo stable ;; esac
}

# image_digest REF: the sha256 hex of REF (REGISTRY/REPO@sha256:... as the
# push stage writes it, or REGISTRY/REPO:TAG, which the registry resolves).
image_digest() {
	local hex
	case $1 in
	*@sha256:*)
		hex=${1##*@sha256:}
		;;
	'')
		die "no image: SLUICE_IMAGE is empty"
		;;
	*)
		hex=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$1") ||
			die "cannot resolve $1 in the registry"
		hex=${hex#sha256:}
		;;
	esac
	case $hex in
	*[!0-9a-f]*) die "image $1: not a sha256 digest" ;;
	esac
	[ ${#hex} -eq 64 ] || die "image $1: not a sha256 digest"
	printf '%s\n' "$hex"
}

# pull REF HEX: the image as an OCI layout in images/HEX (tag "image"),
# downloaded once. A download is made beside and renamed into place, so a
# crash leaves nothing half-written under the final name.
pull() {
	local dest tmp name
	dest=$MINT_STATE/images/$2
	[ -f "$dest/index.json" ] && return 0
	mkdir -p "$MINT_STATE/images"
	tmp=$dest.tmp.$$
	rm -rf "$tmp"
	name=${1%@*}
	case ${name##*/} in *:*) name=${name%:*} ;; esac
	# The local registry speaks plain HTTP.
	if ! skopeo copy --quiet --src-tls-verify=false "docker://$name@sha256:$2" \
		"oci:$tmp:image" >&2; then
		rm -rf "$tmp"
		die "cannot pull $name@sha256:$2"
	fi
	mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp" # another pull was first
}

# unpack SLOT HEX: the image unpacked into the slot's releases/HEX.
unpack() {
	local dir
	dir=$(slot_dir "$1")/releases/$2
	[ -f "$dir/rootfs/app/server.py" ] && return 0
	mkdir -p "$(dirname "$dir")"
	rm -rf "$dir" "$dir.tmp"
	umoci unpack --rootless --image "$MINT_STATE/images/$2:image" "$dir.tmp" >&2 ||
		die "cannot unpack image $2"
	[ -f "$dir.tmp/rootfs/app/server.py" ] || die "image $2 has no app/server.py"
	mv -T "$dir.tmp" "$dir"
}

# release_version SLOT HEX: the version the release says it is (app/VERSION,
# written by the build), or the start of its digest.
release_version() {
	local f
	f=$(slot_dir "$1")/releases/$2/rootfs/app/VERSION
	if [ -s "$f" ]; then
		head -n 1 "$f"
	else
		printf 'sha256-%s\n' "$(printf '%s' "$2" | cut -c1-12)"
	fi
}

# running_pid SLOT: the pid of the slot's instance, when it runs (the pid
# file names a live process whose command line is this slot's server).
running_pid() {
	local d pid
	d=$(slot_dir "$1")
	[ -f "$d/pid" ] || return 1
	pid=$(cat "$d/pid")
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -F "$d/releases/" || return 1
	printf '%s\n' "$pid"
}

# slot_pids SLOT: every process running a release of the slot, with or
# without a pid file (one whose pid file was lost in a crash, say).
slot_pids() {
	local f p
	for f in $(grep -l -F -- "$(slot_dir "$1")/releases/" /proc/[0-9]*/cmdline 2>/dev/null); do
		p=${f#/proc/}
		p=${p%/cmdline}
		# grep's own command line held the pattern: it has ended by now.
		kill -0 "$p" 2>/dev/null && printf '%s\n' "$p"
	done
}

# port_free PORT: nothing accepts connections on it (curl's exit 7).
port_free() {
	local rc=0
	curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null || rc=$?
	[ $rc -eq 7 ]
}

http_get() { curl -s --max-time 2 "http://127.0.0.1:$1$2"; }

# ready PORT VERSION: the instance answers /healthz and is VERSION.
ready() {
	[ "$(http_get "$1" /healthz 2>/dev/null)" = ok ] &&
		[ "$(http_get "$1" /version 2>/dev/null)" = "$2" ]
}

# haproxy ARGS...: deploy/haproxy.py against the runtime API, when the
# environment is behind HAProxy (HAPROXY_ADMIN set).
haproxy() {
	python3 "$deploy_dir/haproxy.py" "$HAPROXY_ADMIN" "$@"
}

# wait_in_lb SLOT: HAProxy's health check sees the slot's server up, so
# that it takes its share before anything else is taken away.
wait_in_lb() {
	[ -n "${HAPROXY_ADMIN:-}" ] || return 0
	haproxy wait-up "${HAPROXY_BACKEND:-$SLUICE_ENV}" "$1" 20 >&2 ||
		die "HAProxy does not see $SLUICE_ENV/$1 up"
}

# lb_out SLOT / lb_in SLOT: around a restart, a slot whose server takes
# traffic (HAProxy's state ready) drains first, so that no request in flight
# is cut, and is made ready again once the new instance answers. A server
# that was draining anyway (blue/green's idle colour) is left so. The
# marker file lb-ready keeps the promise across a crash in between.
lb_out() {
	local d
	[ -n "${HAPROXY_ADMIN:-}" ] || return 0
	d=$(slot_dir "$1")
	running_pid "$1" >/dev/null || return 0
	[ "$(haproxy admin "${HAPROXY_BACKEND:-$SLUICE_ENV}" "$1")" = ready ] || return 0
	: >"$d/lb-ready"
	haproxy cmd "set server ${HAPROXY_BACKEND:-$SLUICE_ENV}/$1 state drain" >/dev/null
	# Let the requests it has finish (the demo answers in milliseconds).
	sleep 1
}

lb_in() {
	local d
	d=$(slot_dir "$1")
	[ -f "$d/lb-ready" ] || return 0
	if [ -n "${HAPROXY_ADMIN:-}" ]; then
		haproxy cmd "set server ${HAPROXY_BACKEND:-$SLUICE_ENV}/$1 state ready" >/dev/null ||
			die "cannot make $SLUICE_ENV/$1 ready in HAProxy"
	fi
	rm -f "$d/lb-ready"
}

# stop_slot SLOT: the slot's instances get SIGTERM, and SIGKILL after 10 s.
# Prints what it stopped; nothing when nothing ran.
stop_slot() {
	local d pids i left p
	d=$(slot_dir "$1")
	pids=$(slot_pids "$1" | tr '\n' ' ')
	rm -f "$d/pid"
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	i=0
	while :; do
		left=""
		for p in $pids; do
			kill -0 "$p" 2>/dev/null && left="$left $p"
		done
		[ -z "$left" ] && break
		if [ $i -ge 100 ]; then
			# shellcheck disable=SC2086
			kill -KILL $left 2>/dev/null || true
			sleep 0.2
			break
		fi
		sleep 0.1
		i=$((i + 1))
	done
	say "stopped $SLUICE_ENV/$1 (pid ${pids% })"
}

# launch SLOT HEX VERSION PORT: asks local/launcher.py to start the
# release on the slot and waits for its pid file.
launch() {
	local d spool lpid app req i
	d=$(slot_dir "$1")
	spool=$MINT_STATE/launcher
	lpid=$(cat "$spool/launcher.pid" 2>/dev/null) || lpid=""
	[ -n "$lpid" ] && kill -0 "$lpid" 2>/dev/null ||
		die "the instance launcher is not running for $MINT_STATE" \
			"(local/launcher.py of the example; tools/run-local.sh starts it)"
	rm -f "$d/pid"
	app=$d/releases/$2/rootfs/app
	req=$spool/$SLUICE_ENV-$1.req
	{
		printf '%s\n%s\n%s\n' "$d/pid" "$d/instance.log" "$app"
		printf '%s\n' python3 "$app/server.py" --listen "127.0.0.1:$4" --version "$3" \
			--track "$(slot_track "$1")"
	} >"$req.tmp"
	mv "$req.tmp" "$req"
	i=0
	until [ -s "$d/pid" ]; do
		[ $i -ge 100 ] && die "the launcher did not start $SLUICE_ENV/$1 within 10 s"
		sleep 0.1
		i=$((i + 1))
	done
}

# slot_runs SLOT HEX: the slot's instance runs the release HEX and answers.
slot_runs() {
	local d
	d=$(slot_dir "$1")
	[ -f "$d/releases/$2/rootfs/app/server.py" ] && running_pid "$1" >/dev/null &&
		[ "$(cat "$d/image" 2>/dev/null)" = "$2" ] &&
		ready "$(slot_port "$1")" "$(release_version "$1" "$2")"
}

# start_slot SLOT REF: the slot runs REF, ready (and up in HAProxy) on
# return. Idempotent: a slot that already runs REF and answers is left
# alone; anything else there (another release, a dead or stuck instance
# after a crash) is stopped and the release started afresh.
start_slot() {
	local port hex d version i old
	need_env
	port=$(slot_port "$1")
	hex=$(image_digest "$2")
	d=$(slot_dir "$1")
	mkdir -p "$d"
	pull "$2" "$hex"
	unpack "$1" "$hex"
	version=$(release_version "$1" "$hex")
	if slot_runs "$1" "$hex"; then
		say "$SLUICE_ENV/$1 already runs $version (sha256:$(printf '%s' "$hex" | cut -c1-12))"
		lb_in "$1"
		wait_in_lb "$1"
		return 0
	fi
	lb_out "$1"
	stop_slot "$1" >&2
	port_free "$port" || die "port $port of $SLUICE_ENV/$1 is held by another process"
	printf '%s\n' "$hex" >"$d/image"
	launch "$1" "$hex" "$version" "$port"
	i=0
	until ready "$port" "$version"; do
		if ! running_pid "$1" >/dev/null; then
			tail -n 5 "$d/instance.log" >&2 2>/dev/null || true
			die "$SLUICE_ENV/$1 exited at start (log: $d/instance.log)"
		fi
		[ $i -ge 300 ] && die "$SLUICE_ENV/$1 not ready on port $port after 30 s"
		sleep 0.1
		i=$((i + 1))
	done
	lb_in "$1"
	wait_in_lb "$1"
	# Releases other than this one and the one before it are not needed
	# (this one may be an older directory, when a release comes back).
	touch "$d/releases/$hex"
	for old in $(ls -t "$d/releases" 2>/dev/null | tail -n +3); do
		rm -rf "${d:?}/releases/$old"
	done
	say "$SLUICE_ENV/$1 runs $version on 127.0.0.1:$port (pid $(cat "$d/pid"))"
}
