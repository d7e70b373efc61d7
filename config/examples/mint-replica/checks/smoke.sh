#!/bin/sh
# A post check: N requests through the environment's load balancer all
# answer 200 from the release just deployed (X-Demo-Version is the
# version the build stamped: the commit's short sha).
#
#   smoke.sh URL [N]
deploy_dir=$(cd "$(dirname "$0")/../deploy" && pwd)
. "$deploy_dir/lib.sh"

[ $# -ge 1 ] || die "usage: smoke.sh URL [N]"
url=$1
n=${2:-20}
want=${SLUICE_SHA_SHORT:-}
[ -n "$want" ] || die "SLUICE_SHA_SHORT is not set: which version?"
i=0
while [ $i -lt "$n" ]; do
	answer=$(curl -s -o /dev/null -D - --max-time 5 "$url" 2>/dev/null) ||
		die "request $((i + 1)) of $n to $url: no answer"
	answer=$(printf '%s\n' "$answer" | tr -d '\r')
	code=$(printf '%s\n' "$answer" | awk 'NR == 1 { print $2 }')
	version=$(printf '%s\n' "$answer" | sed -n 's/^[Xx]-[Dd]emo-[Vv]ersion: *//p')
	[ "$code" = 200 ] || die "request $((i + 1)) of $n to $url: HTTP $code${version:+ from $version}"
	[ "$version" = "$want" ] ||
		die "request $((i + 1)) of $n to $url: answered by $version, not $want"
	i=$((i + 1))
done
say "$n of $n requests to $url answered 200 by $want"
