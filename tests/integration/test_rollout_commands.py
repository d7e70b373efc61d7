"""The operator's commands on deployments with a strategy: promote (and
promote --full), abort, retry and rollback through the API and sluicectl,
with their refusals, the role they need, the job published again for a
parked rollout, and the strategy view and actions of GET /api/v1/runs/{id}.

No worker takes deploy jobs here: each test records a run in Redis in the
state a worker would leave it (a rollout paused, running, aborted, a
release current with a previous one), sends the command, and reads what
changed in Redis, on sluice.jobs.deploy and on sluice.events. The scripts
are also run directly with EVAL, as the agent runs them."""

import hashlib
import json
import os
import secrets
import time

import pytest

from conftest import http_request, pipeline, started_stack, wait_for
from harness import lua_script, outbox_messages
from kafkawire import envelopes
from resp import Redis

P = "sluice:"
REPO = "sluice-it/rollouts"
TOKENS = {name: "slc_" + secrets.token_hex(32) for name in ("reader", "approver", "ops")}
ROLES = {"reader": "read", "approver": "approve", "ops": "admin"}
IMAGE = "registry.local/shop@sha256:" + "b" * 64
OLD_IMAGE = "registry.local/shop@sha256:" + "a" * 64

# A deployment's "rollout" as the configuration normalizes it.
ROLLOUT = {
    "strategy": {"type": "Canary", "steps": [
        {"set_weight": 20}, {"pause_ms": 600000}, {"pause": "manual"},
        {"analysis": {"count": 1, "interval_ms": 0, "success_condition": "result[0] < 0.01",
                      "provider": {"prometheus": {"address": "http://127.0.0.1:1",
                                                  "query": "errors"}}}},
        {"set_weight": 100}]},
    "image": "${push.image}",
    "provider": {"type": "exec", "actions": {"apply": {"run": ["./deploy.sh"]}}},
    "hooks": {"pre": [], "post": []},
    "checks": {
        "pre": [{"name": "load balancer healthy", "kind": "http",
                 "url": "http://127.0.0.1:1/healthz", "status": 200, "timeout_ms": 30000},
                {"name": "quotas", "kind": "command", "run": ["./quotas.sh"],
                 "timeout_ms": 30000}],
        "post": [{"name": "certificate valid", "kind": "tls", "host": "127.0.0.1",
                  "port": 8443, "min_days": 14, "timeout_ms": 30000}]},
}


def state(phase="Paused", step=1, pause="timed", paused_until=None, weights=None):
    """The rollout's state as a worker saves it."""
    s = {
        "strategy": "Canary", "phase": phase, "step": step, "image": IMAGE,
        "steps": [{"name": "setWeight 20", "status": "done"},
                  {"name": "pause 10m", "status": "active"},
                  {"name": "pause", "status": "pending"},
                  {"name": "analysis", "status": "pending"},
                  {"name": "setWeight 100", "status": "pending"}],
        "weights": weights or {"stable": 80, "canary": 20},
        "analyses": [{"name": "background", "verdict": "Successful", "message": "1 of 1 passed",
                      "success_condition": "result[0] < 0.01", "successful": 1, "failed": 0,
                      "inconclusive": 0, "errors": 0,
                      "measurements": [
                          {"n": 1, "at": 1, "ms": 3, "values": [0.02], "verdict": "Failed",
                           "condition": "result[0] < 0.01", "message": "fails"},
                          {"n": 2, "at": 2, "ms": 3, "values": [0.004],
                           "verdict": "Successful", "condition": "result[0] < 0.01",
                           "message": "result[0] < 0.01 holds for 0.004"}]},
                     {"name": "step 3", "success_condition": "result[0] < 0.05",
                      "measurements": []}],
        "checks": {"pre": [{"name": "load balancer healthy", "kind": "http",
                            "status": "passed", "message": "200", "ms": 4, "at": 1},
                           {"name": "quotas", "kind": "command", "status": "failed",
                            "message": "exit 1", "ms": 9, "at": 1}],
                   "post": []},
    }
    if pause:
        s["pause"] = pause
    if paused_until:
        s["paused_until"] = paused_until
    return s


def pipelines(repo, root):
    with open(os.path.join(root, "tokens"), "w") as f:
        for name, token in TOKENS.items():
            f.write("%s %s %s\n" % (name, ROLES[name], hashlib.sha256(token.encode()).hexdigest()))
    d = pipeline("shop", REPO, checkout=repo.url, stages={"build": {"sh": "true"}})
    d["environments"] = {
        "staging": {"deploy": {"sh": "true"}},
        "production": {"after": "staging", "deploy": {"sh": "true"}},
    }
    return {"shop.yaml": d}


@pytest.fixture(scope="module")
def rstack():
    # No worker: the deploy jobs the commands publish stay on their topic.
    yield from started_stack("sluice-rollout-cmd-", pipelines, workers=(),
                             extra_settings={"api": {"tokens_file": "tokens",
                                                     "public_reads": False}})


@pytest.fixture(scope="module")
def base_def(rstack):
    status, body, _ = http_request(rstack.agent_port, "GET", "/api/v1/pipelines/shop", None,
                                   {"Authorization": "Bearer " + TOKENS["reader"]})
    assert status == 200, body
    return body["definition"]


def now_ms():
    return int(time.time() * 1000)


class Run:
    """A run of a pipeline of its own (so that environments' locks and
    releases are the test's alone), recorded in Redis as the agent and a
    worker would have left it."""

    def __init__(self, stack, base_def, status="running", strategies=("staging", "production"),
                 created=None):
        self.stack = stack
        self.pipeline = "shop-" + secrets.token_hex(3)
        self.id = "r_" + secrets.token_hex(6)
        self.created = created or now_ms()
        d = json.loads(json.dumps(base_def))
        d["name"] = self.pipeline
        for env in strategies:
            d["stages"]["deploy@" + env]["rollout"] = ROLLOUT
        self.definition = d
        with self.redis() as r:
            r.call("HSET", self.key(), "status", status, "def", json.dumps(d),
                   "pipeline", self.pipeline, "repository", REPO, "event", "push",
                   "ref", "refs/heads/main", "sha", "c" * 40, "created", self.created)
            r.call("ZADD", P + "runs", self.created, self.id)
            r.call("HSET", self.key(":stage:build"), "status", "succeeded", "attempt", 1)
            for env in ("staging", "production"):
                r.call("HSET", self.key(":stage:deploy@" + env), "status", "pending",
                       "attempt", 1)

    def redis(self):
        return Redis(self.stack.redis_port)

    def key(self, suffix=""):
        return P + "run:" + self.id + suffix

    def env_key(self, env):
        return P + "env:%s:%s" % (self.pipeline, env)

    def sibling(self, **kw):
        """Another run of the same pipeline."""
        other = Run(self.stack, self.definition, **kw)
        with other.redis() as r:
            d = dict(other.definition, name=self.pipeline)
            r.call("HSET", other.key(), "pipeline", self.pipeline, "def", json.dumps(d))
        other.pipeline = self.pipeline
        return other

    def set_stage(self, env, **fields):
        with self.redis() as r:
            for k, v in fields.items():
                if v is None:
                    r.call("HDEL", self.key(":stage:deploy@" + env), k)
                else:
                    r.call("HSET", self.key(":stage:deploy@" + env), k,
                           json.dumps(v) if isinstance(v, dict) else v)

    def set_promotion(self, env, **fields):
        with self.redis() as r:
            for k, v in fields.items():
                r.call("HSET", self.key(":env:" + env), k, v)

    def set_env(self, env, **fields):
        with self.redis() as r:
            for k, v in fields.items():
                r.call("HSET", self.env_key(env), k, v)

    def stage(self, env):
        with self.redis() as r:
            return r.hgetall(self.key(":stage:deploy@" + env))

    def promotion(self, env):
        with self.redis() as r:
            return r.hgetall(self.key(":env:" + env))

    def env(self, env):
        with self.redis() as r:
            return r.hgetall(self.env_key(env))

    def run_hash(self):
        with self.redis() as r:
            return r.hgetall(self.key())

    def deployed_to_staging(self):
        self.set_stage("staging", status="succeeded", started=now_ms() - 5000,
                       finished=now_ms() - 1000)
        self.set_promotion("staging", status="deployed", offered=now_ms() - 6000,
                           started=now_ms() - 5000, finished=now_ms() - 1000)

    def paused_in_production(self, attempt=2, due=None, entry=True):
        """The production rollout parked at a timed pause, as park.lua leaves it."""
        self.deployed_to_staging()
        due = due or now_ms() + 600000
        self.set_promotion("production", status="deploying", offered=now_ms() - 900,
                           started=now_ms() - 800)
        self.set_env("production", lock=self.id)
        self.set_stage("production", status="paused", attempt=attempt,
                       started=now_ms() - 800, rollout=state(paused_until=due))
        if entry:
            member = json.dumps({"topic": "sluice.jobs.deploy", "value": "{}", "run": self.id,
                                 "stage": "deploy@production", "attempt": attempt})
            with self.redis() as r:
                r.call("ZADD", P + "delayed", due, member)
                r.call("SADD", self.key(":delayed"), member)
            self.set_stage("production", resume_entry=member)
            return member
        return None


