#!/bin/sh
# The security-scan stage: no private key in the commit, and nothing in the
# image that is setuid, setgid or writable by others.
set -eu
files=$(find . -path ./.git -prune -o -path ./dist -prune -o -type f -print)
# shellcheck disable=SC2086
if grep -l -e '-----BEGIN [A-Z ]*PRIVATE KEY-----' $files; then
	echo "scan: the files above hold private keys"
	exit 1
fi
echo "scan: $(printf '%s\n' $files | wc -l) files of the commit, no private keys"
./ci/build.sh scan >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umoci unpack --rootless --image dist/oci:scan "$tmp/bundle" >/dev/null 2>&1
bad=$(find "$tmp/bundle/rootfs" \( -perm -4000 -o -perm -2000 -o \( -perm -0002 ! -type l \) \) -print)
if [ -n "$bad" ]; then
	printf 'scan: setuid, setgid or world-writable in the image:\n%s\n' "$bad"
	exit 1
fi
echo "scan: image has $(find "$tmp/bundle/rootfs" -type f | wc -l) files, none setuid, setgid or world-writable"
