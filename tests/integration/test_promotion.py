"""Promotion of runs through environments: the chain development -> staging
-> production, approvals (recorded with who, when and why; rejected;
expired), one deployment at a time per environment, a newer run superseding
an older one that waits, current and previous releases, deny windows that
hold a promotion until they open, and a failing deployment."""

import hashlib
import json
import os
import shutil
import tempfile
import time

import pytest

from conftest import TERMINAL, http_request, pipeline, started_stack, wait_for
from harness import LocalRepo, RedisMonitor, Stack, lua_script
from resp import Redis


def repo_name(name):
    return "sluice-promotion/" + name


def promo_pipelines(repo, root):
    gates = os.path.join(root, "gates")
    os.makedirs(gates, exist_ok=True)
    with open(os.path.join(root, "dev-db"), "w") as f:
        f.write("postgres://dev-secret\n")

    def p(name, environments, vars_=None, stages=None):
        d = pipeline(name, repo_name(name), checkout=repo.url,
                     vars_=dict({"GATES": gates}, **(vars_ or {})),
                     stages=stages or {"build": {"sh": "echo built $SLUICE_SHA_SHORT"}})
        d["environments"] = environments
        return d

    say = {"sh": 'echo "deploying $SLUICE_RUN_ID to $SLUICE_ENV at $DOMAIN"'}
    # Deploys once the test creates $GATES/<run>: the test decides how long
    # a deployment holds its environment.
    held = {"sh": 'while [ ! -e "$GATES/$SLUICE_RUN_ID" ]; do sleep 0.05; done; '
                  'echo "released $SLUICE_RUN_ID"', "timeout": "1m"}
    return {
        "chain.yaml": p("chain", {
            "development": {
                "vars": {"DOMAIN": "dev.example.com"},
                "secrets": {"DB_URL": "../dev-db"},
                "deploy": {"sh": 'echo "deploying $SLUICE_RUN_ID to $SLUICE_ENV at $DOMAIN '
                                 'with $DB_URL"'},
            },
            "staging": {"after": "development", "approval": "required",
                        "vars": {"DOMAIN": "staging.example.com"}, "deploy": say},
            "production": {"after": "staging", "deploy": say},
        }, vars_={"DOMAIN": "example.com"}),
        "expiring.yaml": p("expiring", {
            "staging": {"approval": {"required": True, "expires": "2s"}, "deploy": say},
        }),
        "locked.yaml": p("locked", {"staging": {"deploy": held}}),
        "flaky-deploy.yaml": p("flaky-deploy", {
            "staging": {"deploy": {"sh": '[ "$SLUICE_SHA" != "%s" ] || { echo broken; exit 4; }; '
                                         'echo fine' % repo.second}},
        }),
    }


@pytest.fixture(scope="module")
def promo():
    yield from started_stack("sluice-promo-", promo_pipelines,
                             workers=(("build,test,deploy", 4),),
                             extra_settings={"agent": {"scheduler_interval": "100ms"}})


def push(stack, name, after=None):
    status, body = stack.post_hook("push", stack.push_payload(repo_name(name), after=after))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def wait_env(stack, run_id, env, statuses, timeout=30):
    """The run once its promotion to env is in one of statuses."""
    def reached():
        run = stack.run(run_id)
        return run if run["environments"][env]["status"] in statuses else None
    try:
        return wait_for("run %s: %s in %s" % (run_id, env, statuses), reached, timeout)
    except Exception:
        raise AssertionError(json.dumps(stack.run(run_id), indent=2)) from None


def wait_done(stack, run_id, timeout=30):
    def done():
        run = stack.run(run_id)
        return run if run["status"] in TERMINAL else None
    try:
        return wait_for("run %s to end" % run_id, done, timeout)
    except Exception:
        raise AssertionError(json.dumps(stack.run(run_id), indent=2)) from None


