"""The agent out of file descriptors (lib/listener_backoff.c, lib/fdlimit.c).

More connections than the agent may open files: accept() fails with EMFILE
for as long as they stay. libevent alone would try again on every turn of
the loop, at full CPU and with a warning on stderr each time; the agent
pauses accepting instead, says so once, counts it, and takes the waiting
connections once there is room. At start the agent raises its soft limit
of open files to the hard one."""

import os
import resource
import socket
import subprocess
import time

import pytest

from conftest import APP_REPO, limits, pipeline, started_stack, wait_for

FLOOD = 100
LIMIT = 64
# The soft limit the stack's processes start with: below the hard one, as
# under systemd (1024:524288).
START_SOFT = 512


@pytest.fixture(scope="module")
def fstack():
    def pipelines(repo, root):
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": ["true"]}})}
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limit[1] > START_SOFT
    resource.setrlimit(resource.RLIMIT_NOFILE, (START_SOFT, limit[1]))
    try:
        stacks = started_stack("sluice-open-files-", pipelines, workers=())
        stack = next(stacks)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)
    yield stack
    next(stacks, None)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_agent_runs_with_its_soft_limit_of_open_files_raised_to_the_hard_one(fstack):
    soft, hard = limits(fstack.agent.popen.pid)
    assert soft == hard > START_SOFT, (soft, hard)
    # Started with the same limits, the devbroker keeps them.
    assert limits(fstack.broker.popen.pid) == (START_SOFT, hard)
    assert fstack.agent_log_lines('msg="open files limit raised" from=%d to=%d' % (START_SOFT, hard))


def test_out_of_descriptors_the_agent_pauses_accepting_then_takes_the_waiting_connections(
        fstack):
    pid = fstack.agent.popen.pid
    before = limits(pid)
    assert len(os.listdir("/proc/%d/fd" % pid)) < LIMIT - 10
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (LIMIT, before[1])],
                   check=True)
    flood = []
    try:
        for _ in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", fstack.agent_port)))
        wait_for("accepting to pause",
                 lambda: fstack.agent_log_lines("cannot accept connections"), 10)
        # Spinning on accept() the agent would use a whole CPU meanwhile.
        used = cpu_seconds(pid)
        time.sleep(2)
        used = cpu_seconds(pid) - used
        assert used < 0.5, "the agent used %.2f s of CPU in 2 s out of descriptors" % used
        warnings = fstack.agent_log_lines("cannot accept connections")
        assert len(warnings) == 1, warnings
        assert 'error="Too many open files"' in warnings[0]
        assert not fstack.agent_log_lines("Error from accept()")
    finally:
        for s in flood:
            s.close()
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % before], check=True)

    wait_for("accepting again", lambda: fstack.agent_log_lines("accepting connections again"), 10)
    status, body = fstack.post_hook("push", fstack.push_payload(APP_REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    assert fstack.metric("sluice_http_accept_pauses_total") >= 1
