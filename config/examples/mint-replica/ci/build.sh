#!/bin/sh
# The build stage: dist/app (the service, its fail-rate file when the
# commit has one, and VERSION) and from it the image dist/oci:VERSION,
# built without a daemon (app/build-image.sh: umoci, rootless).
#
#   ci/build.sh VERSION              VERSION: the commit's short sha
set -eu
version=${1:?usage: ci/build.sh VERSION}
rm -rf dist
mkdir -p dist/app
cp app/server.py dist/app/
if [ -f app/fail-rate ]; then
	cp app/fail-rate dist/app/
fi
printf '%s\n' "$version" >dist/app/VERSION
./app/build-image.sh dist/oci "$version" dist/app
echo "built dist/oci:$version"
