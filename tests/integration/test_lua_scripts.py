"""The Lua scripts as the build embeds them (tools/embed-lua.sh): each gets
the files of queue/scripts/lib/ it calls and no others. A library left out
would surface only when its function is called, as Redis's "attempted to
access nonexistent global variable"; so every global each script reads is
listed from its bytecode (luac5.1, the Lua of Redis) and must be one Redis
provides, and none may be written.
"""

import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from harness import BUILD, lua_script  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "queue", "scripts")
NAMES = sorted(f[:-4] for f in os.listdir(SCRIPTS) if f.endswith(".lua"))
LIBS = sorted(f for f in os.listdir(os.path.join(SCRIPTS, "lib")) if f.endswith(".lua"))

# What a script may read as a global in Redis 7 (its Lua 5.1 sandbox).
REDIS_GLOBALS = {
    "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct", "table", "string", "math",
    "os", "tonumber", "tostring", "type", "pairs", "ipairs", "next", "select", "unpack",
    "error", "assert", "pcall", "xpcall", "setmetatable", "getmetatable", "rawget", "rawset",
    "rawequal",
}


def globals_of(tmp_path, text):
    """(read, written) global names of a script's text."""
    path = tmp_path / "script.lua"
    path.write_text(text)
    out = subprocess.run(["luac5.1", "-p", "-l", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    read = set(re.findall(r"\bGETGLOBAL\b.*; (\S+)", out.stdout))
    written = set(re.findall(r"\bSETGLOBAL\b.*; (\S+)", out.stdout))
    return read, written


@pytest.mark.parametrize("name", NAMES)
def test_every_global_a_script_reads_is_one_redis_provides(tmp_path, name):
    read, written = globals_of(tmp_path, lua_script(name))
    assert written == set()
    assert read - REDIS_GLOBALS == set()


def test_libraries_are_embedded_only_where_called(tmp_path):
    with_lib = {lib: [n for n in NAMES if "\n-- %s: prepended" % lib[:-4] in
                      "\n" + lua_script(n)] for lib in LIBS}
    # Scripts that call no library carry none of them.
    for name in ("lease_renew", "outbox_lease", "outbox_leave", "outbox_forget"):
        assert all(name not in names for names in with_lib.values())
    # intake.lua emits events only: no promotion or strategy.
    assert "intake" in with_lib["events.lua"]
    assert "intake" not in with_lib["promotion.lua"]
    assert "intake" not in with_lib["strategy.lua"]
    # rollback.lua calls strategy's functions, which call promotion's.
    assert "rollback" in with_lib["strategy.lua"]
    assert "rollback" in with_lib["promotion.lua"]


def test_a_library_left_out_is_caught(tmp_path):
    """The check above fails for a script whose library is missing."""
    text = lua_script("rollback")
    start = text.index("-- strategy: prepended")
    end = text.index("-- rollback: ", start)
    read, _ = globals_of(tmp_path, text[:start] + text[end:])
    assert any(n.startswith("strat_") for n in read - REDIS_GLOBALS)


def test_build_dir_holds_every_script():
    assert NAMES
    for name in NAMES:
        assert os.path.exists(os.path.join(BUILD, "gen", "lua", name + ".c"))
