"""claim.lua and finish.lua run as the worker runs them, on runs written by
hand under key prefixes of their own in the shared stack's Redis.

A claim that names the run's stages (a worker that holds the run's
definition, workers/defcache.h) gets the run without the definition and the
outputs of the stages it named; one that does not gets the definition and
the outputs of every stage in it. A worker that claims again an attempt it
claimed already (the reply was lost) is answered "claimed" again. The
stage.finished event carries the stage's retry policy whether the worker
sends it (ARGV[14]) or finish.lua reads it from the definition.
rollout_save.lua makes each numbered save of a deployment attempt once.
"""

import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from harness import lua_script, outbox_messages  # noqa: E402
from resp import Redis  # noqa: E402

TOKEN = "host:1:aabbccdd"
RETRY = {"max": 1, "backoff_ms": 100}
DEF = {"stages": {
    "build": {"kind": "build", "run": ["true"]},
    "lint": {"kind": "test", "run": ["true"], "needs": ["build"]},
    "test": {"kind": "test", "run": ["true"], "needs": ["build"], "retry": RETRY,
             "max_attempts": 5},
}}


def write_run(r, P, run):
    rkey = P + "run:" + run
    r.call("HSET", rkey, "id", run, "status", "running", "pipeline", "p", "repository", "o/r",
           "sha", "a" * 40, "ref", "refs/heads/main", "def", json.dumps(DEF))
    r.call("HSET", rkey + ":stage:build", "status", "succeeded", "attempt", 1,
           "outputs", json.dumps({"image": "reg.example/app@sha256:abc"}))
    for stage in ("lint", "test"):
        r.call("HSET", rkey + ":stage:" + stage, "status", "queued", "attempt", 1)


def claim_reply(r, P, run, stage, *names, token=TOKEN, now=1000):
    have = ["have-def"] + list(names) if names else []
    return r.call("EVAL", lua_script("claim"), 0, P, run, stage, 1, token, 60000, now, *have)


def claim(r, P, run, stage, *names, now=1000):
    reply = claim_reply(r, P, run, stage, *names, now=now)
    assert reply[0] == b"claimed", reply
    return json.loads(reply[1])


def stage_finished_events(r, P):
    events = []
    for topic, value in outbox_messages(r, P, "outbox:events"):
        assert topic == "@events", topic
        event = json.loads(value)
        if event["type"] == "dev.sluice.stage.finished":
            events.append(event["data"])
    return events


def test_a_claim_naming_the_stages_leaves_the_definition_out(stack):
    with Redis(stack.redis_port) as r:
        P = "t-claim:"
        write_run(r, P, "r1")
        full = claim(r, P, "r1", "lint")
        assert json.loads(full["def"]) == DEF
        assert full["outputs"] == {"build": {"image": "reg.example/app@sha256:abc"}}
        assert full["sha"] == "a" * 40 and full["pipeline"] == "p"

        short = claim(r, P, "r1", "test", "build", "lint", "test")
        assert "def" not in short, short
        assert short["outputs"] == {"build": {"image": "reg.example/app@sha256:abc"}}
        assert short["sha"] == "a" * 40 and short["pipeline"] == "p"
        assert r.call("HGET", P + "run:r1:stage:test", "status") == b"running"

        # Only the stages named are looked at for outputs.
        write_run(r, P, "r2")
        assert "outputs" not in claim(r, P, "r2", "lint", "lint", "test")


def started_events(r, P):
    return [json.loads(value)["data"] for _, value in outbox_messages(r, P, "outbox:events")
            if json.loads(value)["type"] == "dev.sluice.stage.started"]


def test_a_claim_whose_reply_was_lost_is_answered_claimed_again(stack):
    """A worker retries a claim whose reply it never got: the same worker
    (token and attempt) is answered "claimed" again with the run and what
    its lease has left, and nothing changes; another worker still gets
    "not-queued"."""
    with Redis(stack.redis_port) as r:
        P = "t-reclaim:"
        write_run(r, P, "r1")
        skey = P + "run:r1:stage:lint"
        reply = claim_reply(r, P, "r1", "lint", "build", "lint")
        # A claim answers what its lease has left: all of it when new.
        assert reply[0] == b"claimed" and reply[2] == 60000, reply
        first = json.loads(reply[1])
        # Its lease a second shorter, as if the reply had come late.
        r.call("PEXPIRE", P + "lease:r1:lint", 59000)
        lease = r.call("PTTL", P + "lease:r1:lint")
        reply = claim_reply(r, P, "r1", "lint", "build", "lint", now=2000)
        assert reply[0] == b"claimed", reply
        # Claimed again, it answers what the first claim's lease has left.
        assert 0 < reply[2] <= lease, reply
        again = json.loads(reply[1])
        assert again == first
        assert r.call("HMGET", skey, "status", "worker", "started") == [
            b"running", TOKEN.encode(), b"1000"]
        assert 0 < r.call("PTTL", P + "lease:r1:lint") <= lease
        assert len(started_events(r, P)) == 1, started_events(r, P)

        assert claim_reply(r, P, "r1", "lint", token="host:2:eeff0011") == [b"not-queued"]
        # Once the lease is gone (reaped), the same worker is refused too.
        r.call("DEL", P + "lease:r1:lint")
        assert claim_reply(r, P, "r1", "lint") == [b"not-queued"]


