"""sluice's processes load no Cyrus SASL plugin (queue/kafka.c): librdkafka,
built with Cyrus as Debian's is, would load every plugin installed as it
first initialises, though sluice configures no SASL. libsasl2 itself is
still mapped (librdkafka needs it); its plugin directory is not. SASL_PATH
in the environment still decides where Cyrus looks, as Cyrus has it: a
worker started with it loads them, which shows the check can fail."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from harness import log_text, wait_for  # noqa: E402

PLUGINS = "/usr/lib/x86_64-linux-gnu/sasl2"


def maps(proc):
    with open("/proc/%d/maps" % proc.popen.pid) as f:
        return f.read()


def test_no_sasl_plugin_is_loaded_unless_sasl_path_says_so(stack):
    # libsasl2-modules-db, which libsasl2-2 depends on, installs one at least.
    assert any(".so" in f for f in os.listdir(PLUGINS))
    worker = stack.start_worker("build", 1, "worker-sasl")
    # The producer and consumer are made at start, before the worker says it
    # is consuming (the agent is up): librdkafka is set up. Its libraries
    # being mapped says less: under valgrind they are mapped one by one.
    wait_for("the worker to consume", lambda: 'msg=consuming' in log_text(worker), 10, [worker])
    for proc in (stack.agent, worker):
        m = maps(proc)
        assert "/librdkafka.so" in m, proc.name
        assert "/libsasl2.so" in m
        assert PLUGINS + "/" not in m, proc.name

    os.environ["SASL_PATH"] = PLUGINS
    try:
        told = stack.start_worker("build", 1, "worker-sasl-path")
    finally:
        del os.environ["SASL_PATH"]
    wait_for("the plugins to be loaded", lambda: PLUGINS + "/" in maps(told), 10, [told])
    # Stopped once it has started: a SIGTERM before its handler is a kill.
    wait_for("the worker to consume", lambda: 'msg=consuming' in log_text(told), 10, [told])
    for proc in (told, worker):
        stack.procs.remove(proc)
        assert proc.stop() == 0
