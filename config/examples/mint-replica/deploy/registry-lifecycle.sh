#!/bin/sh
# A production post hook: the registry's lifecycle policy of the reference
# deployment: keep the last 5 production tags (prod-*), expire untagged
# images after 7 days, keep every image tagged latest (sluice-registry
# lifecycle; the digests it has seen are kept in $MINT_STATE). An older
# production image goes whole, with the VERSION tag the push stage gave it
# (--whole-images): that tag alone would keep it for ever.
deploy_dir=$(cd "$(dirname "$0")" && pwd)
. "$deploy_dir/lib.sh"

: "${REGISTRY:?}" "${IMAGE_REPO:?}"
bin=sluice-registry
if [ -n "${SLUICE_BIN:-}" ]; then
	bin=$SLUICE_BIN/sluice-registry
fi
exec "$bin" lifecycle --registry "http://$REGISTRY" --repository "$IMAGE_REPO" \
	--keep-last 5 --tag-pattern 'prod-*' --whole-images --expire-untagged 7d --keep latest \
	--state "$MINT_STATE/registry-lifecycle.json"
