#!/bin/sh
# make bench: the intake benchmark (bench/intake.py) against the binaries in
# BUILD_DIR, beside Debian's webhook, with wrk as the load generator. Prints
# the results table and writes it to bench/results.md.
set -u

build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" 2>/dev/null && pwd) || { echo "bench: no build directory ${1:-build}" >&2; exit 1; }
for tool in wrk webhook redis-server redis-cli git; do
	command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (make deps deps-bench)" >&2; exit 1; }
done
exec /usr/bin/python3 "$top/bench/intake.py" --build "$build" --results "$top/bench/results.md"