def call(stack, verb, run_id, env, body=None, token="ops"):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + TOKENS[token]
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    status, parsed, _ = http_request(
        stack.agent_port, "POST", "/api/v1/runs/%s/environments/%s/%s" % (run_id, env, verb),
        data, headers)
    return status, parsed


def get_run(stack, run_id):
    status, body, _ = http_request(stack.agent_port, "GET", "/api/v1/runs/" + run_id, None,
                                   {"Authorization": "Bearer " + TOKENS["reader"]})
    assert status == 200, body
    return body


def messages(stack, topic, run_id):
    """The envelopes of topic (every partition) about run_id, oldest first."""
    return [e for e in envelopes(stack.brokers, topic) if (e.get("data") or {}).get("run") == run_id]


def wait_messages(stack, topic, run_id, count=1, kind=None):
    def enough():
        found = [m for m in messages(stack, topic, run_id) if not kind or m["type"] == kind]
        return found if len(found) >= count else None
    return wait_for("%d %s message(s) about %s on %s" % (count, kind or "", run_id, topic),
                    enough, 15)


# --- promote ----------------------------------------------------------------------

def test_promote_resumes_a_paused_rollout_with_the_same_attempt(rstack, base_def):
    run = Run(rstack, base_def)
    member = run.paused_in_production(attempt=2)

    status, body = call(rstack, "promote", run.id, "production",
                        {"reason": "canary looks fine", "by": "ignored with a token"})
    assert status == 202, body
    assert body["run"] == run.id and body["env"] == "production", body
    assert body["command"] == "promote" and body["resumed"] is True, body
    assert body["by"] == "ops" and body["reason"] == "canary looks fine", body
    assert body["stage"] == {"name": "deploy@production", "status": "queued", "attempt": 2}, body
    assert body["status"] == "deploying", body

    stage = run.stage("production")
    assert stage["status"] == "queued" and stage["attempt"] == "2", stage
    assert stage["command"] == "promote" and stage["command_by"] == "ops", stage
    assert abs(int(stage["command_at"]) - now_ms()) < 10000, stage
    assert "resume_entry" not in stage, stage
    with run.redis() as r:
        # The timed resumption is gone: the pause must not end a second time.
        assert r.call("ZSCORE", P + "delayed", member) is None
        assert r.call("SISMEMBER", run.key(":delayed"), member) == 0
        assert r.call("ZSCORE", P + "queued", run.id + "/deploy@production") is not None

    # The job is published again with the same attempt, for claim.lua.
    jobs = wait_messages(rstack, "sluice.jobs.deploy", run.id)
    assert len(jobs) == 1, jobs
    assert jobs[0]["type"] == "dev.sluice.job.requested", jobs
    assert jobs[0]["data"] == {"run": run.id, "stage": "deploy@production", "attempt": 2,
                               "kind": "deploy"}, jobs
    assert jobs[0]["subject"] == "runs/%s/stages/deploy@production/attempts/2" % run.id
    event = wait_messages(rstack, "sluice.events", run.id, kind="dev.sluice.deploy.command")[0]
    assert event["data"]["env"] == "production" and event["data"]["command"] == "promote"
    assert event["data"]["by"] == "ops" and event["data"]["reason"] == "canary looks fine"
    assert event["data"]["attempt"] == 2, event

    # Queued again, it is no longer paused: a second promote is refused.
    status, body = call(rstack, "promote", run.id, "production")
    assert status == 409 and body["error"]["code"] == "not_paused", body


def test_promote_of_a_manual_pause_without_resume_entry(rstack, base_def):
    run = Run(rstack, base_def)
    run.paused_in_production(attempt=1, entry=False)
    status, body = call(rstack, "promote", run.id, "production", {})
    assert status == 202 and body["resumed"] is True, body
    assert body["reason"] is None, body
    stage = run.stage("production")
    assert stage["status"] == "queued" and stage["command"] == "promote", stage
    jobs = wait_messages(rstack, "sluice.jobs.deploy", run.id)
    assert jobs[0]["data"]["attempt"] == 1, jobs


def test_promote_of_a_running_rollout_is_refused_but_promote_full_is_sent(rstack, base_def):
    run = Run(rstack, base_def)
    run.deployed_to_staging()
    run.set_promotion("production", status="deploying")
    run.set_stage("production", status="running", attempt=1, worker="w:1:x",
                  rollout=state(phase="Progressing", step=0, pause=None))

    status, body = call(rstack, "promote", run.id, "production", {"reason": "go"})
    assert status == 409, body
    assert body["error"]["code"] == "not_paused", body
    assert "Progressing" in body["error"]["message"], body
    assert "command" not in run.stage("production")

    status, body = call(rstack, "promote", run.id, "production", {"full": True})
    assert status == 202, body
    assert body["command"] == "promote_full" and body["resumed"] is False, body
    assert body["stage"]["status"] == "running", body
    stage = run.stage("production")
    # The worker running it takes the command: nothing is queued or published.
    assert stage["status"] == "running" and stage["command"] == "promote_full", stage
    assert stage["worker"] == "w:1:x", stage
    wait_messages(rstack, "sluice.events", run.id, kind="dev.sluice.deploy.command")
    assert messages(rstack, "sluice.jobs.deploy", run.id) == []


def test_promote_takes_a_pause_held_by_its_worker(rstack, base_def):
    """A pause with a background analysis keeps its worker: still a pause."""
    run = Run(rstack, base_def)
    run.set_promotion("production", status="deploying")
    run.set_stage("production", status="running", attempt=1, worker="w:1:x",
                  rollout=state(phase="Paused", pause="manual"))
    status, body = call(rstack, "promote", run.id, "production")
    assert status == 202 and body["resumed"] is False, body
    assert run.stage("production")["command"] == "promote"


