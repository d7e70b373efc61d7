"""Run retention (agent.run_retention, queue/scripts/prune.lua).

Runs that ended longer ago than the retention are removed with everything
recorded of them; runs still going, runs that ended lately and releases an
environment refers to are kept whatever their age. End to end, a stack
with a retention of 3 s removes a finished run; against the stack's Redis,
under a prefix of their own, prune.lua's rules one by one."""

import json
import signal
import time

import pytest

from conftest import APP_REPO, http_request, lua_script, pipeline, started_stack, wait_for
from resp import Redis

RETENTION_S = 3


@pytest.fixture(scope="module")
def rstack():
    def pipelines(repo, root):
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": ["echo", "built"]}})}
    yield from started_stack(
        "sluice-retention-", pipelines, workers=(("build", 1),),
        extra_settings={"agent": {"run_retention": "%ds" % RETENTION_S}})


def keys_of(r, prefix, run):
    return sorted(k.decode() for k in r.call("KEYS", "%s*%s*" % (prefix, run)))


def test_a_run_that_ended_longer_ago_than_the_retention_is_removed_whole(rstack):
    status, body = rstack.post_hook("push", rstack.push_payload(APP_REPO))
    assert status == 202, (status, body)
    run = body["runs"][0]
    assert rstack.wait_run(run)["status"] == "succeeded"
    assert "built" in [l["line"] for l in rstack.log(run, "build")]
    with Redis(rstack.redis_port) as r:
        assert keys_of(r, "sluice:", run) == [
            "sluice:log:%s:build" % run, "sluice:run:%s" % run,
            "sluice:run:%s:stage:build" % run]
        wait_for("the run removed", lambda: not keys_of(r, "sluice:", run), RETENTION_S + 10)
        assert r.call("ZSCORE", "sluice:runs", run) is None
        assert r.call("ZSCORE", "sluice:pipeline:app:runs", run) is None
    status, _ = rstack.get("/api/v1/runs/%s" % run)
    assert status == 404
    assert run not in [x["id"] for x in rstack.runs()]
    # The agent reads the script's answer a moment after Redis ran it.
    wait_for("the log line", lambda: 'msg="old runs removed"' in open(rstack.agent.log).read(),
             5)

    def removed():
        _, _, raw = http_request(rstack.agent_port, "GET", "/metrics")
        return [float(l.split()[1]) for l in raw.decode().splitlines()
                if l.startswith("sluice_runs_removed_total ")]
    wait_for("the counter", lambda: removed() and removed()[0] >= 1, 5)


def test_forever_keeps_runs_and_a_reload_applies_a_retention(tmp_path):
    def pipelines(repo, root):
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": ["true"]}})}
    stacks = started_stack("sluice-retention-forever-", pipelines, workers=(("build", 1),),
                           extra_settings={"agent": {"run_retention": "forever",
                                                     "scheduler_interval": "100ms"}})
    stack = next(stacks)
    try:
        status, body = stack.post_hook("push", stack.push_payload(APP_REPO))
        assert status == 202, (status, body)
        run = body["runs"][0]
        assert stack.wait_run(run)["status"] == "succeeded"
        time.sleep(2)
        assert stack.get("/api/v1/runs/%s" % run)[0] == 200
        with open(stack.config) as f:
            text = f.read()
        assert 'run_retention: "forever"' in text
        with open(stack.config, "w") as f:
            f.write(text.replace('run_retention: "forever"', 'run_retention: "1s"'))
        stack.agent.popen.send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: "run_retention_ms=1000" in open(stack.agent.log).read(),
                 10, [stack.agent])
        wait_for("the run removed", lambda: stack.get("/api/v1/runs/%s" % run)[0] == 404, 10,
                 [stack.agent])
    finally:
        next(stacks, None)


# --- prune.lua against Redis, under the prefix "t:" -----------------------------------

P = "t:"
NOW = 10_000_000
CUTOFF = NOW - 1000
DEF = {"stages": {"build": {"kind": "build"}, "deploy@prod": {"kind": "deploy"}},
       "environments": {"prod": {}}}


@pytest.fixture
def r(rstack):
    with Redis(rstack.redis_port) as conn:
        yield conn
        for k in conn.call("KEYS", P + "*"):
            conn.call("DEL", k)


def add_run(r, run, status, *, created=CUTOFF - 500, finished=CUTOFF - 100, stages=None,
            definition=DEF):
    fields = ["status", status, "created", created, "pipeline", "app",
              "def", json.dumps(definition)]
    if finished is not None:
        fields += ["finished", finished]
    r.call("HSET", P + "run:" + run, *fields)
    for name, st in (stages or {"build": "succeeded", "deploy@prod": "succeeded"}).items():
        r.call("HSET", "%srun:%s:stage:%s" % (P, run, name), "status", st)
        r.call("XADD", "%slog:%s:%s" % (P, run, name), "*", "l", "a line")
    r.call("HSET", "%srun:%s:env:prod" % (P, run), "status", "succeeded")
    r.call("HSET", "%sapproval:%s:prod" % (P, run), "decision", "approve")
    r.call("ZADD", P + "runs", created, run)
    r.call("ZADD", P + "pipeline:app:runs", created, run)


