#!/bin/sh
# The provider's apply: SLUICE_IMAGE (REGISTRY/REPO@sha256:...) onto the
# slots of $SLUICE_ENV named, one after another, each ready before the next
# is touched.
#
#   apply.sh SLOT...                 e.g. apply.sh canary, apply.sh "${SLUICE_COLOR}"
#   apply.sh --surge SLOT SLOT...    a rolling update with maxSurge 1 and
#                                    maxUnavailable 0: the surge slot takes
#                                    the release first, so that as many
#                                    instances serve as before while each
#                                    slot is replaced; it stops at the end
#
# Running it again after a crash finishes the job: slots that already run
# the release are left alone, the others are restarted cleanly.
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

surge=""
if [ "${1:-}" = --surge ]; then
	[ $# -ge 3 ] || die "usage: apply.sh --surge SLOT SLOT..."
	surge=$2
	shift 2
fi
[ $# -ge 1 ] || die "usage: apply.sh [--surge SLOT] SLOT..."
need_env
image=${SLUICE_IMAGE:-}
[ -n "$image" ] || die "SLUICE_IMAGE is empty: which release?"

if [ -n "$surge" ]; then
	start_slot "$surge" "$image"
fi
for slot in "$@"; do
	start_slot "$slot" "$image"
done
if [ -n "$surge" ]; then
	stop_slot "$surge"
fi
say "$SLUICE_ENV: $image on $*"