def test_abort_is_sent_while_deploying_and_a_pending_abort_is_not_replaced(rstack, base_def):
    run = Run(rstack, base_def)
    run.set_promotion("production", status="deploying")
    run.set_stage("production", status="queued", attempt=3)
    status, body = call(rstack, "abort", run.id, "production", {"reason": "error rate"})
    assert status == 202, body
    assert body["command"] == "abort" and body["resumed"] is False, body
    assert body["stage"] == {"name": "deploy@production", "status": "queued", "attempt": 3}
    assert run.stage("production")["command"] == "abort"

    status, body = call(rstack, "promote", run.id, "production", {"full": True})
    assert status == 409 and body["error"]["code"] == "aborting", body
    assert run.stage("production")["command"] == "abort"
    # Aborting again is fine.
    status, body = call(rstack, "abort", run.id, "production")
    assert status == 202, body


def test_abort_of_a_parked_rollout_queues_it_for_a_worker(rstack, base_def):
    run = Run(rstack, base_def)
    member = run.paused_in_production(attempt=4)
    status, body = call(rstack, "abort", run.id, "production")
    assert status == 202 and body["resumed"] is True, body
    assert body["reason"] is None, body
    stage = run.stage("production")
    assert stage["status"] == "queued" and stage["command"] == "abort", stage
    with run.redis() as r:
        assert r.call("ZSCORE", P + "delayed", member) is None
    jobs = wait_messages(rstack, "sluice.jobs.deploy", run.id)
    assert jobs[0]["data"]["attempt"] == 4, jobs


def test_commands_are_refused_where_they_do_not_apply(rstack, base_def):
    run = Run(rstack, base_def, strategies=("production",))
    run.deployed_to_staging()
    # staging deploys without a strategy.
    status, body = call(rstack, "abort", run.id, "staging")
    assert status == 409 and body["error"]["code"] == "no_strategy", body
    # production has not started.
    status, body = call(rstack, "abort", run.id, "production")
    assert status == 409 and body["error"]["code"] == "not_deploying", body
    assert "pending" in body["error"]["message"], body
    # A finished run's parked rollout takes no command.
    other = Run(rstack, base_def, status="cancelled")
    other.set_stage("production", status="paused")
    status, body = call(rstack, "promote", other.id, "production")
    assert status == 409 and body["error"]["code"] == "not_deploying", body
    assert "cancelled" in body["error"]["message"], body
    # Unknown run and environment.
    status, body = call(rstack, "promote", "r_nosuchrun", "production")
    assert status == 404 and body["error"]["code"] == "not_found", body
    status, body = call(rstack, "promote", run.id, "qa")
    assert status == 404 and "qa" in body["error"]["message"], body
    # Malformed bodies.
    for bad in (b"[1]", b"{", {"full": "yes"}, {"reason": 7}):
        status, body = call(rstack, "promote", run.id, "production", bad)
        assert status == 400 and body["error"]["code"] == "bad_request", (bad, body)
    status, body = call(rstack, "abort", run.id, "production", {"full": True})
    assert status == 400, body
    assert run.stage("production") == {"status": "pending", "attempt": "1"}


@pytest.mark.parametrize("verb", ["promote", "abort"])
def test_a_command_on_a_deployment_waiting_for_its_approval_says_so(rstack, base_def, verb):
    """The run waits (status waiting) for production's approval: its
    deployment there has not begun, it is not over."""
    run = Run(rstack, base_def, status="waiting", strategies=("production",))
    run.deployed_to_staging()
    run.set_promotion("production", status="waiting_approval", offered=now_ms())
    status, body = call(rstack, verb, run.id, "production")
    assert status == 409 and body["error"]["code"] == "not_deploying", body
    assert body["error"]["message"] == (
        "the deployment of run %s to production is not in progress (it is pending)" % run.id)


def test_retrying_a_deployment_as_a_stage_says_to_retry_its_environment(rstack, base_def):
    """POST .../stages/deploy@production/retry names a stage that exists:
    the answer is the documented 409, not a 404."""
    run = Run(rstack, base_def, status="failed")
    run.deployed_to_staging()
    run.set_stage("production", status="failed", attempt=1, started=now_ms() - 5000,
                  finished=now_ms() - 1000)
    for stage in ("deploy@production", "deploy%40production"):
        status, body, _ = http_request(
            rstack.agent_port, "POST", "/api/v1/runs/%s/stages/%s/retry" % (run.id, stage), b"",
            {"Authorization": "Bearer " + TOKENS["ops"]})
        assert status == 409, (stage, status, body)
        assert "retry its environment production" in body["error"]["message"], body
    assert run.stage("production")["status"] == "failed"


def follow_to_the_end(stack, run, env, seconds=10):
    """What sluicectl logs -f prints of run's deployment to env, waiting at
    most seconds for it to return."""
    result = stack.ctl("logs", run.id, "deploy@" + env, "-f", timeout=seconds,
                       env={"SLUICE_TOKEN": TOKENS["reader"]})
    assert result.returncode == 0, result
    return result.stdout


@pytest.mark.parametrize("status", ["aborted", "rolled_back", "lost"])
def test_the_log_of_a_deployment_that_ended_so_ends(rstack, base_def, status):
    """A deployment also ends aborted, rolled back or lost (as route.lua
    has it): its followed log ends, and sluicectl logs -f returns."""
    run = Run(rstack, base_def, status="aborted" if status == "aborted" else "failed")
    run.deployed_to_staging()
    run.set_stage("production", status=status, attempt=2, started=now_ms() - 5000,
                  finished=now_ms() - 1000)
    with run.redis() as r:
        r.call("XADD", P + "log:%s:deploy@production" % run.id, "*", "t", str(now_ms()),
               "s", "stdout", "l", "the rollout's last")
    assert "the rollout's last" in follow_to_the_end(rstack, run, "production")


def test_commands_need_an_admin_token_and_are_audited(rstack, base_def):
    run = Run(rstack, base_def)
    run.paused_in_production()
    for token in ("reader", "approver"):
        for verb in ("promote", "abort", "retry", "rollback"):
            status, body = call(rstack, verb, run.id, "production", {}, token=token)
            assert status == 403, (verb, token, body)
    status, body = call(rstack, "promote", run.id, "production", {}, token=None)
    assert status == 401, body
    assert run.stage("production")["status"] == "paused"
    assert "command" not in run.stage("production")

    status, _ = call(rstack, "abort", run.id, "production", {})
    assert status == 202
    calls = wait_messages(rstack, "sluice.events", run.id, kind="dev.sluice.api.call")
    assert [(c["data"]["token"], c["data"]["method"], c["data"]["path"], c["data"]["status"])
            for c in calls] == [
        ("ops", "POST", "/api/v1/runs/%s/environments/production/abort" % run.id, 202)], calls


# --- retry -------------------------------------------------------------------------

def aborted_in_production(run, attempt=2):
    run.deployed_to_staging()
    run.set_promotion("production", status="aborted", started=now_ms() - 5000,
                      finished=now_ms() - 100)
    run.set_stage("production", status="aborted", attempt=attempt, started=now_ms() - 5000,
                  finished=now_ms() - 100, routed=1, command_by="ops",
                  rollout=state(phase="Aborted", pause=None, weights={"stable": 100,
                                                                      "canary": 0}))
    with run.redis() as r:
        r.call("HSET", run.key(), "status", "aborted", "finished", now_ms() - 100)


