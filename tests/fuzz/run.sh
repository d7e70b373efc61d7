#!/bin/sh
# Runs each libFuzzer target in BINDIR for SECONDS seconds; fails on the first
# crash, leak, timeout or sanitizer report (the reproducer is left in the
# target's work directory, printed). Seeds: tests/fuzz/seeds/<target>/ and,
# for the webhook target, GitHub's sample payloads from ../shared/fixtures/github
# when that directory exists; tests/fuzz/<target>.dict when present.
# usage: run.sh BINDIR SECONDS
set -eu
bindir=$(cd "$1" && pwd)
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../../../shared/fixtures/github
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX")
failed=""
for bin in "$bindir"/fuzz_*; do
	# Beside each target lies the list of files it was built from (.d).
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus=$work/$name/corpus
	mkdir -p "$corpus"
	if [ -d "$here/seeds/$name" ]; then
		cp "$here/seeds/$name"/* "$corpus"/
	fi
	if [ "$name" = fuzz_webhook ] && [ -d "$fixtures" ]; then
		# The target's input: event, signature and body, one per line.
		for f in "$fixtures"/*.json; do
			event=$(basename "$f" | sed -e 's/[-.].*//')
			{ echo "$event"; echo "sha256=0000"; cat "$f"; } > "$corpus/$(basename "$f")"
		done
	fi
	dict=""
	if [ -f "$here/$name.dict" ]; then
		dict="-dict=$here/$name.dict"
	fi
	echo "fuzz: $name for ${seconds}s"
	# shellcheck disable=SC2086
	if ! (cd "$work/$name" && TMPDIR=$work/$name "$bin" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 $dict corpus \
		> log 2>&1); then
		tail -n 60 "$work/$name/log"
		echo "fuzz: $name FAILED; reproducer and log in $work/$name"
		failed="$failed $name"
		continue
	fi
	grep -E '^stat::number_of_executed_units|^Done' "$work/$name/log" | sed "s/^/  /"
	rm -rf "${work:?}/$name"
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed"
	exit 1
fi
rm -rf "$work"
echo "fuzz: every target ran clean"
