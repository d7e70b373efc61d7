"""route.lua as the agent runs it, on runs written by hand under key
prefixes of their own in the shared stack's Redis, watched with MONITOR.

A routing reads a stage's status when it first needs it: the finished
stage's dependants and their needs; the others only as far as it takes to
find a stage still to run, looked for from the stage after the finished one
by name; all of them when the finished stage did not succeed (its failure
spreads skips) or when none is left to run (the run ends). The agent reads
a run's definition once for the results of all its stages.
"""

import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from conftest import APP_REPO  # noqa: E402
from harness import RedisMonitor, lua_script  # noqa: E402
from resp import Redis  # noqa: E402

# Sorted by name: pkg, s0, s1, ..., s9. pkg needs s2.
NAMES = ["s%d" % i for i in range(10)]
DEF = {"stages": dict({n: {"kind": "build", "run": ["true"], "needs": []} for n in NAMES},
                      pkg={"kind": "build", "run": ["true"], "needs": ["s2"]})}
JOB = {"topic": "sluice.jobs.build", "value": "{}"}


def write_run(r, P, run, statuses, definition=DEF):
    rkey = P + "run:" + run
    r.call("HSET", rkey, "id", run, "status", "running", "pipeline", "p", "repository", "o/r",
           "sha", "a" * 40, "ref", "refs/heads/main", "def", json.dumps(definition))
    for name, status in statuses.items():
        r.call("HSET", rkey + ":stage:" + name, "status", status, "attempt", 1)


def skeleton(definition):
    """What the agent sends of a definition it holds (router.c)."""
    return {"stages": {n: {"needs": s["needs"]} for n, s in definition["stages"].items()}}


def route(port, P, run, stage, jobs=None, definition=None):
    """The reply, the stages whose status the script read, and whether it
    read the run's definition. definition: sent as the agent sends it."""
    args = [] if definition is None else ["", "", "{}", json.dumps(skeleton(definition))]
    with Redis(port) as r, RedisMonitor(port) as mon:
        reply = r.call("EVAL", lua_script("route"), 0, P, run, stage, 1, 5000,
                       json.dumps(jobs or {}), *args)
        lines = mon.lines(0.3)
    key = '"HMGET" "%srun:%s:stage:' % (P, run)
    read = {line.split(key, 1)[1].split('"', 1)[0] for line in lines if key in line}
    def_read = any('"%srun:%s"' % (P, run) in line and '"def"' in line for line in lines)
    return [x.decode() for x in reply], read, def_read


def statuses(r, P, run, names):
    return {n: (r.call("HGET", "%srun:%s:stage:%s" % (P, run, n), "status") or b"").decode()
            for n in names}


def test_a_success_with_a_dependant_reads_it_and_its_needs(stack):
    P = "t-route-dep:"
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r1", dict({n: "succeeded" for n in NAMES[:3]}, s3="running", pkg="pending",
                                   **{n: "queued" for n in NAMES[4:]}))
    reply, read, def_read = route(stack.redis_port, P, "r1", "s2", {"pkg": JOB})
    assert reply == ["routed", "running", "pkg"], reply
    assert read == {"s2", "pkg"}, read
    assert def_read
    with Redis(stack.redis_port) as r:
        assert statuses(r, P, "r1", ["pkg"]) == {"pkg": "queued"}


def test_given_the_definitions_skeleton_the_script_reads_no_definition(stack):
    P = "t-route-skeleton:"
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r1", dict({n: "succeeded" for n in NAMES[:3]}, s3="running", pkg="pending",
                                   **{n: "queued" for n in NAMES[4:]}))
        write_run(r, P, "r2", dict({n: "succeeded" for n in NAMES}, pkg="running"))
    reply, read, def_read = route(stack.redis_port, P, "r1", "s2", {"pkg": JOB}, DEF)
    assert reply == ["routed", "running", "pkg"], reply
    assert read == {"s2", "pkg"} and not def_read, (read, def_read)
    with Redis(stack.redis_port) as r:
        r.call("HSET", P + "run:r2:stage:pkg", "status", "succeeded")
    reply, read, def_read = route(stack.redis_port, P, "r2", "pkg", None, DEF)
    assert reply == ["routed", "succeeded"], reply
    assert not def_read


def test_without_a_dependant_the_search_stops_at_the_next_stage_to_run(stack):
    P = "t-route-next:"
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r1", dict({n: "succeeded" for n in NAMES[:6]}, pkg="succeeded",
                                   **{n: "queued" for n in NAMES[6:]}))
    reply, read, _ = route(stack.redis_port, P, "r1", "s5")
    assert reply == ["routed", "running"], reply
    assert read == {"s5", "s6"}, read


def test_the_search_goes_round_to_the_stages_before_the_finished_one(stack):
    P = "t-route-round:"
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r1", dict({n: "succeeded" for n in NAMES}, pkg="succeeded", s1="running"))
    reply, read, _ = route(stack.redis_port, P, "r1", "s8")
    assert reply == ["routed", "running"], reply
    assert read == {"s8", "s9", "pkg", "s0", "s1"}, read