def test_retry_deploys_an_aborted_deployment_again_from_the_start(rstack, base_def):
    run = Run(rstack, base_def)
    aborted_in_production(run, attempt=2)
    # A third environment after production, skipped when it failed, waits again.
    status, body = call(rstack, "retry", run.id, "production", {"reason": "fixed the config"})
    assert status == 202, body
    assert body["command"] == "retry" and body["status"] == "deploying", body
    assert body["stage"] == {"name": "deploy@production", "status": "queued", "attempt": 3}

    stage = run.stage("production")
    assert stage["status"] == "queued" and stage["attempt"] == "3", stage
    for gone in ("rollout", "command_by", "routed", "finished", "started"):
        assert gone not in stage, (gone, stage)
    assert run.promotion("production")["status"] == "deploying"
    assert "finished" not in run.promotion("production")
    assert run.run_hash()["status"] == "running"
    assert run.env("production")["lock"] == run.id
    jobs = wait_messages(rstack, "sluice.jobs.deploy", run.id)
    assert jobs[0]["data"]["attempt"] == 3, jobs
    events = wait_messages(rstack, "sluice.events", run.id, kind="dev.sluice.deploy.command")
    assert events[0]["data"]["command"] == "retry", events
    assert events[0]["data"]["reason"] == "fixed the config", events

    # Deploying again, it is no longer one to retry.
    status, body = call(rstack, "retry", run.id, "production")
    assert status == 409 and body["error"]["code"] == "not_failed", body


def test_retry_waits_for_no_lock_and_never_replaces_a_newer_release(rstack, base_def):
    run = Run(rstack, base_def, created=now_ms() - 60000)
    aborted_in_production(run)
    holder = run.sibling()
    run.set_env("production", lock=holder.id)
    status, body = call(rstack, "retry", run.id, "production")
    assert status == 409 and body["error"]["code"] == "locked", body
    assert holder.id in body["error"]["message"], body

    with run.redis() as r:
        r.call("HDEL", run.env_key("production"), "lock")
    run.set_env("production", current=holder.id)
    status, body = call(rstack, "retry", run.id, "production")
    assert status == 409 and body["error"]["code"] == "superseded", body
    assert holder.id in body["error"]["message"], body
    assert run.stage("production")["status"] == "aborted"


def test_retry_is_refused_while_a_deny_window_of_the_environment_holds(rstack, base_def):
    """A retry deploys: a deny window of the environment (from the run's own
    definition, as for its first deployment) refuses it with when the window
    ends, and changes nothing; outside the window the same retry goes."""
    now = time.gmtime()
    minute = now.tm_hour * 60 + now.tm_min
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    # From an hour ago to an hour on, every day (past midnight if need be).
    start, end = (minute - 60) % 1440, (minute + 60) % 1440 or 1440
    window = {"spec": "daily", "days": days, "start": start, "end": end}
    run = Run(rstack, base_def)
    run.definition["environments"]["production"]["windows"] = [window]
    with run.redis() as r:
        r.call("HSET", run.key(), "def", json.dumps(run.definition))
    aborted_in_production(run, attempt=2)

    status, body = call(rstack, "retry", run.id, "production")
    assert status == 409 and body["error"]["code"] == "deny_window", body
    ends = "T%02d:%02d:00" % divmod((minute + 60) % 1440, 60)
    assert ends in body["error"]["message"], body
    assert run.stage("production")["status"] == "aborted"
    assert run.stage("production")["attempt"] == "2"
    assert run.run_hash()["status"] == "aborted"

    # The window, moved to the other side of the day, no longer holds.
    window.update(start=(minute + 120) % 1440, end=(minute + 180) % 1440 or 1440)
    with run.redis() as r:
        r.call("HSET", run.key(), "def", json.dumps(run.definition))
    status, body = call(rstack, "retry", run.id, "production")
    assert status == 202, body
    assert run.stage("production")["attempt"] == "3"


def test_retry_of_a_deployment_without_strategy_and_of_later_environments(rstack, base_def):
    run = Run(rstack, base_def, strategies=())
    run.set_promotion("staging", status="failed", finished=now_ms())
    run.set_stage("staging", status="failed", attempt=1, exit_code=3)
    run.set_stage("production", status="skipped", finished=now_ms())
    with run.redis() as r:
        r.call("HSET", run.key(), "status", "failed")
    status, body = call(rstack, "retry", run.id, "staging")
    assert status == 202, body
    assert run.stage("staging")["attempt"] == "2"
    # production, skipped because staging failed, waits for it again.
    assert run.stage("production") == {"status": "pending", "attempt": "1"}


# --- rollback ----------------------------------------------------------------------

def current_in_production(run, previous):
    run.deployed_to_staging()
    run.set_promotion("production", status="deployed", started=now_ms() - 4000,
                      finished=now_ms() - 2000)
    run.set_stage("production", status="succeeded", attempt=1, routed=1,
                  rollout=state(phase="Healthy", step=4, pause=None,
                                weights={"stable": 100}))
    run.set_env("production", current=run.id, current_image=IMAGE, previous=previous.id,
                previous_image=OLD_IMAGE)
    with run.redis() as r:
        r.call("HSET", run.key(), "status", "succeeded", "finished", now_ms() - 2000)


def test_rollback_queues_the_previous_image_for_the_current_release(rstack, base_def):
    run = Run(rstack, base_def)
    previous = run.sibling(status="succeeded")
    current_in_production(run, previous)

    status, body = call(rstack, "rollback", run.id, "production", {"reason": "bad release"})
    assert status == 202, body
    assert body["command"] == "rollback" and body["status"] == "rolling_back", body
    assert body["rollback"] == {"run": previous.id, "image": OLD_IMAGE}, body
    assert body["stage"] == {"name": "deploy@production", "status": "queued", "attempt": 2}

    stage = run.stage("production")
    assert stage["mode"] == "rollback" and stage["rollback_run"] == previous.id, stage
    assert stage["rollback_image"] == OLD_IMAGE and stage["attempt"] == "2", stage
    assert stage["rollback_run_status"] == "succeeded", stage
    assert stage["status"] == "queued" and "rollout" not in stage, stage
    assert run.promotion("production")["status"] == "rolling_back"
    assert run.run_hash()["status"] == "running"
    assert run.env("production")["lock"] == run.id
    jobs = wait_messages(rstack, "sluice.jobs.deploy", run.id)
    assert jobs[0]["data"]["attempt"] == 2, jobs
    event = wait_messages(rstack, "sluice.events", run.id, kind="dev.sluice.deploy.command")[0]
    assert event["data"]["command"] == "rollback" and event["data"]["to_run"] == previous.id

    # While it rolls back, nothing else is accepted on it.
    status, body = call(rstack, "rollback", run.id, "production")
    assert status == 409 and body["error"]["code"] == "busy", body
    status, body = call(rstack, "abort", run.id, "production")
    assert status == 409 and body["error"]["code"] == "not_deploying", body
    status, body = call(rstack, "retry", run.id, "production")
    assert status == 409 and body["error"]["code"] == "not_failed", body


def test_rollback_is_refused_unless_the_run_is_current_with_a_previous(rstack, base_def):
    run = Run(rstack, base_def)
    previous = run.sibling(status="succeeded")
    current_in_production(run, previous)

    status, body = call(rstack, "rollback", previous.id, "production")
    assert status == 409 and body["error"]["code"] == "not_current", body
    assert run.id in body["error"]["message"], body

    run.set_env("production", lock=previous.id)
    status, body = call(rstack, "rollback", run.id, "production")
    assert status == 409 and body["error"]["code"] == "locked", body
    with run.redis() as r:
        r.call("HDEL", run.env_key("production"), "lock")

    with run.redis() as r:
        r.call("HSET", run.key(), "status", "waiting")
    status, body = call(rstack, "rollback", run.id, "production")
    assert status == 409 and body["error"]["code"] == "run_active", body
    with run.redis() as r:
        r.call("HSET", run.key(), "status", "succeeded")
        r.call("HDEL", run.env_key("production"), "previous_image")
    status, body = call(rstack, "rollback", run.id, "production")
    assert status == 409 and body["error"]["code"] == "no_previous", body

    status, body = call(rstack, "rollback", run.id, "staging")
    assert status == 409 and body["error"]["code"] == "not_current", body
    assert run.stage("production")["status"] == "succeeded"
    assert "mode" not in run.stage("production")


