#!/bin/sh
# The provider's verify: each slot named runs SLUICE_IMAGE and answers
# /healthz with "ok" and /version with the release's version. One look, no
# waiting: sluice asks again until the environment's progressDeadline.
#
#   verify.sh SLOT...
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

[ $# -ge 1 ] || die "usage: verify.sh SLOT..."
need_env
image=${SLUICE_IMAGE:-}
[ -n "$image" ] || die "SLUICE_IMAGE is empty: which release?"
hex=$(image_digest "$image")
short=$(printf '%s' "$hex" | cut -c1-12)

for slot in "$@"; do
	port=$(slot_port "$slot")
	d=$(slot_dir "$slot")
	running_pid "$slot" >/dev/null || die "$SLUICE_ENV/$slot is not running"
	runs=$(cat "$d/image" 2>/dev/null) || runs=""
	[ "$runs" = "$hex" ] ||
		die "$SLUICE_ENV/$slot runs sha256:$(printf '%s' "$runs" | cut -c1-12), not sha256:$short"
	want=$(release_version "$slot" "$hex")
	health=$(http_get "$port" /healthz) || die "$SLUICE_ENV/$slot: no answer on port $port"
	[ "$health" = ok ] || die "$SLUICE_ENV/$slot: /healthz says \"$health\""
	got=$(http_get "$port" /version) || die "$SLUICE_ENV/$slot: no answer on port $port"
	[ "$got" = "$want" ] || die "$SLUICE_ENV/$slot: /version says \"$got\", not \"$want\""
	say "$SLUICE_ENV/$slot ready: version $want on port $port"
done
