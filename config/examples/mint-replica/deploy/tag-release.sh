#!/bin/sh
# A production post hook: the release just deployed ($IMAGE_REPO:VERSION,
# as ci/push.sh tagged it) gets the tag prod-VERSION, which the registry's
# lifecycle policy counts (deploy/registry-lifecycle.sh).
#
#   tag-release.sh VERSION
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

[ $# -eq 1 ] || die "usage: tag-release.sh VERSION"
: "${REGISTRY:?}" "${IMAGE_REPO:?}"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
	"docker://$REGISTRY/$IMAGE_REPO:$1" "docker://$REGISTRY/$IMAGE_REPO:prod-$1" ||
	die "cannot tag $REGISTRY/$IMAGE_REPO:$1 as prod-$1"
say "tagged $REGISTRY/$IMAGE_REPO:$1 as prod-$1"