# --- the view ----------------------------------------------------------------------

def test_run_shows_the_strategy_and_the_verbs_that_apply(rstack, base_def):
    run = Run(rstack, base_def)
    due = now_ms() + 600000
    run.paused_in_production(attempt=2, due=due)
    envs = get_run(rstack, run.id)["environments"]

    assert envs["staging"]["actions"] == [], envs["staging"]
    assert envs["staging"]["strategy"]["status"] is None, envs["staging"]
    prod = envs["production"]
    assert prod["actions"] == ["promote", "abort"], prod
    st = prod["strategy"]
    assert st["name"] == "Canary" and st["step"] == 2 and st["steps"] == 5, st
    assert st["status"] == "Paused" and st["pause"] == "timed", st
    assert st["weights"] == {"stable": 80, "canary": 20}, st
    assert st["paused_until"].endswith("Z") and st["paused_until"][:4] == time.strftime(
        "%Y", time.gmtime(due / 1000)), st
    assert st["analysis"] == [
        {"metric": "background", "value": 0.004, "threshold": "result[0] < 0.01",
         "status": "passed", "verdict": "Successful", "pass": True,
         "message": "1 of 1 passed"},
        {"metric": "step 3", "value": None, "threshold": "result[0] < 0.05",
         "status": "running", "verdict": None, "pass": None, "message": None}], st
    assert st["checklist"] == [
        {"item": "load balancer healthy", "phase": "pre", "done": True, "status": "passed",
         "message": "200"},
        {"item": "quotas", "phase": "pre", "done": False, "status": "failed",
         "message": "exit 1"},
        {"item": "certificate valid", "phase": "post", "done": False, "status": "pending",
         "message": None}], st
    assert st["rollout"]["steps"][1] == {"name": "pause 10m", "status": "active"}, st
    assert st["command"] is None, st

    call(rstack, "abort", run.id, "production")
    prod = get_run(rstack, run.id)["environments"]["production"]
    assert prod["strategy"]["command"] == "abort" and prod["actions"] == [], prod

    waiting = Run(rstack, base_def)
    waiting.set_promotion("staging", status="waiting_approval")
    assert get_run(rstack, waiting.id)["environments"]["staging"]["actions"] == [
        "approve", "reject"]

    aborted = Run(rstack, base_def)
    aborted_in_production(aborted)
    assert get_run(rstack, aborted.id)["environments"]["production"]["actions"] == ["retry"]

    current = Run(rstack, base_def)
    current_in_production(current, current.sibling(status="succeeded"))
    assert get_run(rstack, current.id)["environments"]["production"]["actions"] == [
        "rollback"]


# --- sluicectl ---------------------------------------------------------------------

def ctl(stack, *args):
    return stack.ctl(*args, env={"SLUICE_TOKEN": TOKENS["ops"]})


