#!/bin/sh
# The pre hook db-migrate: $SLUICE_ENV's database gets the migrations of
# this commit (db/migrations). The version it had before is recorded for
# the deployment (run and attempt), so that db/rollback.sh, which sluice
# runs when the deployment aborts, returns exactly there.
deploy_dir=$(cd "$(dirname "$0")/../deploy" && pwd)
. "$deploy_dir/lib.sh"

need_env
mkdir -p "$MINT_STATE/db"
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/schema.py" "$MINT_STATE/db/$SLUICE_ENV.sqlite3" "$here/migrations" up \
	--record "$MINT_STATE/db/$SLUICE_ENV.before-${SLUICE_RUN_ID:-manual}"
