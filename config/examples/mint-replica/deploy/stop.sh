#!/bin/sh
# The provider's scale_down (and a canary's abort): stops the instances of
# the slots named. A slot that is not running is fine.
#
#   stop.sh SLOT...                  e.g. stop.sh canary, stop.sh "${SLUICE_COLOR}"
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

[ $# -ge 1 ] || die "usage: stop.sh SLOT..."
need_env
for slot in "$@"; do
	slot_port "$slot" >/dev/null
	stopped=$(stop_slot "$slot")
	if [ -n "$stopped" ]; then
		printf '%s\n' "$stopped"
	else
		say "$SLUICE_ENV/$slot is not running"
	fi
done
