#!/bin/sh
# The post hook cache-flush: empties $SLUICE_ENV's cache (the Redis database
# $CACHE_URL names, e.g. redis://127.0.0.1:18379/2), so that the new
# release reads nothing the old one cached.
deploy_dir=$(cd "$(dirname "$0")/deploy" && pwd)
. "$deploy_dir/lib.sh"

need_env
[ -n "${CACHE_URL:-}" ] || die "CACHE_URL is not set"
keys=$(redis-cli -u "$CACHE_URL" DBSIZE 2>&1) || die "cache $CACHE_URL: $keys"
case $keys in *[!0-9]*|'') die "cache $CACHE_URL: $keys" ;; esac
answer=$(redis-cli -u "$CACHE_URL" FLUSHDB 2>&1) || die "cache $CACHE_URL: $answer"
[ "$answer" = OK ] || die "cache $CACHE_URL: FLUSHDB answered $answer"
say "$SLUICE_ENV: flushed $keys keys from $CACHE_URL"