def decide(stack, run_id, env, verb, reason=None, by=None):
    body = {}
    if reason is not None:
        body["reason"] = reason
    if by is not None:
        body["by"] = by
    status, parsed, _ = http_request(
        stack.agent_port, "POST", "/api/v1/runs/%s/environments/%s/%s" % (run_id, env, verb),
        json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, parsed


def release(stack, run_id):
    open(os.path.join(stack.root, "gates", run_id), "w").close()


def env_hash(stack, pipeline_name, env):
    with Redis(stack.redis_port) as r:
        flat = r.call("HGETALL", "sluice:env:%s:%s" % (pipeline_name, env))
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def log_lines(stack, run_id, stage):
    return [entry["line"] for entry in stack.log(run_id, stage)]


def test_a_runs_view_is_read_in_one_script(promo):
    """GET /api/v1/runs/{id} reads the run once for its definition, then the
    run again, its stages and its environments in one read-only script
    (read_hashes.lua): the parts of the view are of one moment, so a script
    running meanwhile (a promotion that moves the environment and the run
    together) never shows in one half of it only. A MONITOR connection sees
    the agent's reads, and the script's own after its EVALSHA."""
    sha = hashlib.sha1(lua_script("read_hashes").encode()).hexdigest()
    run_id = push(promo, "chain")
    wait_env(promo, run_id, "staging", ("waiting_approval",))
    with RedisMonitor(promo.redis_port) as monitor:
        status, view = promo.get("/api/v1/runs/" + run_id)
        assert status == 200 and view["status"] == "waiting", view
        lines = monitor.lines(0.5)
    reads = [i for i, line in enumerate(lines) if run_id in line]
    assert reads, lines
    first, call = reads[0], reads[1]
    assert '"HGETALL"' in lines[first] and lines[first].endswith('"sluice:run:%s"' % run_id)
    assert '"EVALSHA" "%s"' % sha in lines[call], lines[call]
    # The script's reads follow its call, nothing of another client's between,
    # and every later read of the run's keys is one of them.
    inner = []
    for line in lines[call + 1:]:
        if " lua] " not in line:
            break
        inner.append(line)
    assert inner and all('"HGETALL"' in line for line in inner), lines[call:]
    assert all(i <= call + len(inner) for i in reads), lines[call:]
    keys = [line.rsplit(" ", 1)[1] for line in inner]
    for part in ("run:%s\"" % run_id, "run:%s:stage:build" % run_id,
                 "run:%s:env:staging" % run_id, "approval:%s:staging" % run_id):
        assert any(part in k for k in keys), (part, keys)


def test_run_is_promoted_through_the_chain_with_an_approval(promo):
    run_id = push(promo, "chain")
    run = wait_env(promo, run_id, "staging", ("waiting_approval",))
    assert run["status"] == "waiting", run
    assert list(run["environments"]) == ["development", "staging", "production"], run
    assert run["environments"]["development"]["status"] == "deployed", run
    assert run["environments"]["production"]["status"] == "pending", run
    assert run["stages"]["deploy@production"]["status"] == "pending", run
    staging = run["environments"]["staging"]
    assert staging["approval"]["required"] is True and staging["approval"]["decision"] is None

    # The environment's vars and secrets are layered over the pipeline's.
    assert ("deploying %s to development at dev.example.com with [masked]" % run_id
            in log_lines(promo, run_id, "deploy@development"))

    status, body = decide(promo, run_id, "staging", "approve", reason="QA signed off",
                          by="alice")
    assert status == 200, body
    assert body["approval"] == {"decision": "approved", "by": "alice", "reason": "QA signed off"}
    run = wait_done(promo, run_id)
    assert run["status"] == "succeeded", run
    for env in ("development", "staging", "production"):
        assert run["environments"][env]["status"] == "deployed", run
        assert run["stages"]["deploy@" + env]["status"] == "succeeded", run
    approval = run["environments"]["staging"]["approval"]
    assert approval["decision"] == "approved" and approval["by"] == "alice", approval
    assert approval["reason"] == "QA signed off" and approval["at"], approval
    assert ("deploying %s to production at example.com" % run_id
            in log_lines(promo, run_id, "deploy@production"))

    # A decision on a promotion that no longer waits is a conflict.
    status, body = decide(promo, run_id, "staging", "approve", reason="again")
    assert status == 409, body
    status, body = decide(promo, run_id, "nowhere", "approve", reason="x")
    assert status == 404, body
    status, body = decide(promo, run_id, "staging", "approve")
    assert status == 400 and "reason" in body["error"]["message"], body


def test_rejection_stops_the_run_before_production(promo):
    run_id = push(promo, "chain")
    wait_env(promo, run_id, "staging", ("waiting_approval",))
    shown = promo.ctl("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "staging" in shown.stdout and "waiting_approval" in shown.stdout, shown.stdout
    done = promo.ctl("reject", run_id, "staging", "--reason", "release freeze", "--by", "bob")
    assert done.returncode == 0, done.stderr
    run = wait_done(promo, run_id)
    assert run["status"] == "rejected", run
    staging = run["environments"]["staging"]
    assert staging["status"] == "rejected", run
    assert staging["approval"]["decision"] == "rejected", run
    assert staging["approval"]["by"] == "bob", run
    assert staging["approval"]["reason"] == "release freeze", run
    assert run["environments"]["production"]["status"] == "skipped", run
    assert run["stages"]["deploy@production"]["status"] == "skipped", run
    assert run["stages"]["deploy@production"]["started"] is None, run


def test_retry_of_a_rejected_run_says_none_of_its_stages_failed(promo):
    """A rejected run has finished: nothing of it failed to be retried."""
    run_id = push(promo, "chain")
    wait_env(promo, run_id, "staging", ("waiting_approval",))
    assert decide(promo, run_id, "staging", "reject", reason="not now")[0] == 200
    status, body, _ = http_request(promo.agent_port, "POST", "/api/v1/runs/%s/retry" % run_id)
    assert status == 409, body
    assert body["error"]["message"] == (
        "nothing to retry: the run is rejected and none of its stages failed (a deployment "
        "is retried through its environment)"), body


def test_an_approval_not_given_in_time_expires(promo):
    run_id = push(promo, "expiring")
    run = wait_env(promo, run_id, "staging", ("waiting_approval",))
    assert run["environments"]["staging"]["approval"]["expires_at"], run
    assert_expired(wait_done(promo, run_id, timeout=15))


def assert_expired(run):
    """run, whose approval for staging expired: rejected by sluice."""
    assert run["status"] == "rejected", run
    staging = run["environments"]["staging"]
    assert staging["status"] == "expired", run
    assert staging["approval"]["decision"] == "rejected", run
    assert staging["approval"]["by"] == "sluice", run
    assert staging["approval"]["reason"] == "expired", run
    assert run["stages"]["deploy@staging"]["status"] == "skipped", run


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_decision_after_the_approval_expired_is_refused(promo, verb):
    """The expiry's own message comes later (the delayed set, the broker,
    the router): a decision in between is too late all the same. Here
    expires_at is moved into the past while that message is still due
    later."""
    run_id = push(promo, "expiring")
    wait_env(promo, run_id, "staging", ("waiting_approval",))
    with Redis(promo.redis_port) as r:
        r.call("HSET", "sluice:run:%s:env:staging" % run_id, "expires_at",
               int(time.time() * 1000) - 1)
    status, body = decide(promo, run_id, "staging", verb, reason="too late")
    assert status == 409, body
    assert "not waiting for approval (it is expired)" in body["error"]["message"], body
    assert_expired(promo.run(run_id))


def test_one_deployment_at_a_time_and_the_newest_waiting_run_wins(promo):
    first = push(promo, "locked")
    wait_env(promo, first, "staging", ("deploying",))
    older = push(promo, "locked")
    run = wait_env(promo, older, "staging", ("queued",))
    assert run["status"] == "running", run
    assert run["stages"]["deploy@staging"]["status"] == "pending", run
    newer = push(promo, "locked")
    wait_env(promo, newer, "staging", ("queued",))

    run = wait_done(promo, older)
    assert run["status"] == "superseded", run
    assert run["environments"]["staging"]["status"] == "superseded", run
    assert run["stages"]["deploy@staging"]["status"] == "skipped", run
    assert env_hash(promo, "locked", "staging")["lock"] == first

    # The newer run still waits while the first deploys, then deploys.
    time.sleep(0.5)
    assert promo.run(newer)["environments"]["staging"]["status"] == "queued"
    release(promo, first)
    assert wait_done(promo, first)["status"] == "succeeded"
    wait_env(promo, newer, "staging", ("deploying",))
    release(promo, newer)
    run = wait_done(promo, newer)
    assert run["status"] == "succeeded", run
    first_finished = promo.run(first)["environments"]["staging"]["finished"]
    assert first_finished <= run["environments"]["staging"]["started"], run

    released = env_hash(promo, "locked", "staging")
    assert released["current"] == newer and released["previous"] == first, released
    assert "lock" not in released, released


def test_a_failing_deployment_fails_the_run_and_frees_the_environment(promo):
    broken = push(promo, "flaky-deploy", after=promo.repo.second)
    run = wait_done(promo, broken)
    assert run["status"] == "failed", run
    assert run["environments"]["staging"]["status"] == "failed", run
    assert run["stages"]["deploy@staging"]["status"] == "failed", run
    assert run["stages"]["deploy@staging"]["exit_code"] == 4, run
    assert "lock" not in env_hash(promo, "flaky-deploy", "staging")

    fixed = push(promo, "flaky-deploy")
    assert wait_done(promo, fixed)["status"] == "succeeded"
    assert env_hash(promo, "flaky-deploy", "staging")["current"] == fixed


# --- deny windows ----------------------------------------------------------

# Sunday 2024-01-07 03:59:40 UTC: twenty seconds before the deny window
# "Sun 03:00-04:00 UTC" ends — room for the stack to start and the run to
# reach its promotion while the window is still closed, even on a busy
# machine.
FAKE_START_MS = 1704599980000


class ShiftedClockStack(Stack):
    """The agent starts with its wall clock at FAKE_START_MS through
    SLUICE_CLOCK_OFFSET_MS (agent/main.c, lib/clock.h), which moves the
    clock the agent reads the time of day from and nothing else: its
    timers, Redis, the broker and the workers keep the real time. (faketime
    cannot serve here: it shifts the deadlines librdkafka's threads wait
    for, and the agent's Kafka consumer does not start.)"""

    def start_agent(self):
        real = self._spawn

        def spawn(name, argv):
            offset = FAKE_START_MS - int(time.time() * 1000)
            return real(name, ["env", "SLUICE_CLOCK_OFFSET_MS=%d" % offset] + argv)
        self._spawn = spawn
        try:
            super().start_agent()
        finally:
            self._spawn = real


def window_pipelines(repo, root):
    d = pipeline("windowed", repo_name("windowed"), checkout=repo.url,
                 stages={"build": {"sh": "echo built"}})
    d["environments"] = {"production": {
        "windows": {"deny": ["Sun 03:00-04:00 UTC", "Mon-Fri 18:00-08:00 UTC"]},
        "deploy": {"sh": "echo deployed"}}}
    return {"windowed.yaml": d}


@pytest.fixture(scope="module")
def windowed():
    root = tempfile.mkdtemp(prefix="sluice-window-")
    repo = LocalRepo(os.path.join(root, "repo"))
    s = ShiftedClockStack(root, repo, window_pipelines(repo, root),
                          workers=(("build,test,deploy", 2),),
                          extra_settings={"agent": {"scheduler_interval": "100ms"}})
    try:
        s.start()
    except BaseException as e:
        s.stop()
        raise RuntimeError("the stack did not start: %s\n%s" % (e, s.report())) from None
    yield s
    s.stop()
    if not os.environ.get("SLUICE_KEEP_TMP"):
        shutil.rmtree(root, ignore_errors=True)


def test_a_closed_window_holds_the_promotion_until_it_opens(windowed):
    run_id = push(windowed, "windowed")
    run = wait_env(windowed, run_id, "production", ("waiting_window",), timeout=15)
    assert run["status"] == "waiting", run
    window = run["environments"]["production"]["window"]
    assert window["deny"] == ["Sun 03:00-04:00 UTC", "Mon-Fri 18:00-08:00 UTC"], window
    assert window["held_until"] == "2024-01-07T04:00:00.000Z", window
    assert run["stages"]["deploy@production"]["status"] == "pending", run

    run = wait_done(windowed, run_id, timeout=40)
    assert run["status"] == "succeeded", run
    production = run["environments"]["production"]
    assert production["status"] == "deployed", run
    assert production["started"] >= "2024-01-07T04:00:00.000Z", run


# --- the scripts, as the agent runs them -----------------------------------

def write_promotion(r, P, run, created, stage, promotion, definition):
    """A run of pipeline "p" whose deployment to prod is at stage status
    stage and promotion status promotion."""
    r.call("HSET", P + "run:" + run, "status", "running", "def", json.dumps(definition),
           "pipeline", "p", "created", created)
    r.call("HSET", P + "run:%s:stage:deploy@prod" % run, "status", stage, "attempt", 1)
    r.call("HSET", P + "run:%s:env:prod" % run, "status", promotion)


@pytest.mark.parametrize("holds", ["current", "lock", "older current"])
def test_an_older_run_never_replaces_a_newer_release(promo, holds):
    """A late build of an older commit: when its CI ends, a newer run of
    the pipeline is the environment's current release, or deploying there.
    The older run is superseded, not deployed over it. A release older than
    it is replaced as usual."""
    definition = {"name": "p",
                  "stages": {"build": {"kind": "build", "needs": []},
                             "deploy@prod": {"kind": "deploy", "env": "prod", "needs": []}},
                  "environments": {"prod": {"after": None,
                                            "approval": {"required": False, "expires_s": 0}}}}
    P = "t-older-%s:" % holds.replace(" ", "-")
    with Redis(promo.redis_port) as r:
        write_promotion(r, P, "rA", 2, "pending", "none", definition)
        r.call("DEL", P + "run:rA:env:prod")
        r.call("HSET", P + "run:rA:stage:build", "status", "succeeded", "attempt", 1)
        other = "r0" if holds == "older current" else "rB"
        r.call("HSET", P + "run:" + other, "status", "succeeded", "pipeline", "p",
               "created", 1 if other == "r0" else 3)
        r.call("HSET", P + "env:p:prod", "lock" if holds == "lock" else "current", other)
        got = r.call("EVAL", lua_script("route"), 0, P, "rA", "build", 1, 10_000, "{}", "", "",
                     "{}")
        promotion = r.hgetall(P + "run:rA:env:prod")
        if holds == "older current":
            assert got[:2] == [b"routed", b"running"], got
            assert promotion["status"] == "deploying", promotion
            assert r.hgetall(P + "env:p:prod")["lock"] == "rA"
            return
        assert got == [b"routed", b"superseded"], got
        assert promotion["status"] == "superseded", promotion
        assert r.hgetall(P + "run:rA")["status"] == "superseded"
        assert r.hgetall(P + "run:rA:stage:deploy@prod")["status"] == "skipped"
        assert r.hgetall(P + "env:p:prod") == {("lock" if holds == "lock" else "current"): "rB"}


@pytest.mark.parametrize("windows", ["the waiting run's only", "the freeing run's only"])
def test_a_run_waiting_for_the_lock_passes_its_own_deny_windows(promo, windows):
    """The pipeline file changed between two runs, and with it the
    environment's deny windows. The run that frees the lock gives the
    windows of its own definition (opens); the waiting run is held by its
    own, not by those: its gates are checked again at once (promote.lua,
    run by the router for the delayed entry left due now) with opens read
    from its definition."""
    def definition(deny):
        # As config/window.c writes them.
        prod = {"after": None, "approval": {"required": False, "expires_s": 0},
                "windows": [{"spec": "Sat,Sun 00:00-00:00 UTC", "days": ["Sat", "Sun"],
                             "start": 0, "end": 0}] if deny else []}
        return {"name": "p", "stages": {"deploy@prod": {"kind": "deploy", "env": "prod",
                                                          "needs": []}},
                "environments": {"prod": prod}}
    waiting_has = windows == "the waiting run's only"
    P = "t-own-windows-%d:" % waiting_has
    now = 10_000
    closed = json.dumps({"prod": now + 3_600_000})
    with Redis(promo.redis_port) as r:
        write_promotion(r, P, "rA", 1, "succeeded", "deploying", definition(not waiting_has))
        write_promotion(r, P, "rB", 2, "pending", "queued", definition(waiting_has))
        r.call("ZADD", P + "env:p:prod:waiting", 2, "rB")
        r.call("HSET", P + "env:p:prod", "lock", "rA")
        got = r.call("EVAL", lua_script("route"), 0, P, "rA", "deploy@prod", 1, now, "{}",
                     "", "", "{}" if waiting_has else closed)
        assert got == [b"routed", b"succeeded"], got
        # Neither deployed nor held by rA's windows: checked again now.
        promotion = r.hgetall(P + "run:rB:env:prod")
        assert promotion["status"] == "waiting_window", promotion
        assert promotion["window_until"] == str(now), promotion
        assert r.hgetall(P + "run:rB:stage:deploy@prod")["status"] == "pending"
        assert "lock" not in r.hgetall(P + "env:p:prod")
        due = r.call("ZRANGE", P + "delayed", 0, -1, "WITHSCORES")
        assert json.loads(json.loads(due[0])["value"])["data"] == {
            "run": "rB", "env": "prod", "gate": "window"}, due
        assert int(due[1]) == now, due
        got = r.call("EVAL", lua_script("promote"), 0, P, "rB", "prod", "window", now,
                     closed if waiting_has else "{}")
        promotion = r.hgetall(P + "run:rB:env:prod")
        if waiting_has:
            assert got == [b"waiting_window", b"waiting"], got
            assert promotion["window_until"] == str(now + 3_600_000), promotion
            assert "lock" not in r.hgetall(P + "env:p:prod")
        else:
            assert got == [b"deploying", b"running"], got
            assert r.hgetall(P + "env:p:prod")["lock"] == "rB"
            assert r.hgetall(P + "run:rB:stage:deploy@prod")["status"] == "queued"


@pytest.mark.parametrize("gate", ["window", "approval"])
def test_a_gate_message_released_early_is_due_again(promo, gate):
    """Agents' clocks differ: the delayed entry that should bring a run
    back when its window opens or its approval expires may be released by
    an agent whose clock is ahead, and routed by one that still sees the
    gate closed. The entry is then left due again, not used up."""
    definition = {"name": "p", "stages": {"deploy@prod": {"kind": "deploy", "env": "prod",
                                                          "needs": []}},
                  "environments": {"prod": {"after": None, "approval": {
                      "required": gate == "approval", "expires_s": 60}}}}
    P = "t-early-%s:" % gate
    now = 10_000
    due = now + 10
    with Redis(promo.redis_port) as r:
        write_promotion(r, P, "rA", 1, "pending", "waiting_" + gate, definition)
        r.call("HSET", P + "run:rA", "status", "waiting")
        r.call("HSET", P + "run:rA:env:prod",
               "window_until" if gate == "window" else "expires_at", due)
        got = r.call("EVAL", lua_script("promote"), 0, P, "rA", "prod", gate, now,
                     json.dumps({"prod": due} if gate == "window" else {}))
        assert got[1] == b"waiting", got
        assert r.hgetall(P + "run:rA:env:prod")["status"] == "waiting_" + gate
        entries = r.call("ZRANGE", P + "delayed", 0, -1, "WITHSCORES")
        assert len(entries) == 2 and int(entries[1]) == due, entries
        assert json.loads(json.loads(entries[0])["value"])["data"] == {
            "run": "rA", "env": "prod", "gate": gate}, entries
        # Due here: the gate is looked at for real.
        got = r.call("EVAL", lua_script("promote"), 0, P, "rA", "prod", gate, due, "{}")
        assert got == ([b"deploying", b"running"] if gate == "window"
                       else [b"expired", b"rejected"]), got


@pytest.mark.parametrize("freed_by", ["deployed", "cancelled"])
def test_a_run_waiting_for_the_lock_is_held_by_a_window_closed_meanwhile(promo, freed_by):
    """The run queued for the environment's lock passed the deny windows
    when it was offered; one that closed since holds it when the lock is
    freed, by a deployment that ends or by its run's cancellation, until
    it opens."""
    definition = {"name": "p", "stages": {"deploy@prod": {"kind": "deploy", "env": "prod",
                                                          "needs": []}},
                  "environments": {"prod": {"after": None,
                                            "approval": {"required": False, "expires_s": 0}}}}
    P = "t-window-%s:" % freed_by
    now = 10_000
    opens = json.dumps({"prod": now + 3_600_000})
    with Redis(promo.redis_port) as r:
        write_promotion(r, P, "rA", 1, "succeeded" if freed_by == "deployed" else "queued",
                        "deploying", definition)
        write_promotion(r, P, "rB", 2, "pending", "queued", definition)
        r.call("ZADD", P + "env:p:prod:waiting", 2, "rB")
        r.call("HSET", P + "env:p:prod", "lock", "rA")
        if freed_by == "deployed":
            got = r.call("EVAL", lua_script("route"), 0, P, "rA", "deploy@prod", 1, now, "{}",
                         "", "", opens)
            assert got == [b"routed", b"succeeded"], got
        else:
            got = r.call("EVAL", lua_script("cancel"), 0, P, "rA", now, opens)
            assert got == [b"cancelled", b"0"], got
        promotion = r.hgetall(P + "run:rB:env:prod")
        assert promotion["status"] == "waiting_window", promotion
        assert promotion["window_until"] == str(now + 3_600_000), promotion
        assert r.hgetall(P + "run:rB")["status"] == "waiting"
        assert r.hgetall(P + "run:rB:stage:deploy@prod")["status"] == "pending"
        assert "lock" not in r.hgetall(P + "env:p:prod")
        due = r.call("ZRANGE", P + "delayed", 0, -1, "WITHSCORES")
        assert json.loads(json.loads(due[0])["value"])["data"] == {
            "run": "rB", "env": "prod", "gate": "window"}, due
        assert int(due[1]) == now + 3_600_000, due
