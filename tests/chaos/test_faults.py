"""The fault suite (make chaos): sluice's promises under the faults it is
built to survive. An accepted webhook is never lost and never starts a run
twice, even when the agent is killed mid-burst; a stage's success is recorded
exactly once while workers are killed under it; intake keeps accepting while
Kafka is down; and a Redis restart loses nothing, with webhooks during the
outage refused (503) so that GitHub delivers them again. Each scenario runs a
stack of its own, with short leases and timeouts so that it stays quick."""

import http.client
import json
import os
import queue
import random
import signal
import threading
import time
import uuid

import pytest

from harness import Stack, pipeline, wait_for
from integration_conftest import started_stack
from resp import Redis

PREFIX = "sluice:"


def repo_name(name):
    return "sluice-chaos/" + name


def quick_pipeline(name, stages, **top):
    p = pipeline(name, repo_name(name), stages=stages)
    p.update(top)
    return p


def stage(script, needs=None):
    s = {"run": ["sh", "-c", script], "checkout": False}
    if needs:
        s["needs"] = needs
    return s


def kill9(stack, proc):
    """SIGKILL, reaped; the process leaves the stack's list, so that the
    check that nothing died during the test does not count it."""
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait()
    stack.procs.remove(proc)


def post(stack, name, delivery):
    """One attempt at a webhook delivery; (status, body), or (None, error)
    when the connection failed."""
    try:
        return stack.post_hook("push", stack.push_payload(repo_name(name)), delivery=delivery)
    except (OSError, http.client.HTTPException) as e:
        return None, repr(e)


def deliver(stack, name, delivery, deadline):
    """Delivers until answered 2xx, the way GitHub redelivers a webhook that
    got a connection error or a 5xx: the same delivery id each time. Returns
    (the number of attempts, the 2xx answer's body)."""
    tries = 0
    while True:
        status, body = post(stack, name, delivery)
        tries += 1
        if status is not None and 200 <= status < 300:
            return tries, body
        assert status is None or status >= 500, (delivery, status, body)
        assert time.monotonic() < deadline, "delivery %s never accepted: %s %s" % (
            delivery, status, body)
        time.sleep(0.2)


def delivery_key(delivery):
    return "421337001:" + delivery


def runs_by_delivery(stack):
    """{delivery key: [(run id, status), ...]} for every run in Redis."""
    out = {}
    with Redis(stack.redis_port) as r:
        for rid in r.call("ZRANGE", PREFIX + "runs", 0, -1):
            d, st = r.call("HMGET", PREFIX + "run:" + rid.decode(), "delivery", "status")
            out.setdefault(d.decode(), []).append((rid.decode(), st.decode()))
    return out


def wait_all_finished(stack, run_ids, timeout, procs):
    pending = set(run_ids)

    def check():
        with Redis(stack.redis_port) as r:
            for rid in list(pending):
                st = r.call("HGET", PREFIX + "run:" + rid, "status")
                if st and st.decode() in ("succeeded", "failed", "cancelled"):
                    pending.discard(rid)
        return not pending
    wait_for("%d runs to finish" % len(pending), check, timeout, procs)


def run_stages(stack, run_id, names):
    """{stage: (status, [attempt statuses])} from Redis."""
    out = {}
    with Redis(stack.redis_port) as r:
        for n in names:
            st, hist = r.call("HMGET", "%srun:%s:stage:%s" % (PREFIX, run_id, n), "status",
                              "attempts")
            attempts = json.loads(hist) if hist else []
            out[n] = (st.decode() if st else None, [a.get("status") for a in attempts])
    return out


# --- 1. the agent killed during a burst of webhooks --------------------------

BURST = 500
SENDERS = 8


@pytest.fixture
def burst_stack():
    yield from started_stack(
        "sluice-chaos-burst-",
        lambda repo, root: {"burst.yaml": quick_pipeline("burst", {"build": stage("true")})},
        workers=(("build", 4), ("build", 4)), log_level="info")


