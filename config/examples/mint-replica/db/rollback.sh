#!/bin/sh
# The rollback of db-migrate: $SLUICE_ENV's database back to the version it
# had before this run's migration (recorded by db/migrate.sh), with the down
# migrations of this commit. Nothing recorded: nothing to undo.
deploy_dir=$(cd "$(dirname "$0")/../deploy" && pwd)
. "$deploy_dir/lib.sh"

need_env
here=$(cd "$(dirname "$0")" && pwd)
record=$MINT_STATE/db/$SLUICE_ENV.before-${SLUICE_RUN_ID:-manual}
if [ ! -f "$record" ]; then
	say "$SLUICE_ENV: no migration recorded for run ${SLUICE_RUN_ID:-manual}: nothing to undo"
	exit 0
fi
python3 "$here/schema.py" "$MINT_STATE/db/$SLUICE_ENV.sqlite3" "$here/migrations" down-to \
	"$(cat "$record")"
rm -f "$record"
