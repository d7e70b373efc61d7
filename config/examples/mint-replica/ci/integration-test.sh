#!/bin/sh
# The integration-test stage: the image as it will run. It is built,
# unpacked (umoci, rootless) and its server started on a free port, then
# asked what a user and the load balancer ask.
set -eu
./ci/build.sh integration >/dev/null
tmp=$(mktemp -d)
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
umoci unpack --rootless --image dist/oci:integration "$tmp/bundle" >/dev/null 2>&1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 "$tmp/bundle/rootfs/app/server.py" --listen "127.0.0.1:$port" --version integration \
	>"$tmp/server.log" 2>&1 &
pid=$!
i=0
until curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; do
	[ $i -lt 50 ] || { cat "$tmp/server.log"; echo "not ok - the server did not start"; exit 1; }
	sleep 0.1
	i=$((i + 1))
done
check() {
	if [ "$2" = "$3" ]; then echo "ok - $1"; else echo "not ok - $1: got '$2', want '$3'"; exit 1; fi
}
check "/healthz says ok" "$(curl -s "http://127.0.0.1:$port/healthz")" ok
check "/version is the build's" "$(curl -s "http://127.0.0.1:$port/version")" integration
check "/ greets" "$(curl -s "http://127.0.0.1:$port/")" "hello from integration"
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
case $metrics in
*'demo_requests_total{code="200",track="stable",version="integration"} 1'*) echo "ok - /metrics counts it" ;;
*) echo "not ok - /metrics does not count the request: $metrics"; exit 1 ;;
esac