def test_agent_killed_during_a_burst_loses_and_duplicates_no_webhook(burst_stack):
    s = burst_stack
    work = queue.Queue()
    deliveries = [str(uuid.uuid4()) for _ in range(BURST)]
    for d in deliveries:
        work.put(d)
    accepted, failures, sent, retried = {}, [], [0], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 90

    def sender():
        while True:
            try:
                d = work.get_nowait()
            except queue.Empty:
                return
            try:
                tries, body = deliver(s, "burst", d, deadline)
            except AssertionError as e:
                with lock:
                    failures.append(str(e))
                continue
            with lock:
                accepted[d] = body["runs"]
                sent[0] += 1
                retried[0] += tries > 1

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    # Mid-burst: no graceful shutdown, requests in every stage of handling.
    wait_for("a third of the burst to be accepted", lambda: sent[0] >= BURST // 3, 60,
             [s.agent])
    kill9(s, s.agent)
    time.sleep(0.5)
    s.start_agent()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert len(accepted) == BURST
    assert retried[0] > 0, "the agent's death went unnoticed: nothing was delivered again"

    # A 2xx is sent only once the run is in Redis: nothing to wait for.
    by_delivery = runs_by_delivery(s)
    lost = [d for d in accepted if delivery_key(d) not in by_delivery]
    assert not lost, "accepted webhooks without a run: %s" % lost[:5]
    twice = {d: r for d, r in by_delivery.items() if len(r) != 1}
    assert not twice, "deliveries with more than one run: %s" % list(twice.items())[:5]
    assert len(by_delivery) == BURST, "runs of deliveries never answered 2xx"
    for d, ids in accepted.items():
        assert ids == [by_delivery[delivery_key(d)][0][0]], (d, ids, by_delivery[delivery_key(d)])
    run_ids = [r[0][0] for r in by_delivery.values()]
    wait_all_finished(s, run_ids, 120, [s.agent])
    statuses = {runs[0][1] for runs in runs_by_delivery(s).values()}
    assert statuses == {"succeeded"}, statuses


# --- 2. workers killed under 200 runs in flight -------------------------------

IN_FLIGHT = 200
PIPE_STAGES = ("build", "test", "package")


@pytest.fixture
def worker_stack():
    stages = {
        "build": stage("sleep 0.2"),
        "test": stage("sleep 0.2", needs=["build"]),
        "package": stage("sleep 0.1", needs=["test"]),
    }
    for st in stages.values():
        st["kind"] = "build"
    yield from started_stack(
        "sluice-chaos-workers-",
        # Workers die often here: a stage may be lost several times in a row.
        # A short Kafka session moves a dead worker's partitions on quickly;
        # with the default, every kill stalls its partitions for about 10 s.
        # Not a whole number of seconds: see the note on member ids below.
        lambda repo, root: {"relay.yaml": quick_pipeline("relay", stages, max_attempts=20)},
        workers=(("build", 4),) * 3, log_level="info",
        extra_settings={"worker": {"lease": "3s"}, "kafka": {"session_timeout": "3250ms"},
                        "agent": {"scheduler_interval": "200ms"}})


# librdkafka 2.0.2's mock cluster (inside sluice-devbroker) names a group
# member that joins without an id after the address of its member record. A
# killed worker elected group leader never sends its SyncGroup, so the live
# members wait the whole session timeout for it; the mock's once-a-second
# session sweep can then evict them as well, and they rejoin under their old
# ids after their records were freed. Were a freed record handed straight to
# the next new member, two members would share an id and the mock would abort
# ("rdkafka_mock_cgrp.c: rd_kafka_mock_cgrp_member_sync_set: Assertion
# `!member->resp' failed"). The devbroker writes such an id with a serial
# number that never repeats (queue/devbroker/member_ids.c), so no new member
# gets an id still in use; tests/integration/test_devbroker_member_ids.py
# drives the mock into that case. The session timeout stays off a multiple
# of 500 ms all the same:
# there the sweep was seen to land on that moment (a rebalance started by
# the sweep timing out its sync on a later sweep). A devbroker that dies
# fails the test, as any process of the stack does.
def test_workers_killed_under_load_every_stage_succeeds_exactly_once(worker_stack):
    workers_killed_under_load(worker_stack)


def workers_killed_under_load(s):
    deadline = time.monotonic() + 60
    run_ids = []
    for _ in range(IN_FLIGHT):
        _, body = deliver(s, "relay", str(uuid.uuid4()), deadline)
        run_ids.extend(body["runs"])
    assert len(run_ids) == IN_FLIGHT

    rng = random.Random(7)
    kills, n = 0, 3
    stop_killing = time.monotonic() + 30
    with Redis(s.redis_port) as r:
        def open_runs():
            return sum(1 for rid in run_ids if r.call(
                "HGET", PREFIX + "run:" + rid, "status").decode() in ("queued", "running"))
        while time.monotonic() < stop_killing and open_runs():
            time.sleep(4)
            workers = [p for p in s.procs if p.name.startswith("worker-")]
            kill9(s, rng.choice(workers))
            kills += 1
            n += 1
            s.start_worker("build", 4, "worker-%d" % n)
    assert kills >= 3, "the runs finished before the workers could be killed"

    wait_all_finished(s, run_ids, 120, [s.agent])
    bad = {}
    for rid in run_ids:
        with Redis(s.redis_port) as r:
            status = r.call("HGET", PREFIX + "run:" + rid, "status").decode()
        stages = run_stages(s, rid, PIPE_STAGES)
        ok = status == "succeeded" and all(
            st == "succeeded" and hist.count("succeeded") == 1
            and all(a in ("succeeded", "lost") for a in hist)
            for st, hist in stages.values())
        if not ok:
            bad[rid] = (status, stages)
    assert not bad, "%d runs broke the promise, e.g. %s" % (len(bad), list(bad.items())[:3])

    # The workers still running, some perhaps never assigned a partition in
    # the churn, close their consumers and exit cleanly on SIGTERM.
    for p in [p for p in s.procs if p.name.startswith("worker-")]:
        code = p.stop()
        s.procs.remove(p)
        assert code == 0, p.describe()


