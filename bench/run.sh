#!/bin/sh
# make bench: the benchmarks of bench/ against the binaries in BUILD_DIR, one
# after another, each on a stack of its own: intake.py (webhook intake beside
# Debian's webhook, with wrk as the load generator; webhook → first stage
# process), stages.py (the worker's stage throughput beside the machine's
# fork+exec+wait floor; its memory), pipelines.py (five-stage pipelines
# webhook to finished; many runs at once; the router's rate) and scaling.py
# (agent memory and pickup latency with 10 to 10,000 runs in flight; agent
# and worker memory idle and under load) and abort.py (a canary aborted by
# its analysis or an operator: until HAProxy sends it no traffic). Each writes its
# own section; once all have succeeded they are assembled into
# bench/results.md. A missed target is printed as such and fails nothing; a
# benchmark that fails leaves bench/results.md as it was and exits non-zero.
set -u

build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" 2>/dev/null && pwd) || { echo "bench: no build directory ${1:-build}" >&2; exit 1; }
for tool in wrk webhook redis-server redis-cli git haproxy prometheus; do
	command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found (make deps deps-bench)" >&2; exit 1; }
done

benches="intake stages pipelines scaling abort"
sections=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-sections.XXXXXX") || exit 1
trap 'rm -rf "$sections"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$(date +%s)
when=$(date -u '+%Y-%m-%d %H:%M UTC')
failed=
for b in $benches; do
	echo "== bench/$b.py"
	/usr/bin/python3 "$top/bench/$b.py" --build "$build" --section "$sections/$b.md" || failed="$failed $b"
done
if [ -n "$failed" ]; then
	echo "bench: failed:$failed; bench/results.md left as it was" >&2
	exit 1
fi

commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null) && commit="built from the working tree at commit $commit" || commit="built outside a git checkout"
{
	echo "# Benchmarks"
	echo
	echo "\`make bench\` (bench/run.sh), $when: sluice $commit; $(($(date +%s) - started)) s in all."
	echo "Each section was taken on its own stack (redis-server, sluice-devbroker, sluice-agent,"
	echo "sluice-workers on loopback) and names the machine and its load when it started."
	echo "Every stack runs with \`kafka.fetch_wait: 2ms\`, as \`make run\`'s does: the devbroker"
	echo "answers a fetch that finds no message only once that wait is over (a Kafka broker"
	echo "answers it when a message arrives), so with the devbroker it is part of each Kafka hop."
	for b in $benches; do
		echo
		cat "$sections/$b.md"
	done
} >"$sections/results.md" && mv "$sections/results.md" "$top/bench/results.md" || exit 1
echo "written to $top/bench/results.md"
