#!/usr/bin/env python3
"""The example's database migrations (SQLite, standard library only).

    schema.py DB MIGRATIONS_DIR up [--record FILE]
    schema.py DB MIGRATIONS_DIR down-to VERSION
    schema.py DB MIGRATIONS_DIR version

MIGRATIONS_DIR holds NNN_name.up.sql and NNN_name.down.sql. `up` applies
every migration newer than the database, each in one transaction, and with
--record first writes the version it started from to FILE (once: a second
`up` for the same deployment keeps the first record). `down-to` applies the
down migrations from the newest applied one to just above VERSION, newest
first. The applied versions are in the table schema_migrations.
"""

import os
import re
import sqlite3
import sys
import time

NAME = re.compile(r"^(\d+)_([a-z0-9_]+)\.(up|down)\.sql$")


def migrations(directory):
    found = {}
    for name in os.listdir(directory):
        m = NAME.match(name)
        if m:
            found.setdefault(int(m.group(1)), {"name": m.group(2)})[m.group(3)] = \
                os.path.join(directory, name)
    for version, m in found.items():
        if "up" not in m or "down" not in m:
            raise ValueError("migration %03d_%s needs both .up.sql and .down.sql"
                             % (version, m["name"]))
    return dict(sorted(found.items()))


def current(db):
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
               "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def run_script(db, path, after):
    with open(path) as f:
        sql = f.read()
    # executescript commits first; BEGIN/COMMIT make each file all or nothing.
    db.executescript("BEGIN;\n%s\n;%s;\nCOMMIT;" % (sql, after))


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, directory, verb, args = argv[1], argv[2], argv[3], argv[4:]
    try:
        ms = migrations(directory)
        db = sqlite3.connect(path, isolation_level=None)
        have = current(db)
        if verb == "version" and not args:
            print(have)
        elif verb == "up" and (not args or (len(args) == 2 and args[0] == "--record")):
            if args and not os.path.exists(args[1]):
                with open(args[1], "w") as f:
                    f.write("%d\n" % have)
            todo = [v for v in ms if v > have]
            for v in todo:
                run_script(db, ms[v]["up"], "INSERT INTO schema_migrations VALUES (%d, '%s', %d)"
                           % (v, ms[v]["name"], int(time.time())))
                print("applied %03d_%s" % (v, ms[v]["name"]))
            print("%s: schema version %d%s" % (os.path.basename(path), current(db),
                                                "" if todo else " (nothing to apply)"))
        elif verb == "down-to" and len(args) == 1 and args[0].isdigit():
            target = int(args[0])
            undone = 0
            while current(db) > target:
                v = current(db)
                if v not in ms:
                    raise ValueError("version %d is applied but has no migration files here" % v)
                run_script(db, ms[v]["down"],
                           "DELETE FROM schema_migrations WHERE version = %d" % v)
                print("reverted %03d_%s" % (v, ms[v]["name"]))
                undone += 1
            print("%s: schema version %d%s" % (os.path.basename(path), current(db),
                                                "" if undone else " (nothing to revert)"))
        else:
            print(__doc__.strip(), file=sys.stderr)
            return 2
    except (OSError, ValueError, sqlite3.Error) as e:
        print("schema.py: %s: %s" % (path, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
