#!/bin/sh
# The provider's promote for a canary: the release moves from the canary
# slot to the stable one, with the traffic.
#
#   promote.sh CANARY STABLE
#
# 1. All traffic to the canary (verified healthy), none to stable, so that
#    stable can be restarted without a failed request.
# 2. The stable slot takes SLUICE_IMAGE (apply.sh's rules: idempotent).
# 3. All traffic back to stable, none to the canary; sluice's scale_down
#    then stops the canary (deploy/stop.sh).
# The weights go through HAProxy's runtime API ($HAPROXY_ADMIN, backend
# $HAPROXY_BACKEND), as the haproxy traffic provider sets them: canary N,
# stable 100 - N. Each step can be run again.
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

[ $# -eq 2 ] || die "usage: promote.sh CANARY STABLE"
canary=$1
stable=$2
need_env
image=${SLUICE_IMAGE:-}
[ -n "$image" ] || die "SLUICE_IMAGE is empty: which release?"
backend=${HAPROXY_BACKEND:-$SLUICE_ENV}

hex=$(image_digest "$image")
if ! slot_runs "$stable" "$hex"; then
	if [ -n "${HAPROXY_ADMIN:-}" ]; then
		"$deploy_dir/verify.sh" "$canary" >/dev/null
		haproxy weight "$backend" "$canary=100" "$stable=0" ||
			die "cannot move the traffic to $backend/$canary"
		say "$backend: $canary 100, $stable 0 while $stable restarts"
	fi
	start_slot "$stable" "$image"
fi
wait_in_lb "$stable"
if [ -n "${HAPROXY_ADMIN:-}" ]; then
	haproxy weight "$backend" "$stable=100" "$canary=0" ||
		die "cannot move the traffic back to $backend/$stable"
	say "$backend: $stable 100, $canary 0"
fi
say "$SLUICE_ENV: $stable runs the release"
