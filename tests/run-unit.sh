#!/bin/sh
# Runs each cmocka test binary and counts their test cases; the last line is
# "unit: N passed, N failed" (a binary that crashes counts as one failure, a
# test case that skips itself as one failure too: nothing skipped passes).
pass=0
fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$@"; do
	"$t" >"$out" 2>&1
	rc=$?
	cat "$out"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0} + ${s:-0}))
	[ -n "$s" ] && echo "FAILED: $t skipped $s test(s)"
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		fail=$((fail + 1))
	fi
	[ "$rc" -ne 0 ] && echo "FAILED: $t (exit $rc)"
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
