#!/bin/bash
# build-image.sh OUT_DIR TAG SRC_DIR [CMD...]
#
# Builds the image TAG in the OCI image layout OUT_DIR (created when
# missing; other tags in it are left alone) with umoci: rootless, without
# a daemon. The image holds SRC_DIR (less .git) under /app, works in /app
# and runs CMD (default: python3 /app/server.py).
#
#   BASE_IMAGE       a skopeo reference (oci:DIR:TAG, docker://...) to build
#                    on; without it the image holds /app alone, which the
#                    example runs from the unpacked rootfs with the host's
#                    python3
#   SOURCE_DATE_EPOCH  seconds since the epoch: the image's `created` time,
#                    its history's and every file's time under /app, so the
#                    same source and epoch give the same digest
#
# Prints the image's manifest digest. Exit 2 on bad usage, 1 on failure.
set -euo pipefail

prog=build-image.sh
usage() {
	echo "usage: $prog OUT_DIR TAG SRC_DIR [CMD...]" >&2
	exit 2
}
fail() {
	echo "$prog: $*" >&2
	exit 1
}

[ $# -ge 3 ] || usage
out=$1 tag=$2 src=$3
shift 3
[ $# -gt 0 ] || set -- python3 /app/server.py
[ -d "$src" ] || { echo "$prog: SRC_DIR $src is not a directory" >&2; exit 2; }
# The tag grammar of the OCI distribution spec.
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || {
	echo "$prog: TAG $tag is not a valid tag" >&2
	exit 2
}
command -v umoci >/dev/null || fail "umoci is not installed (Debian package umoci)"

created=()
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || fail "SOURCE_DATE_EPOCH must be seconds since the epoch"
	when=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
	created=(--history.created "$when")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/build-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

[ -f "$out/index.json" ] || umoci init --layout "$out"
# Building a tag again starts it afresh rather than layering on the old one.
if umoci ls --layout "$out" | grep -qxF -- "$tag"; then
	umoci rm --image "$out:$tag"
fi
if [ -n "${BASE_IMAGE:-}" ]; then
	command -v skopeo >/dev/null || fail "skopeo is not installed (Debian package skopeo)"
	skopeo copy --quiet "$BASE_IMAGE" "oci:$out:$tag"
else
	umoci new --image "$out:$tag"
fi

umoci unpack --rootless --image "$out:$tag" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/app"
tar -C "$src" --exclude=./.git -cf - . | tar -C "$work/bundle/rootfs/app" -xf -
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	find "$work/bundle/rootfs/app" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
fi
umoci repack "${created[@]}" --history.created_by build-image.sh \
	--image "$out:$tag" "$work/bundle"

config=(--config.workingdir /app --config.label "org.opencontainers.image.version=$tag")
for word in "$@"; do
	config+=(--config.cmd "$word")
done
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	config+=(--created "$when")
fi
umoci config "${created[@]}" --image "$out:$tag" "${config[@]}"
umoci gc --layout "$out"

# The manifest digest the layout's index names for the tag.
python3 - "$out" "$tag" <<'EOF'
import json, sys
with open(sys.argv[1] + "/index.json") as f:
    index = json.load(f)
for m in index.get("manifests", []):
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]:
        print(m["digest"])
        break
else:
    sys.exit("build-image.sh: the layout has no tag " + sys.argv[2])
EOF
