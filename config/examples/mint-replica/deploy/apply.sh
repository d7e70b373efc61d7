#!/bin/sh
# The provider's apply: SLUICE_IMAGE (REGISTRY/REPO@sha256:...) onto the
# slots of $SLUICE_ENV named, one after another, each ready before the next
# is touched.
#
#   apply.sh SLOT...                 e.g. apply.sh canary, apply.sh "${SLUICE_COLOR}"
#   apply.sh --surge SLOT SLOT...    a rolling update within the strategy's
#                                    maxSurge ($SLUICE_MAX_SURGE): the surge
#                                    slot takes the release first, so that
#                                    as many instances serve as before while
#                                    each slot is replaced, and stops at the
#                                    end; with maxSurge 0 there is no surge
#                                    and the slots are replaced one at a
#                                    time, one unavailable at a time
#
# Running it again after a crash finishes the job: slots that already run
# the release are left alone, the others are restarted cleanly.
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

surge=""
if [ "${1:-}" = --surge ]; then
	[ $# -ge 3 ] || die "usage: apply.sh --surge SLOT SLOT..."
	# Any maxSurge but 0 (a percentage rounds up) allows the one slot;
	# run by hand, without one, it surges.
	max_surge=${SLUICE_MAX_SURGE:-1}
	if [ "${max_surge%\%}" -gt 0 ]; then
		surge=$2
	fi
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
	# Out of the pool before it stops, as every slot start_slot replaces:
	# a request HAProxy already sent it would be cut off (a 502).
	lb_out "$surge"
	stop_slot "$surge"
fi
say "$SLUICE_ENV: $image on $*"
