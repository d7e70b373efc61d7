"""A worker killed with SIGKILL leaves no stage running (stages/orphan_guard.c).

Under systemd the unit's cgroup goes with its worker; here, as with a
worker started by hand or in a container without an init, the worker's
orphan guard kills its stages' process groups when the worker dies, a
stage's own children included. Otherwise the stage would go on, and run a
second time once its lease expired and another worker took it. A daemon
that left its stage's group is killed when its stage ends, whatever other
stages still run, while the worker lives (stages/process.c), and by the
guard, which finds it by the worker's cookie in its environment, once the
worker is dead (stages/env_cookie.c)."""

import os
import signal
import time

import pytest

from conftest import APP_REPO, binary, pid_gone, pipeline, started_stack, wait_for


def guards_of(config):
    """pids of the guards forked from workers started with config (the
    agent has one too)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % entry) as f:
                comm = f.read().strip()
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if comm == "sluice-guard" and config.encode() in cmdline and \
                b"sluice-worker" in cmdline:
            found.append(int(entry))
    return found


LONG_REPO = "sluice-it/long"
CHILD_REPO = "sluice-it/child"
DAEMON_REPO = "sluice-it/daemon"
ESCAPE_REPO = "sluice-it/escape"
# Leaves a daemon in a session of its own, waits until it is there (so
# that the group kill is not what ends it), and prints its pid.
LEAVE_DAEMON = ('setsid sleep 300 </dev/null >/dev/null 2>&1 & d=$!; '
                'while [ "$(cut -d" " -f6 /proc/$d/stat)" != "$d" ]; do sleep 0.01; done; '
                'echo "$d"')


@pytest.fixture(scope="module")
def ostack(tmp_path_factory):
    pidfile = str(tmp_path_factory.mktemp("orphans") / "pids")
    escapefile = pidfile + ".escape"

    def pipelines(repo, root):
        # The daemon's stages are of a kind of their own: the first
        # test's stage is queued again once its lease expires.
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": [
                                         "sh", "-c", 'sleep 300 & echo $$ $! > "$1"; wait',
                                         "sh", pidfile]}}),
                "long.yaml": pipeline("long", LONG_REPO, checkout=repo.url, stages={
                    "scan": {"kind": "scan", "run": ["sleep", "30"], "checkout": False}}),
                "daemon.yaml": pipeline("daemon", DAEMON_REPO, checkout=repo.url, stages={
                    "scan": {"kind": "scan", "sh": LEAVE_DAEMON, "checkout": False}}),
                # Leaves a daemon and runs on; of a kind of its own too.
                "escape.yaml": pipeline("escape", ESCAPE_REPO, checkout=repo.url, stages={
                    "push": {"kind": "push", "checkout": False,
                             "sh": '(%s) > "%s.tmp" && mv "%s.tmp" "%s"; sleep 300'
                                   % (LEAVE_DAEMON, escapefile, escapefile, escapefile)}}),
                # Ends with children still in its group.
                "child.yaml": pipeline("child", CHILD_REPO, checkout=repo.url, stages={
                    "scan": {"kind": "scan", "checkout": False,
                             "sh": "sleep 300 & sleep 300 & sleep 300 & echo $!"}})}
    # The worker is started by the test, so that it may be killed.
    for stack in started_stack("sluice-orphans-", pipelines, workers=()):
        stack.pidfile = pidfile
        stack.escapefile = escapefile
        yield stack


def test_a_killed_worker_s_stage_and_its_children_are_killed(ostack):
    worker = ostack._spawn("doomed-worker", [binary("sluice-worker"), "--config", ostack.config,
                                             "--kind", "build"])
    wait_for("the worker's guard", lambda: guards_of(ostack.config), 10, [worker])
    status, body = ostack.post_hook("push", ostack.push_payload(APP_REPO))
    assert status == 202, (status, body)
    wait_for("the stage to start", lambda: os.path.exists(ostack.pidfile) and
             len(open(ostack.pidfile).read().split()) == 2, 30, [worker])
    stage, child = [int(x) for x in open(ostack.pidfile).read().split()]
    assert not pid_gone(stage) and not pid_gone(child)

    os.kill(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait()
    ostack.procs.remove(worker)
    wait_for("the stage and its child killed", lambda: pid_gone(stage) and pid_gone(child), 5)
    # The guard went with them.
    wait_for("the guard gone", lambda: not guards_of(ostack.config), 5)


def test_a_killed_worker_s_daemon_that_left_its_stage_s_group_is_killed(ostack):
    """The daemon is in no group the guard knows of: it carries the
    worker's cookie, and the guard finds it by that."""
    worker = ostack._spawn("escaping-worker", [binary("sluice-worker"), "--config",
                                               ostack.config, "--kind", "push"])
    wait_for("the worker's guard", lambda: guards_of(ostack.config), 10, [worker])
    status, body = ostack.post_hook("push", ostack.push_payload(ESCAPE_REPO))
    assert status == 202, (status, body)
    wait_for("the daemon to start", lambda: os.path.exists(ostack.escapefile), 30, [worker])
    daemon = int(open(ostack.escapefile).read())
    try:
        assert not pid_gone(daemon)
        os.kill(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait()
        ostack.procs.remove(worker)
        wait_for("the daemon killed", lambda: pid_gone(daemon), 5)
        wait_for("the guard gone", lambda: not guards_of(ostack.config), 5)
    finally:
        if not pid_gone(daemon):
            os.kill(daemon, signal.SIGKILL)


def test_a_worker_that_stops_leaves_no_guard_behind(ostack):
    # Of a kind no job is for: the first test's stage is queued again once
    # its lease expires.
    worker = ostack._spawn("stopping-worker", [binary("sluice-worker"), "--config",
                                               ostack.config, "--kind", "test"])
    wait_for("the worker's guard", lambda: guards_of(ostack.config), 10, [worker])
    # Once it consumes, SIGTERM drains it (before, it would simply end it).
    wait_for("the worker to consume", lambda: "consuming" in open(worker.log).read(), 10,
             [worker])
    assert worker.stop() == 0
    ostack.procs.remove(worker)
    wait_for("the guard gone", lambda: not guards_of(ostack.config), 5)


def test_daemons_that_left_their_stages_are_killed_while_another_stage_runs(ostack):
    """Two slots: one runs a long stage throughout; the other runs stages
    that each leave a daemon in a session of its own, one right after
    another. Every daemon is gone within a few seconds of the last of
    these stages' end, and the long stage runs on."""
    worker = ostack.start_worker("scan", 2, "daemon-worker")
    _, body = ostack.post_hook("push", ostack.push_payload(LONG_REPO))
    long_run = body["runs"][0]
    wait_for("the long stage to run",
             lambda: ostack.run(long_run)["stages"]["scan"]["status"] == "running", 30,
             [worker])
    runs = []
    for _ in range(3):
        _, body = ostack.post_hook("push", ostack.push_payload(DAEMON_REPO))
        runs.append(body["runs"][0])
    daemons = []
    try:
        for run_id in runs:
            run = ostack.wait_run(run_id, timeout=30)
            assert run["status"] == "succeeded", run
            out = [l["line"] for l in ostack.log(run_id, "scan") if l["stream"] == "stdout"]
            daemons.append(int(out[0]))
        ended = time.monotonic()
        wait_for("every daemon killed", lambda: all(pid_gone(d) for d in daemons), 5, [worker])
        # Killed once their stages ended, not when the last one did.
        assert time.monotonic() - ended < 2.5
        assert ostack.run(long_run)["stages"]["scan"]["status"] == "running"
        # And each is named: an escape is worth a warning.
        log = open(worker.log).read()
        for d in daemons:
            assert 'msg="killing leftover descendant" pid=%d\n' % d in log, d
    finally:
        for d in daemons:
            if not pid_gone(d):
                os.kill(d, signal.SIGKILL)
        worker.stop()
        ostack.procs.remove(worker)


def test_children_left_in_a_stage_s_group_are_killed_without_a_warning(ostack):
    """A stage that ends with children still in its group: the group kill
    ends them, and they are no escaped daemons, so the worker does not
    warn of them as it does of those (dying ones are only reaped)."""
    worker = ostack.start_worker("scan", 1, "child-worker")
    try:
        children = []
        for _ in range(3):
            _, body = ostack.post_hook("push", ostack.push_payload(CHILD_REPO))
            run = ostack.wait_run(body["runs"][0], timeout=30)
            assert run["status"] == "succeeded", run
            out = [l["line"] for l in ostack.log(run["id"], "scan") if l["stream"] == "stdout"]
            children.append(int(out[0]))
        wait_for("the children killed", lambda: all(pid_gone(c) for c in children), 5, [worker])
        time.sleep(1.5)  # a search put off would run by now
        assert "killing leftover descendant" not in open(worker.log).read()
    finally:
        worker.stop()
        ostack.procs.remove(worker)
