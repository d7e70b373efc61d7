#!/bin/sh
# The test stage: the service's unit tests.
set -eu
exec python3 -m unittest discover -s ci -p 'test_*.py' -v