def finish(r, P, run, stage, *policy):
    return r.call("EVAL", lua_script("finish"), 0, P, run, stage, 1, TOKEN, "failed", "3", "",
                  "", 2000, "results", "{}", "", *policy)


def test_the_finished_event_carries_the_retry_policy_sent_or_read(stack):
    with Redis(stack.redis_port) as r:
        for P, policy in (("t-finish-sent:", [json.dumps({"retry": RETRY,
                                                           "max_attempts": 5})]),
                          ("t-finish-read:", [])):
            write_run(r, P, "r1")
            claim(r, P, "r1", "test")
            assert finish(r, P, "r1", "test", *policy) == b"recorded"
            [data] = stage_finished_events(r, P)
            assert data["stage"] == "test" and data["status"] == "failed", data
            assert data["exit_code"] == 3, data
            assert data["retry"] == RETRY and data["max_attempts"] == 5, (P, data)
            stage = r.call("HGET", P + "run:r1:stage:test", "status")
            assert stage == b"failed", stage


def test_a_finish_sent_again_is_answered_recorded_and_changes_nothing(stack):
    """A worker whose finish reply was lost sends it again: "recorded"
    again, with one attempt in the history and one result; another worker's
    finish of the same attempt is fenced."""
    with Redis(stack.redis_port) as r:
        P = "t-refinish:"
        write_run(r, P, "r1")
        claim(r, P, "r1", "test")
        assert finish(r, P, "r1", "test") == b"recorded"
        assert finish(r, P, "r1", "test") == b"recorded"
        skey = P + "run:r1:stage:test"
        attempts = json.loads(r.call("HGET", skey, "attempts"))
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed")], attempts
        results = [t for t, _ in outbox_messages(r, P) if t == "results"]
        assert len(results) == 1, outbox_messages(r, P)
        assert len(stage_finished_events(r, P)) == 1
        other = r.call("EVAL", lua_script("finish"), 0, P, "r1", "test", 1, "host:2:eeff0011",
                       "failed", "3", "", "", 2000, "results", "{}", "")
        assert other == b"fenced"



def save(r, P, attempt, seq, step, saver="1"):
    state = json.dumps({"step": step})
    data = json.dumps({"step": step, "status": "active"})
    return r.call("EVAL", lua_script("rollout_save"), 0, P, "r1", "deploy@prod", attempt, TOKEN,
                  state, "deploy.step", data, "", saver, seq)


def step_events(r, P):
    return [(json.loads(value)["data"]["attempt"], json.loads(value)["data"]["step"])
            for _, value in outbox_messages(r, P, "outbox:events")
            if json.loads(value)["type"] == "dev.sluice.deploy.step"]


def test_a_rollout_save_sent_again_changes_nothing(stack):
    """rollout_save.lua takes each numbered save of a run of a deployment
    attempt once: one the worker sends again (its answer lost) is answered
    "saved" and neither writes the state nor publishes its event again. The
    attempt run again after a pause, or the next attempt, numbers its own
    saves from 1; a save of an attempt that is not current is fenced off."""
    with Redis(stack.redis_port) as r:
        P = "t-save:"
        skey = P + "run:r1:stage:deploy@prod"
        r.call("HSET", P + "run:r1", "id", "r1", "status", "running")
        r.call("HSET", skey, "status", "running", "attempt", 1, "worker", TOKEN)
        assert save(r, P, 1, 1, 0) == b"saved"
        assert save(r, P, 1, 2, 1) == b"saved"
        # The first sent again, then the second: both made already.
        assert save(r, P, 1, 1, 0) == b"saved"
        assert save(r, P, 1, 2, 1) == b"saved"
        assert json.loads(r.call("HGET", skey, "rollout")) == {"step": 1}
        assert step_events(r, P) == [(1, 0), (1, 1)]

        # The attempt parked, then taken up again by the same worker.
        assert save(r, P, 1, 1, 2, saver="2") == b"saved"
        assert json.loads(r.call("HGET", skey, "rollout")) == {"step": 2}
        assert step_events(r, P) == [(1, 0), (1, 1), (1, 2)]

        r.call("HSET", skey, "attempt", 2)
        assert save(r, P, 1, 2, 3, saver="2") == b"fenced"
        assert save(r, P, 2, 1, 5, saver="3") == b"saved"
        assert json.loads(r.call("HGET", skey, "rollout")) == {"step": 5}
        assert step_events(r, P) == [(1, 0), (1, 1), (1, 2), (2, 5)]