def test_the_last_stage_to_finish_ends_the_run_wherever_it_stands(stack):
    with Redis(stack.redis_port) as r:
        write_run(r, "t-route-ok:", "r1", dict({n: "succeeded" for n in NAMES}, pkg="succeeded"))
        write_run(r, "t-route-failed:", "r1",
                  dict({n: "succeeded" for n in NAMES}, pkg="succeeded", s7="failed"))
        # s7's failure was routed when its result came.
        r.call("HSET", "t-route-failed:run:r1:stage:s7", "routed", "1")
    reply, read, _ = route(stack.redis_port, "t-route-ok:", "r1", "s4")
    assert reply == ["routed", "succeeded"], reply
    assert read == set(NAMES) | {"pkg"}, read
    reply, _, _ = route(stack.redis_port, "t-route-failed:", "r1", "s4")
    assert reply == ["routed", "failed"], reply
    with Redis(stack.redis_port) as r:
        for P, status in (("t-route-ok:", b"succeeded"), ("t-route-failed:", b"failed")):
            assert r.call("HGET", P + "run:r1", "status") == status, P


def test_a_failure_skips_its_dependants_through_the_graph(stack):
    P = "t-route-skip:"
    chain = {"stages": {
        "a": {"kind": "build", "run": ["true"], "needs": []},
        "b": {"kind": "build", "run": ["true"], "needs": ["a"]},
        "c": {"kind": "build", "run": ["true"], "needs": ["b"]},
        "d": {"kind": "build", "run": ["true"], "needs": []},
    }}
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r1", {"a": "failed", "b": "pending", "c": "pending", "d": "running"},
                  chain)
    reply, read, _ = route(stack.redis_port, P, "r1", "a", {"b": JOB}, chain)
    assert reply == ["routed", "running"], reply
    assert read == {"a", "b", "c", "d"}, read
    with Redis(stack.redis_port) as r:
        assert statuses(r, P, "r1", "abcd") == {
            "a": "failed", "b": "skipped", "c": "skipped", "d": "running"}


def test_a_failure_not_routed_yet_neither_skips_nor_ends_the_run(stack):
    """Results arrive in any order: a's failure is recorded but its result
    (which may retry it) not routed yet when d's is. d's routing leaves a's
    dependant pending and the run running; a's own routing then decides."""
    P = "t-route-unrouted:"
    chain = {"stages": {
        "a": {"kind": "build", "run": ["true"], "needs": []},
        "b": {"kind": "build", "run": ["true"], "needs": ["a"]},
        "d": {"kind": "build", "run": ["true"], "needs": []},
        "e": {"kind": "build", "run": ["true"], "needs": []},
    }}
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r1", {"a": "failed", "b": "pending", "d": "succeeded",
                               "e": "failed"}, chain)
        r.call("HSET", P + "run:r1:stage:e", "routed", "1")
    reply, _, _ = route(stack.redis_port, P, "r1", "d", {}, chain)
    assert reply == ["routed", "running"], reply
    with Redis(stack.redis_port) as r:
        assert statuses(r, P, "r1", "abde") == {
            "a": "failed", "b": "pending", "d": "succeeded", "e": "failed"}
        # e's routing, again with a unrouted: e spreads no skip through a.
        r.call("HDEL", P + "run:r1:stage:e", "routed")
    reply, _, _ = route(stack.redis_port, P, "r1", "e", {}, chain)
    assert reply == ["routed", "running"], reply
    with Redis(stack.redis_port) as r:
        assert statuses(r, P, "r1", "b") == {"b": "pending"}
    reply, _, _ = route(stack.redis_port, P, "r1", "a", {"b": JOB}, chain)
    assert reply == ["routed", "failed"], reply
    with Redis(stack.redis_port) as r:
        assert statuses(r, P, "r1", "ab") == {"a": "failed", "b": "skipped"}
        assert r.call("HGET", P + "run:r1", "status") == b"failed"

    # The last other stage to finish does not end the run while a's result,
    # which may retry it, is still to be routed.
    pair = {"stages": {"a": chain["stages"]["a"], "d": chain["stages"]["d"]}}
    with Redis(stack.redis_port) as r:
        write_run(r, P, "r2", {"a": "failed", "d": "succeeded"}, pair)
    reply, _, _ = route(stack.redis_port, P, "r2", "d", {}, pair)
    assert reply == ["routed", "running"], reply


def test_the_agent_reads_a_runs_definition_once_for_all_its_results(stack):
    with RedisMonitor(stack.redis_port) as mon:
        status, body = stack.post_hook("push", stack.push_payload(APP_REPO))
        assert status == 202, (status, body)
        [run_id] = body["runs"]
        run = stack.wait_run(run_id)
        lines = mon.lines(0.3)
    assert run["status"] == "succeeded", run
    assert [s["status"] for s in run["stages"].values()] == ["succeeded", "succeeded"], run
    reads = [line for line in lines if '"HGET" "sluice:run:%s" "def"' % run_id in line]
    assert len(reads) == 1, reads