def test_sluicectl_promote_abort_retry_rollback(rstack, base_def):
    run = Run(rstack, base_def)
    run.paused_in_production(attempt=2)
    r = ctl(rstack, "show", run.id)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = [i for i, l in enumerate(lines) if l.startswith("ENVIRONMENT  STRATEGY")]
    assert header, r.stdout
    row = lines[header[0] + 2].split()
    assert row[:4] == ["production", "Canary", "2/5", "Paused"], lines
    assert "stable 80%, canary 20%" in lines[header[0] + 2], lines
    assert lines[header[0] + 2].rstrip().endswith("1/3 passed  promote, abort"), lines
    assert any(l.split()[:5] == ["production", "background", "0.004", "result[0]", "<"]
               for l in lines), r.stdout

    r = ctl(rstack, "promote", run.id, "production", "--reason", "looks good")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("run %s: promote sent to production by ops; the paused rollout is "
                        "queued again (attempt 2)\n" % run.id), r.stdout
    r = ctl(rstack, "promote", run.id, "production")
    assert r.returncode == 1 and "is not paused" in r.stderr, r
    r = ctl(rstack, "promote", run.id, "production", "--full", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["command"] == "promote_full"
    r = ctl(rstack, "abort", run.id, "production")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("run %s: abort sent to production by ops; deploy@production is "
                        "queued (attempt 2)\n" % run.id), r.stdout

    aborted = Run(rstack, base_def)
    aborted_in_production(aborted, attempt=2)
    # build is a stage of the run: retry RUN build is the stage's retry, as before.
    r = ctl(rstack, "retry", aborted.id, "build")
    assert r.returncode == 1 and "succeeded" in r.stderr, r
    r = ctl(rstack, "retry", aborted.id, "production", "--reason", "again")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("run %s: retry of production by ops; production is deploying, "
                        "deploy@production is queued (attempt 3)\n" % aborted.id), r.stdout
    r = ctl(rstack, "retry", aborted.id, "deploy@production")
    assert r.returncode == 1 and "cannot be retried (queued)" in r.stderr, r
    r = ctl(rstack, "retry", aborted.id, "nowhere")
    assert r.returncode == 1 and "no stage or environment named nowhere" in r.stderr, r

    current = Run(rstack, base_def)
    previous = current.sibling(status="succeeded")
    current_in_production(current, previous)
    r = ctl(rstack, "rollback", current.id, "production")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("run %s: rollback of production to run %s (%s) by ops; production is "
                        "rolling_back, deploy@production is queued (attempt 2)\n"
                        % (current.id, previous.id, OLD_IMAGE)), r.stdout


@pytest.mark.parametrize("name", ["deploy@..", "deploy@."])
def test_sluicectl_sends_a_dot_segment_as_it_is(rstack, base_def, name):
    """An ENV of "." or ".." stays a path segment: removed as the URL's dot
    segment, retry RUN deploy@.. was the whole run's retry."""
    run = Run(rstack, base_def, status="failed")
    with run.redis() as r:
        r.call("HSET", run.key(":stage:build"), "status", "failed")
    r = ctl(rstack, "retry", run.id, name)
    assert r.returncode == 1, r
    assert "run %s has no environment %s" % (run.id, name[7:]) in r.stderr, r.stderr
    assert run.run_hash()["status"] == "failed"


def test_sluicectl_usage_errors_and_help(rstack):
    for args, message in (
            (["promote", "r_1"], "promote: missing ENV"),
            (["abort", "r_1", "production", "--full"], "--full applies to promote only"),
            (["rollback", "r_1", "production", "extra"], "unexpected argument 'extra'"),
            (["retry", "r_1", "--reason", "x"], "retry RUN ENV only"),
            (["promote", "r_1", "production", "--limit", "3"], "takes --reason and --by")):
        r = ctl(rstack, *args)
        assert r.returncode == 2, (args, r)
        assert message in r.stderr, (args, r.stderr)
    for command in ("promote", "abort", "rollback", "retry"):
        r = ctl(rstack, command, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: sluicectl " + command), r
    r = ctl(rstack, "--help")
    assert "promote RUN ENV [--full]" in r.stdout and "rollback RUN ENV" in r.stdout


# --- the scripts, as the agent runs them --------------------------------------------

def seed(r, prefix, stage_status, run_status="running", phase="Paused", command=None,
         rollout=None):
    d = {"name": "p", "stages": {"deploy@prod": {"kind": "deploy", "env": "prod", "needs": [],
                                                 "rollout": ROLLOUT}},
         "environments": {"prod": {"after": None}}}
    r.call("HSET", prefix + "run:r1", "status", run_status, "def", json.dumps(d),
           "pipeline", "p", "created", 1)
    r.call("HSET", prefix + "run:r1:stage:deploy@prod", "status", stage_status, "attempt", 5,
           "rollout", json.dumps(rollout or {"phase": phase}))
    r.call("HSET", prefix + "run:r1:env:prod", "status", "deploying")
    if command:
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "command", command)


def outbox(r, prefix, stream="outbox"):
    """(topic, envelope) of each message in an outbox stream, oldest first."""
    return [(t, json.loads(v)) for t, v in outbox_messages(r, prefix, stream)]


def test_script_rollout_command_twice_resumes_once(rstack):
    with Redis(rstack.redis_port) as r:
        prefix = "t-cmd1:"
        seed(r, prefix, "paused")
        args = [prefix, "r1", "prod", "promote", "alice", "", 1000]
        first = r.call("EVAL", lua_script("rollout_command"), 0, *args)
        second = r.call("EVAL", lua_script("rollout_command"), 0, *args)
        assert first == [b"resumed", b"deploying", b"queued", 5], first
        # The stage is queued now, although its saved phase still says
        # Paused: a parked pause is over once queued.
        assert second == [b"not-paused", b"queued"], second
        sent = outbox(r, prefix)
        assert [(topic, e["type"]) for topic, e in sent] == [
            ("@jobs.deploy", "dev.sluice.job.requested")], sent
        assert sent[0][1]["data"] == {"run": "r1", "stage": "deploy@prod", "attempt": 5,
                                      "kind": "deploy"}, sent
        events = outbox(r, prefix, "outbox:events")
        assert [(topic, e["type"]) for topic, e in events] == [
            ("@events", "dev.sluice.deploy.command"), ("@events", "dev.sluice.stage.queued")], events


def test_script_rollout_command_refusals_change_nothing(rstack):
    with Redis(rstack.redis_port) as r:
        prefix = "t-cmd2:"
        seed(r, prefix, "running", phase="Progressing", command="abort")
        before = r.hgetall(prefix + "run:r1:stage:deploy@prod")
        for command, want in (("promote", [b"aborting"]), ("promote_full", [b"aborting"])):
            got = r.call("EVAL", lua_script("rollout_command"), 0, prefix, "r1", "prod", command,
                         "bob", "", 1000)
            assert got == want, (command, got)
        got = r.call("EVAL", lua_script("rollout_command"), 0, prefix, "r1", "nope", "abort", "bob",
                     "", 1000)
        assert got == [b"unknown-env"], got
        got = r.call("EVAL", lua_script("rollout_command"), 0, prefix, "r9", "prod", "abort", "bob",
                     "", 1000)
        assert got == [b"gone"], got
        assert r.hgetall(prefix + "run:r1:stage:deploy@prod") == before
        assert r.call("XLEN", prefix + "outbox") == 0
        assert r.call("XLEN", prefix + "outbox:events") == 0


def test_script_rollout_command_leaves_the_scale_down_delay_to_run_its_course(rstack):
    """A blue/green rollout parked at its scale-down delay has nothing to
    promote; an abort still reaches its worker, which ignores it."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cmd-delay:"
        seed(r, prefix, "paused", rollout={
            "strategy": "BlueGreen", "phase": "Progressing", "step": 1, "pause": "timed",
            "steps": [{"name": "switch traffic to green", "status": "done"},
                      {"name": "scale-down delay", "kind": "pause", "ms": 30000, "auto": True,
                       "final": True, "status": "active"}]})
        before = r.hgetall(prefix + "run:r1:stage:deploy@prod")
        for command in ("promote", "promote_full"):
            got = r.call("EVAL", lua_script("rollout_command"), 0, prefix, "r1", "prod", command,
                         "bob", "", 1000)
            assert got == [b"scale-down-delay"], (command, got)
        assert r.hgetall(prefix + "run:r1:stage:deploy@prod") == before
        assert r.call("XLEN", prefix + "outbox") == 0
        got = r.call("EVAL", lua_script("rollout_command"), 0, prefix, "r1", "prod", "abort",
                     "bob", "", 1000)
        assert got == [b"resumed", b"deploying", b"queued", 5], got


def test_script_rollback_then_retry_is_refused(rstack):
    with Redis(rstack.redis_port) as r:
        prefix = "t-cmd3:"
        seed(r, prefix, "succeeded", run_status="succeeded")
        r.call("HSET", prefix + "env:p:prod", "current", "r1", "previous", "r0",
               "previous_image", OLD_IMAGE)
        got = r.call("EVAL", lua_script("rollback"), 0, prefix, "r1", "prod", "carol", "", 1000)
        assert got == [b"rolling-back", b"rolling_back", b"queued", 6, b"r0",
                       OLD_IMAGE.encode()], got
        # The rollback failing leaves it to be rolled back again, not redeployed.
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "status", "failed")
        r.call("HSET", prefix + "run:r1:env:prod", "status", "rollback_failed")
        r.call("HDEL", prefix + "env:p:prod", "lock")
        got = r.call("EVAL", lua_script("rollout_retry"), 0, prefix, "r1", "prod", "carol", "", 1000)
        assert got == [b"not-failed", b"rollback failed"], got


@pytest.mark.parametrize("when", ["queued", "running"])
def test_script_cancel_during_a_rollback_frees_the_environment(rstack, when):
    """A run cancelled while its rollback waits for a worker, or while a
    worker runs it (and stops it, recording the stage cancelled): the
    promotion ends rollback_cancelled, the environment is free and keeps its
    current release, and the run gets back the status it had."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cmd-cancel-%s:" % when
        seed(r, prefix, "succeeded", run_status="succeeded")
        r.call("HSET", prefix + "run:r1:env:prod", "status", "deployed")
        r.call("HSET", prefix + "env:p:prod", "current", "r1", "previous", "r0",
               "previous_image", OLD_IMAGE)
        got = r.call("EVAL", lua_script("rollback"), 0, prefix, "r1", "prod", "carol", "", 1000)
        assert got[0] == b"rolling-back", got
        if when == "running":
            r.call("HSET", prefix + "run:r1:stage:deploy@prod", "status", "running", "worker", "w1")
        got = r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 2000, "{}")
        assert got == [b"cancelled", b"1" if when == "running" else b"0"], got
        if when == "running":
            assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "rolling_back"
            r.call("HSET", prefix + "run:r1:stage:deploy@prod", "status", "cancelled")
            got = r.call("EVAL", lua_script("route"), 0, prefix, "r1", "deploy@prod", 6, 3000,
                         "{}", "", "", "{}")
            assert got == [b"routed", b"succeeded"], got
        assert r.hgetall(prefix + "run:r1:stage:deploy@prod")["status"] == "cancelled"
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "rollback_cancelled"
        assert r.hgetall(prefix + "run:r1")["status"] == "succeeded"
        env = r.hgetall(prefix + "env:p:prod")
        assert "lock" not in env and env["current"] == "r1" and env["previous"] == "r0", env
        finished = [json.loads(v)["data"] for _, v in outbox_messages(r, prefix, "outbox:events")
                    if json.loads(v)["type"] == "dev.sluice.promotion.finished"]
        assert [d["status"] for d in finished] == ["rollback_cancelled"], finished
        # Nothing was put back: no release is named.
        assert "release" not in finished[0], finished


