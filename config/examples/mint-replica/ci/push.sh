#!/bin/sh
# The push stage: the image of this commit to the registry as
# $IMAGE_REPO:VERSION (app/push-image.sh writes image=REGISTRY/REPO@sha256:...
# to $SLUICE_OUTPUT: the environments deploy ${push.image}), then tagged
# latest. Each stage has a workspace of its own, so the image is built again
# here from the same commit.
#
#   ci/push.sh VERSION
set -eu
version=${1:?usage: ci/push.sh VERSION}
: "${REGISTRY:?}" "${IMAGE_REPO:?}"
./ci/build.sh "$version" >/dev/null
./app/push-image.sh dist/oci "$version" "$REGISTRY" "$IMAGE_REPO"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
	"docker://$REGISTRY/$IMAGE_REPO:$version" "docker://$REGISTRY/$IMAGE_REPO:latest"
echo "tagged $REGISTRY/$IMAGE_REPO:$version as latest"
