#!/bin/bash
# push-image.sh OUT_DIR TAG REGISTRY REPO
#
# Pushes the image TAG of the OCI image layout OUT_DIR (build-image.sh) to
# REGISTRY (host:port) as REPO:TAG with skopeo, an image index with every
# image it lists. Prints and, when $SLUICE_OUTPUT names a file, appends to
# it the line
#   image=REGISTRY/REPO@sha256:...
# the pushed digest (what the registry stores, so deployments pin it).
#
#   REGISTRY_TLS_VERIFY  "true" to require HTTPS with a verified certificate;
#                        default false (the example's local registry is HTTP)
#   IMAGE_FORMAT         oci or v2s2 (Docker v2 schema 2) to convert to;
#                        default: as built (OCI)
#   REGISTRY_AUTH_FILE   credentials, as skopeo reads them (containers-auth.json(5))
#
# Exit 2 on bad usage, 1 on failure.
set -euo pipefail

prog=push-image.sh
usage() {
	echo "usage: $prog OUT_DIR TAG REGISTRY REPO" >&2
	exit 2
}
fail() {
	echo "$prog: $*" >&2
	exit 1
}

[ $# -eq 4 ] || usage
out=$1 tag=$2 registry=$3 repo=$4
[ -f "$out/index.json" ] || { echo "$prog: $out is not an OCI image layout" >&2; exit 2; }
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "$prog: TAG $tag is not a valid tag" >&2; exit 2; }
[[ $repo =~ ^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$ ]] || {
	echo "$prog: REPO $repo is not a repository name" >&2
	exit 2
}
case $registry in
*/* | "") echo "$prog: REGISTRY is host[:port], without scheme or path" >&2; exit 2 ;;
esac
command -v skopeo >/dev/null || fail "skopeo is not installed (Debian package skopeo)"

digestfile=$(mktemp "${TMPDIR:-/tmp}/push-image.XXXXXX")
trap 'rm -f "$digestfile"' EXIT

args=(copy --quiet --all --retry-times 3 --digestfile "$digestfile")
[ "${REGISTRY_TLS_VERIFY:-false}" = true ] || args+=(--dest-tls-verify=false)
[ -z "${IMAGE_FORMAT:-}" ] || args+=(--format "$IMAGE_FORMAT")
skopeo "${args[@]}" "oci:$out:$tag" "docker://$registry/$repo:$tag"

digest=$(cat "$digestfile")
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || fail "skopeo wrote no digest for $registry/$repo:$tag"
image="$registry/$repo@$digest"
echo "image=$image"
if [ -n "${SLUICE_OUTPUT:-}" ]; then
	printf 'image=%s\n' "$image" >>"$SLUICE_OUTPUT"
fi