def lose(r, prefix, how, attempt, now, max_attempts=10):
    """The worker running attempt of r1's deploy@prod is gone: its lease
    expired (reap.lua, with max_attempts) or it handed the stage back as it
    stopped (handback.lua). Returns the script's reply."""
    if how == "reap":
        r.call("DEL", prefix + "lease:r1:deploy@prod")
        return r.call("EVAL", lua_script("reap"), 0, prefix, "r1", "deploy@prod", str(attempt),
                      now, max_attempts, "@jobs.deploy", "job-%d" % (attempt + 1), "dlq",
                      "job-%d" % attempt, "@results", "lost-%d" % attempt)
    worker = r.hgetall(prefix + "run:r1:stage:deploy@prod")["worker"]
    return r.call("EVAL", lua_script("handback"), 0, prefix, "r1", "deploy@prod", str(attempt),
                  worker, now, "@jobs.deploy", "job-%d" % (attempt + 1), "@results",
                  "cancelled-%d" % attempt)


@pytest.mark.parametrize("how", ["reap", "handback"])
@pytest.mark.parametrize("where", ["running", "parked"])
def test_script_a_cancelled_runs_rollout_whose_worker_is_gone_is_still_aborted(rstack, how,
                                                                                 where):
    """A cancelled run's rollout holds traffic until a worker aborts it:
    running when the run was cancelled, or parked and taken back by a
    worker to be aborted, its worker gone (lease expired, or handed back)
    does not drop it. The stage is queued with attempt + 1 and the command
    abort, which a worker may claim; the promotion and the environment's
    lock wait for the abort's result."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cancel-lost-%s-%s:" % (how, where)
        seed(r, prefix, "running" if where == "running" else "paused")
        r.call("HSET", prefix + "env:p:prod", "lock", "r1")
        if where == "running":
            r.call("HSET", prefix + "run:r1:stage:deploy@prod", "worker", "w1", "started", 900)
        got = r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 1000, "{}")
        assert got == [b"cancelled", b"1"], got
        if where == "parked":
            got = r.call("EVAL", lua_script("claim"), 0, prefix, "r1", "deploy@prod", "5", "w2",
                         10000, 1100)
            assert got[0] == b"claimed", got
        r.call("DEL", prefix + "outbox")
        assert lose(r, prefix, how, 5, 2000) == (b"requeued" if how == "reap" else
                                                 b"handed-back")
        stage = r.hgetall(prefix + "run:r1:stage:deploy@prod")
        assert (stage["status"], stage["attempt"], stage["command"], stage["command_by"]) == (
            "queued", "6", "abort", "cancel"), stage
        assert outbox_messages(r, prefix) == [("@jobs.deploy", "job-6")]
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "deploying"
        assert r.hgetall(prefix + "env:p:prod")["lock"] == "r1"
        got = r.call("EVAL", lua_script("claim"), 0, prefix, "r1", "deploy@prod", "6", "w3",
                     10000, 2100)
        assert got[0] == b"claimed", got


def test_script_a_cancelled_runs_abort_lost_too_often_frees_the_environment(rstack):
    """An abort whose workers are lost max_attempts times fails, and its
    result lets the router end the promotion and free the environment."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cancel-lost-often:"
        seed(r, prefix, "running")
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "attempt", 3, "worker", "w1")
        r.call("HSET", prefix + "env:p:prod", "lock", "r1")
        r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 1000, "{}")
        assert lose(r, prefix, "reap", 3, 2000, max_attempts=3) == b"failed"
        stage = r.hgetall(prefix + "run:r1:stage:deploy@prod")
        assert (stage["status"], stage["error"]) == ("failed", "lost 1 times"), stage
        assert outbox_messages(r, prefix) == [("dlq", "job-3"), ("@results", "lost-3")]
        got = r.call("EVAL", lua_script("route"), 0, prefix, "r1", "deploy@prod", 3, 3000, "{}",
                     "", "", "{}")
        assert got == [b"routed", b"cancelled"], got
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "cancelled"
        assert "lock" not in r.hgetall(prefix + "env:p:prod")


def test_script_a_rollout_parking_after_its_run_was_cancelled_is_queued_to_be_aborted(rstack):
    """The run is cancelled while its canary runs (cancel.lua leaves the
    running stage to its worker), and the worker, which watches the run
    only now and then, parks the rollout at a pause before it sees that:
    the rollout holds traffic and the environment's lock, so park.lua
    queues it with the command abort, as cancel.lua queues a parked one,
    instead of leaving it paused where nothing would move it again."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-park-cancelled:"
        seed(r, prefix, "running")
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "worker", "w1", "started", 900)
        r.call("HSET", prefix + "env:p:prod", "lock", "r1")
        got = r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 1000, "{}")
        assert got == [b"cancelled", b"1"], got
        r.call("DEL", prefix + "outbox", prefix + "outbox:events")
        got = r.call("EVAL", lua_script("park"), 0, prefix, "r1", "deploy@prod", "5", "w1",
                     json.dumps({"phase": "Paused"}), 5000, 1100, "@jobs.deploy", "job-5")
        assert got == b"resumed", got
        stage = r.hgetall(prefix + "run:r1:stage:deploy@prod")
        assert (stage["status"], stage["attempt"], stage["command"], stage["command_by"]) == (
            "queued", "5", "abort", "cancel"), stage
        assert "resume_entry" not in stage, stage
        assert r.call("ZCARD", prefix + "delayed") == 0
        assert outbox_messages(r, prefix) == [("@jobs.deploy", "job-5")]
        [(_, event)] = outbox(r, prefix, "outbox:events")
        assert event["type"] == "dev.sluice.stage.queued", event
        assert (event["data"]["command"], event["data"]["env"]) == ("abort", "prod"), event
        assert r.hgetall(prefix + "env:p:prod")["lock"] == "r1"
        got = r.call("EVAL", lua_script("claim"), 0, prefix, "r1", "deploy@prod", "5", "w2",
                     10000, 1200)
        assert got[0] == b"claimed", got


def test_script_a_parked_rollout_whose_command_waits_is_queued_with_an_event(rstack):
    """A promote that arrived while the worker parked queues the rollout at
    once, and says so on sluice.events like any other queuing."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-park-command:"
        seed(r, prefix, "running", command="promote")
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "worker", "w1")
        got = r.call("EVAL", lua_script("park"), 0, prefix, "r1", "deploy@prod", "5", "w1",
                     json.dumps({"phase": "Paused"}), 0, 1100, "@jobs.deploy", "job-5")
        assert got == b"resumed", got
        assert r.hgetall(prefix + "run:r1:stage:deploy@prod")["status"] == "queued"
        [(_, event)] = outbox(r, prefix, "outbox:events")
        assert (event["type"], event["data"]["command"]) == ("dev.sluice.stage.queued",
                                                              "promote"), event