def prune(r, skip=0, batch=100):
    return r.call("EVAL", lua_script("prune"), 0, P, CUTOFF, skip, batch)


def test_a_finished_run_goes_with_its_stages_logs_promotions_approvals_and_delayed_entries(r):
    add_run(r, "old", "failed")
    r.call("SADD", P + "run:old:delayed", "entry-1")
    r.call("ZADD", P + "delayed", NOW, "entry-1")
    r.call("ZADD", P + "delayed", NOW, "entry-of-another")
    assert prune(r) == [1, 0, 1]
    assert r.call("KEYS", P + "*old*") == []
    assert r.call("ZRANGE", P + "runs", 0, -1) == []
    assert r.call("ZRANGE", P + "pipeline:app:runs", 0, -1) == []
    assert r.call("ZRANGE", P + "delayed", 0, -1) == [b"entry-of-another"]


def test_a_run_of_thousands_of_stages_goes_and_does_not_stop_the_pass(r):
    # Its 8000 and more keys are more than Lua's unpack() takes at once:
    # the script failed on it, every pass, and no later run went either.
    stages = {"s%d" % i: {"kind": "build"} for i in range(4100)}
    add_run(r, "huge", "succeeded", definition={"stages": stages, "environments": {"prod": {}}},
            stages={"s%d" % i: "succeeded" for i in range(0, 4100, 1000)})
    add_run(r, "after", "failed", created=CUTOFF - 400)
    assert prune(r) == [2, 0, 2]
    assert r.call("KEYS", P + "*") == []


@pytest.mark.parametrize("status", ["queued", "running", "waiting"])
def test_a_run_still_going_is_kept_whatever_its_age(r, status):
    add_run(r, "going", status, finished=None)
    assert prune(r) == [0, 1, 1]
    assert r.call("EXISTS", P + "run:going", P + "log:going:build") == 2


@pytest.mark.parametrize("stage_status", ["queued", "running", "paused"])
def test_an_ended_run_with_a_stage_still_held_is_kept(r, stage_status):
    # A cancelled run whose worker has not recorded its stage yet.
    add_run(r, "held", "cancelled", stages={"build": stage_status, "deploy@prod": "cancelled"})
    assert prune(r) == [0, 1, 1]
    assert r.call("EXISTS", P + "run:held:stage:build") == 1


def test_a_run_created_before_the_cutoff_but_ended_after_it_is_kept(r):
    add_run(r, "late", "succeeded", finished=CUTOFF + 1)
    assert prune(r) == [0, 1, 1]


@pytest.mark.parametrize("field", ["current", "previous", "lock"])
def test_a_release_an_environment_refers_to_is_kept(r, field):
    add_run(r, "release", "succeeded")
    r.call("HSET", P + "env:app:prod", field, "release")
    assert prune(r) == [0, 1, 1]
    assert r.call("EXISTS", P + "run:release", P + "run:release:env:prod") == 2


def test_a_run_waiting_for_an_environment_is_kept(r):
    add_run(r, "queued-up", "succeeded")
    r.call("ZADD", P + "env:app:prod:waiting", 1, "queued-up")
    assert prune(r) == [0, 1, 1]


def test_runs_created_after_the_cutoff_are_not_looked_at(r):
    add_run(r, "new", "succeeded", created=CUTOFF + 10, finished=CUTOFF + 20)
    assert prune(r) == [0, 0, 0]
    assert r.call("EXISTS", P + "run:new") == 1


def test_an_index_entry_whose_run_is_gone_is_dropped(r):
    r.call("ZADD", P + "runs", CUTOFF - 5, "vanished")
    assert prune(r) == [1, 0, 1]
    assert r.call("ZRANGE", P + "runs", 0, -1) == []


def test_a_definition_that_is_not_json_still_lets_the_run_go(r):
    add_run(r, "odd", "succeeded", definition="not json")
    r.call("HSET", P + "run:odd", "def", "{not json")
    assert prune(r) == [1, 0, 1]
    assert r.call("EXISTS", P + "run:odd") == 0


def test_a_pass_goes_past_the_runs_it_keeps_batch_by_batch(r):
    # The three oldest are kept; batches of two pass over them by skip.
    for i in range(3):
        add_run(r, "keep%d" % i, "running", created=CUTOFF - 900 + i, finished=None)
    for i in range(3):
        add_run(r, "drop%d" % i, "succeeded", created=CUTOFF - 800 + i)
    kept = 0
    results = []
    while True:
        pruned, k, looked = prune(r, skip=kept, batch=2)
        results.append([pruned, k, looked])
        kept += k
        if looked < 2:
            break
    assert results == [[0, 2, 2], [1, 1, 2], [2, 0, 2], [0, 0, 0]]
    assert sorted(m.decode() for m in r.call("ZRANGE", P + "runs", 0, -1)) == [
        "keep0", "keep1", "keep2"]
