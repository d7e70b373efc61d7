#!/bin/sh
# make test: the cmocka unit tests, then the integration tests against real
# redis-server and sluice-devbroker processes, then the dashboard's browser
# test; the last line sums them up. $PYTEST_JOBS: pytest's options for
# running test files side by side (the Makefile's, pytest-xdist).
build=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT

sh tests/run-unit.sh "$@" | tee "$out"
unit_line=$(grep '^unit: ' "$out" | tail -n 1)
upass=$(echo "$unit_line" | sed -n 's/^unit: \([0-9]*\) passed.*/\1/p')
ufail=$(echo "$unit_line" | sed -n 's/.* \([0-9]*\) failed$/\1/p')

# shellcheck disable=SC2086
SLUICE_BUILD=$(cd "$build" && pwd) /usr/bin/python3 -m pytest -p no:cacheprovider -q \
	$PYTEST_JOBS tests/integration 2>&1 | tee "$out"
# Only pytest's closing line counts ("3 failed, 40 passed, 1 error in 9.1s"),
# not whatever the tests' own output says.
summary=$(grep -E ' in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$out" | tail -n 1)
count() { echo "$summary" | grep -Eo "[0-9]+ $1" | grep -Eo '[0-9]+' | head -n 1; }
ipass=$(count passed)
ifail=$(( $(count failed || true) + $(count 'errors?' || true) + 0 ))
iskip=$(count skipped)

# The dashboard in chromium against a stack of its own (tests/browser/run.py).
SLUICE_BUILD=$(cd "$build" && pwd) /usr/bin/python3 tests/browser/run.py 2>&1 | tee "$out"
bline=$(grep -E '^browser: [0-9]+ passed' "$out" | tail -n 1)
bpass=$(echo "$bline" | sed -n 's/^browser: \([0-9]*\) passed.*/\1/p')
bfail=$(echo "$bline" | sed -n 's/.* \([0-9]*\) failed$/\1/p')

passed=$(( ${upass:-0} + ${ipass:-0} + ${bpass:-0} ))
failed=$(( ${ufail:-1} + ${ifail:-0} + ${bfail:-1} ))
[ -z "$ipass" ] && failed=$((failed + 1))
echo "${passed} passed, ${failed} failed${iskip:+, $iskip skipped} (browser: ${bpass:-0} passed, ${bfail:-1} failed)"
[ "$failed" -eq 0 ] && [ "${iskip:-0}" -eq 0 ]