def test_script_a_run_cancelled_before_its_ended_deployment_was_routed(rstack):
    """The deployment succeeded and its result is on its way to the router
    when the run is cancelled: the promotion is left for the router, which
    records the new release as current before it frees the environment."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cancel-unrouted:"
        seed(r, prefix, "succeeded", rollout={"phase": "Healthy", "image": IMAGE})
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "attempt", 1)
        r.call("HSET", prefix + "env:p:prod", "lock", "r1", "current", "r0",
               "current_image", OLD_IMAGE)
        got = r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 2000, "{}")
        assert got == [b"cancelled", b"0"], got
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "deploying"
        assert r.hgetall(prefix + "env:p:prod")["lock"] == "r1"
        got = r.call("EVAL", lua_script("route"), 0, prefix, "r1", "deploy@prod", 1, 3000,
                     "{}", "", "", "{}")
        assert got == [b"routed", b"cancelled"], got
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "cancelled"
        env = r.hgetall(prefix + "env:p:prod")
        assert "lock" not in env, env
        assert (env["current"], env["current_image"], env["previous"], env["previous_image"]) == (
            "r1", IMAGE, "r0", OLD_IMAGE), env


def test_script_a_run_cancelled_before_its_ended_rollback_was_routed(rstack):
    """The rollback put r0's release back and its result is on its way to
    the router when the run is cancelled: the router ends the promotion
    rolled_back and makes r0 current again, as without the cancellation,
    rather than rollback_cancelled with r1 named current though r0 serves."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cancel-unrouted-rollback:"
        seed(r, prefix, "succeeded", run_status="succeeded")
        r.call("HSET", prefix + "run:r1:env:prod", "status", "deployed")
        r.call("HSET", prefix + "env:p:prod", "current", "r1", "current_image", IMAGE,
               "previous", "r0", "previous_image", OLD_IMAGE)
        got = r.call("EVAL", lua_script("rollback"), 0, prefix, "r1", "prod", "carol", "", 1000)
        assert got[0] == b"rolling-back", got
        attempt = r.hgetall(prefix + "run:r1:stage:deploy@prod")["attempt"]
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "status", "rolled_back")
        got = r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 2000, "{}")
        assert got == [b"cancelled", b"0"], got
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "rolling_back"
        got = r.call("EVAL", lua_script("route"), 0, prefix, "r1", "deploy@prod", attempt, 3000,
                     "{}", "", "", "{}")
        assert got == [b"routed", b"succeeded"], got
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "rolled_back"
        env = r.hgetall(prefix + "env:p:prod")
        assert "lock" not in env, env
        assert (env["current"], env["current_image"]) == ("r0", OLD_IMAGE), env


def test_script_a_cancelled_runs_stage_handed_back_keeps_its_start(rstack):
    """A stopping worker hands back a stage of a cancelled run, which ends
    cancelled: it keeps its start, so that retrying the run gives it the
    next attempt, not the handed-back attempt's number again."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-handback-cancelled:"
        d = {"name": "p", "stages": {"build": {"kind": "build", "needs": []}}}
        r.call("HSET", prefix + "run:r1", "status", "cancelled", "def", json.dumps(d),
               "pipeline", "p", "created", 1)
        r.call("HSET", prefix + "run:r1:stage:build", "status", "running", "attempt", 2,
               "worker", "w1", "started", 900)
        got = r.call("EVAL", lua_script("handback"), 0, prefix, "r1", "build", "2", "w1", 1000,
                     "@jobs.build", "job-3", "@results", "cancelled-2")
        assert got == b"cancelled", got
        stage = r.hgetall(prefix + "run:r1:stage:build")
        assert (stage["status"], stage["attempt"], stage["started"]) == (
            "cancelled", "2", "900"), stage
        got = r.call("EVAL", lua_script("retry_run"), 0, prefix, "r1", "", 2000, "")
        assert got[0] == b"plan", got
        assert json.loads(got[1]) == {"build": {"attempt": 3, "kind": "build"}}, got


def test_script_a_cancelled_runs_deployment_that_went_live_is_the_current_release(rstack):
    """A deployment that succeeded before its worker saw the cancellation
    (or failed past its point of no return) left its release live: the
    environment records it as current, the one before as previous, so that
    a rollback and the next deployment start from what serves."""
    with Redis(rstack.redis_port) as r:
        for status, final in (("succeeded", False), ("failed", True), ("aborted", False)):
            prefix = "t-cancel-live-%s:" % status
            seed(r, prefix, status, run_status="cancelled")
            state = {"phase": "Healthy", "image": IMAGE, "step": 0,
                     "steps": [{"name": "promote", "status": "failed" if final else "done",
                                "final": True}]}
            r.call("HSET", prefix + "run:r1:stage:deploy@prod", "attempt", 1,
                   "rollout", json.dumps(state))
            r.call("HSET", prefix + "env:p:prod", "lock", "r1", "current", "r0",
                   "current_image", OLD_IMAGE)
            got = r.call("EVAL", lua_script("route"), 0, prefix, "r1", "deploy@prod", 1, 3000,
                         "{}", "", "", "{}")
            assert got == [b"routed", b"cancelled"], got
            env = r.hgetall(prefix + "env:p:prod")
            assert "lock" not in env, env
            assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "cancelled"
            if status == "aborted":
                # Aborted: traffic went back, the release before still serves.
                assert (env["current"], env["current_image"]) == ("r0", OLD_IMAGE), env
            else:
                assert (env["current"], env["current_image"], env["previous"],
                        env["previous_image"]) == ("r1", IMAGE, "r0", OLD_IMAGE), env


def test_script_a_release_without_an_image_never_takes_the_image_of_the_one_before(rstack):
    """r1 deploys without an image (its environment's image: left out, or
    an empty output) over r0's: r0's image is not taken for r1's, and the
    rollback of r2, deployed next, is refused rather than putting r0's
    image back as if it were r1's release."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-no-image:"
        seed(r, prefix, "succeeded")
        r.call("HSET", prefix + "run:r1:stage:deploy@prod", "rollout",
               json.dumps({"phase": "Healthy", "image": ""}))
        r.call("HSET", prefix + "env:p:prod", "lock", "r1", "current", "r0",
               "current_image", OLD_IMAGE)
        r.call("HSET", prefix + "run:r2", "status", "running", "pipeline", "p", "created", 2,
               "def", r.call("HGET", prefix + "run:r1", "def"))
        r.call("HSET", prefix + "run:r2:stage:deploy@prod", "status", "succeeded", "attempt", 1,
               "rollout", json.dumps({"phase": "Healthy", "image": IMAGE}))
        r.call("HSET", prefix + "run:r2:env:prod", "status", "deploying")
        for run, attempt in (("r1", 5), ("r2", 1)):
            r.call("HSET", prefix + "env:p:prod", "lock", run)
            got = r.call("EVAL", lua_script("route"), 0, prefix, run, "deploy@prod", attempt,
                         3000, "{}", "", "", "{}")
            assert got == [b"routed", b"succeeded"], (run, got)
        env = r.hgetall(prefix + "env:p:prod")
        assert (env["current"], env["current_image"], env["previous"]) == ("r2", IMAGE, "r1"), env
        assert "previous_image" not in env, env
        got = r.call("EVAL", lua_script("rollback"), 0, prefix, "r2", "prod", "carol", "", 4000)
        assert got == [b"no-previous"], got


def test_script_cancel_aborts_a_rollout_waiting_to_go_on_and_its_job_is_published_again(
        rstack):
    """A rollout queued for a worker to carry on from where an earlier
    attempt left it (its traffic moved already) is queued to be aborted by
    the cancel, not cancelled, with stage.queued as for any job published;
    its job is published again while unclaimed, as any other."""
    with Redis(rstack.redis_port) as r:
        prefix = "t-cancel-queued-rollout:"
        seed(r, prefix, "queued", phase="Progressing")
        r.call("HSET", prefix + "env:p:prod", "lock", "r1")
        got = r.call("EVAL", lua_script("cancel"), 0, prefix, "r1", 1000, "{}")
        assert got == [b"cancelled", b"1"], got
        stage = r.hgetall(prefix + "run:r1:stage:deploy@prod")
        assert (stage["status"], stage["command"]) == ("queued", "abort"), stage
        assert r.hgetall(prefix + "run:r1:env:prod")["status"] == "deploying"
        queued = [json.loads(v)["data"] for _, v in outbox_messages(r, prefix, "outbox:events")
                  if json.loads(v)["type"] == "dev.sluice.stage.queued"]
        assert [(q["stage"], q["attempt"], q["env"], q["command"]) for q in queued] == [
            ("deploy@prod", 5, "prod", "abort")], queued
        got = r.call("EVAL", lua_script("requeue"), 0, prefix, "r1", "deploy@prod", "5", 100000,
                     60000, "@jobs.deploy", "job-5")
        assert got == b"requeued", got