# --- 3. the Kafka broker down for 10 s ----------------------------------------

@pytest.fixture
def kafka_stack():
    yield from started_stack(
        "sluice-chaos-kafka-",
        lambda repo, root: {"steady.yaml": quick_pipeline("steady", {
            "build": stage("true"), "test": stage("true", needs=["build"])})},
        workers=(("build,test", 4),), log_level="info")


def test_kafka_down_intake_still_accepts_and_everything_completes(kafka_stack):
    s = kafka_stack
    deadline = time.monotonic() + 60
    run_ids = []
    for _ in range(10):
        _, body = deliver(s, "steady", str(uuid.uuid4()), deadline)
        run_ids.extend(body["runs"])

    s.broker.popen.send_signal(signal.SIGUSR1)
    down_until = time.monotonic() + 10
    during = []
    try:
        while time.monotonic() < down_until:
            t0 = time.monotonic()
            status, body = post(s, "steady", str(uuid.uuid4()))
            during.append((status, time.monotonic() - t0))
            assert status == 202, (status, body)
            run_ids.extend(body["runs"])
            time.sleep(0.2)
    finally:
        s.broker.popen.send_signal(signal.SIGUSR2)
    assert len(during) >= 20, during
    assert max(t for _, t in during) < 2.0, "intake stalled while Kafka was down: %s" % during

    wait_all_finished(s, run_ids, 90, [s.agent, s.broker])
    with Redis(s.redis_port) as r:
        statuses = [r.call("HGET", PREFIX + "run:" + rid, "status").decode() for rid in run_ids]
    assert statuses == ["succeeded"] * len(run_ids), statuses


# --- 4. redis-server restarted -------------------------------------------------

class DurableRedisStack(Stack):
    """A stack whose redis-server writes every change to its append-only file
    before answering, so that a SIGKILL loses nothing acknowledged."""

    REDIS_PERSISTENCE = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]


@pytest.fixture
def redis_stack():
    yield from started_stack(
        "sluice-chaos-redis-",
        lambda repo, root: {"durable.yaml": quick_pipeline("durable", {
            "build": stage("sleep 1"), "test": stage("true", needs=["build"])})},
        stack_class=DurableRedisStack, workers=(("build,test", 4),), log_level="info",
        extra_settings={"redis": {"timeout": "1s"}})


def test_redis_restart_loses_nothing_and_refuses_webhooks_meanwhile(redis_stack):
    s = redis_stack
    deadline = time.monotonic() + 60
    run_ids = []
    for _ in range(20):
        _, body = deliver(s, "durable", str(uuid.uuid4()), deadline)
        run_ids.extend(body["runs"])

    kill9(s, s.redis)
    refused = []
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        d = str(uuid.uuid4())
        status, body = post(s, "durable", d)
        assert status == 503, (status, body)
        refused.append(d)
        time.sleep(0.25)
    s.start_redis()

    assert refused
    by_delivery = runs_by_delivery(s)
    assert not [d for d in refused if delivery_key(d) in by_delivery], \
        "a webhook refused with 503 created a run"
    with Redis(s.redis_port) as r:
        assert all(r.call("EXISTS", PREFIX + "delivery:" + delivery_key(d)) == 0
                   for d in refused)
    assert all(rid in [x[0] for v in by_delivery.values() for x in v] for rid in run_ids), \
        "a run recorded before the restart is gone"

    for d in refused:  # GitHub's redelivery
        _, body = deliver(s, "durable", d, time.monotonic() + 30)
        assert len(body["runs"]) == 1 and not body.get("duplicate"), body
        run_ids.extend(body["runs"])
    wait_all_finished(s, run_ids, 60, [s.agent])
    with Redis(s.redis_port) as r:
        statuses = [r.call("HGET", PREFIX + "run:" + rid, "status").decode() for rid in run_ids]
    assert statuses == ["succeeded"] * len(run_ids), list(zip(run_ids, statuses))
    by_delivery = runs_by_delivery(s)
    assert all(len(v) == 1 for v in by_delivery.values()), by_delivery
