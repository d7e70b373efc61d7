#!/bin/sh
# A pre check, "resource quotas": room for another release on this host
# (free disk under $MINT_STATE, available memory) and the environment's
# slots' ports held by nothing but its own instances.
#
#   capacity.sh MIN_FREE_MB MIN_MEMORY_MB SLOT...
deploy_dir=$(cd "$(dirname "$0")/../deploy" && pwd)
. "$deploy_dir/lib.sh"

[ $# -ge 2 ] || die "usage: capacity.sh MIN_FREE_MB MIN_MEMORY_MB SLOT..."
need_env
min_disk=$1
min_mem=$2
shift 2
mkdir -p "$MINT_STATE"
free_mb=$(df -Pk "$MINT_STATE" | awk 'NR == 2 { print int($4 / 1024) }')
[ "$free_mb" -ge "$min_disk" ] ||
	die "$free_mb MB free under $MINT_STATE, at least $min_disk MB required"
mem_mb=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
[ "$mem_mb" -ge "$min_mem" ] ||
	die "$mem_mb MB of memory available, at least $min_mem MB required"
for slot in "$@"; do
	port=$(slot_port "$slot")
	# Something listens on the port: it must be this slot's instance.
	if ! port_free "$port"; then
		running_pid "$slot" >/dev/null ||
			die "port $port of $SLUICE_ENV/$slot is held by another process"
	fi
done
say "$SLUICE_ENV: $free_mb MB free disk, $mem_mb MB memory, ports of $* ours or free"
