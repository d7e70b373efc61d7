"""A worker that cannot renew a stage's lease stops the stage before the
lease can end, so that the attempt the agent queues once Redis is back
never runs beside it; a Redis that comes back in time leaves the stage
alone, and loses none of its log lines.

The stack is each test's own (a test kills or stops its Redis): one build
worker with a 4 s lease (renewed every 1.3 s), a Redis that writes every
change to its append-only file before answering. Each stage appends
"start N", "term N" (on SIGTERM) and "done N" (N its attempt) to marks.
"""

import os
import signal
import time

import pytest

from conftest import pipeline, started_stack, wait_for
from harness import DurableRedisStack
from resp import Redis

LEASE_S = 4

# The first attempt waits for a signal; a later one ends at once.
FENCED = r'''
echo "start $SLUICE_ATTEMPT" >> "$1"
if [ "$SLUICE_ATTEMPT" = 1 ]; then
  trap 'echo "term $SLUICE_ATTEMPT" >> "$1"; exit 143' TERM
  sleep 60 &
  wait
fi
echo "done $SLUICE_ATTEMPT" >> "$1"
'''

# Outlasts the Redis outage of its test, then ends.
PATIENT = r'''
echo "start $SLUICE_ATTEMPT" >> "$1"
trap 'echo "term $SLUICE_ATTEMPT" >> "$1"; exit 143' TERM
sleep 5 &
wait
echo "done $SLUICE_ATTEMPT" >> "$1"
'''

# Takes half a second to stop on SIGTERM (the kill grace is 1 s).
LINGERING = r'''
echo "start $SLUICE_ATTEMPT" >> "$1"
trap 'echo "term $SLUICE_ATTEMPT" >> "$1"; sleep 0.5; echo "late $SLUICE_ATTEMPT" >> "$1"; exit 143' TERM
sleep 60 &
wait
'''

# Prints a line every 50 ms for 2 s.
CHATTY = r'''
echo "start $SLUICE_ATTEMPT" >> "$1"
i=1
while [ $i -le 40 ]; do echo "line $i"; i=$((i + 1)); sleep 0.05; done
echo "done $SLUICE_ATTEMPT" >> "$1"
'''


def fence_pipelines(repo, root):
    marks = os.path.join(root, "marks")

    def p(name, script):
        return pipeline(name, "sluice-fence/" + name, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", script, "sh", marks], "checkout": False,
                      "timeout": "2m"}})
    return {"fenced.yaml": p("fenced", FENCED), "patient.yaml": p("patient", PATIENT),
            "chatty.yaml": p("chatty", CHATTY), "lingering.yaml": p("lingering", LINGERING)}


@pytest.fixture
def fstack():
    for s in started_stack("sluice-fence-", fence_pipelines, stack_class=DurableRedisStack,
                           workers=(("build", 1),),
                           extra_settings={"worker": {"lease": "%ds" % LEASE_S},
                                           "agent": {"scheduler_interval": "100ms"},
                                           "redis": {"timeout": "1s"}}):
        s.marks = os.path.join(s.root, "marks")
        yield s


def marks(stack):
    try:
        with open(stack.marks) as f:
            return f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def start_run(stack, name):
    status, body = stack.post_hook("push", stack.push_payload("sluice-fence/" + name))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def worker_log(stack):
    worker = next(p for p in stack.procs if p.name == "worker-1")
    with open(worker.log, errors="replace") as f:
        return f.read()


def kill_redis(stack):
    os.kill(stack.redis.popen.pid, signal.SIGKILL)
    stack.redis.popen.wait()
    stack.procs.remove(stack.redis)


def test_a_stage_whose_lease_cannot_be_renewed_is_stopped_while_redis_is_away(fstack):
    s = fstack
    run_id = start_run(s, "fenced")
    wait_for("the first attempt to start", lambda: marks(s) == ["start 1"], 20, [s.agent])
    kill_redis(s)
    # Nothing can tell the worker its lease is gone: it stops the stage on
    # its own, with Redis still away.
    wait_for("the stage stopped with Redis away", lambda: "term 1" in marks(s), 3 * LEASE_S)
    assert marks(s) == ["start 1", "term 1"]
    log = worker_log(s)
    assert "lease not renewed in time; stopping the stage" in log
    # A renewal that failed is tried again within a second, not at once:
    # a few times before the fence, not thousands.
    retries = log.count('msg="lease not renewed" ')
    assert 1 <= retries <= 2 * LEASE_S, retries
    s.start_redis()

    run = s.wait_run(run_id, timeout=30)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == [
        (1, "lost"), (2, "succeeded")], build
    # The second attempt started after the first had stopped.
    assert marks(s) == ["start 1", "term 1", "start 2", "done 2"]


def test_a_stage_whose_lease_is_found_gone_is_killed_without_grace(fstack):
    """A renewal that finds the lease gone (a failover to a replica that
    missed it) comes when the next attempt may already run: the stage is
    stopped at once, not given the kill grace beside it."""
    s = fstack
    start_run(s, "lingering")
    wait_for("the stage to start", lambda: marks(s) == ["start 1"], 20, [s.agent])
    with Redis(s.redis_port) as r:
        keys = r.call("KEYS", "*lease:*:build")
        assert len(keys) == 1, keys
        r.call("DEL", keys[0])
    wait_for("the stage to be abandoned", lambda: "stage abandoned: lease lost"
             in worker_log(s), 3 * LEASE_S)
    # Its SIGTERM trap would end it within the grace.
    time.sleep(2)
    assert "late 1" not in marks(s), marks(s)


def test_a_stage_keeps_its_lease_through_a_redis_pause_shorter_than_it(fstack):
    s = fstack
    run_id = start_run(s, "patient")
    wait_for("the stage to start", lambda: marks(s) == ["start 1"], 20, [s.agent])
    os.kill(s.redis.popen.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)
    finally:
        os.kill(s.redis.popen.pid, signal.SIGCONT)

    run = s.wait_run(run_id, timeout=30)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == [
        (1, "succeeded")], build
    assert marks(s) == ["start 1", "done 1"]
    assert "lease not renewed in time" not in worker_log(s)


def test_the_log_lines_a_stage_prints_while_redis_is_away_are_stored_once_it_is_back(fstack):
    """Redis killed and started again (it keeps its data) while the stage
    prints: the lines it printed meanwhile wait in the worker and are
    stored once Redis is back, in order and once each, before the stage's
    outcome."""
    s = fstack
    run_id = start_run(s, "chatty")
    wait_for("the stage to start", lambda: marks(s) == ["start 1"], 20, [s.agent])
    kill_redis(s)
    time.sleep(0.8)
    s.start_redis()

    run = s.wait_run(run_id, timeout=30)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == [
        (1, "succeeded")], build
    printed = [entry["line"] for entry in s.log(run_id, "build") if entry["stream"] == "stdout"]
    assert printed == ["line %d" % i for i in range(1, 41)], printed
    assert "log lines not written yet: they wait for Redis" in worker_log(s)
