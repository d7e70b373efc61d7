"""Stages that outlive their worker, fail, time out or get cancelled: the
scheduler reaps expired leases and re-queues unclaimed jobs, the router
retries per stage policy through the delayed set and dead-letters exhausted
jobs, results are fenced by attempt, and a cancelled run stops within a
second. One stack of its own with short leases and a fast scheduler."""

import json
import os
import signal
import sys
import time
from datetime import datetime

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from conftest import http_request, pipeline, started_stack, wait_for  # noqa: E402
from harness import lua_script, outbox_messages  # noqa: E402
from kafkawire import envelopes  # noqa: E402
from resp import Redis  # noqa: E402

# Longer than the Kafka group's failover on sluice-devbroker (session timeout
# 6 s plus the mock's rebalance delay, about 11 s): by the time the lease of a
# killed worker expires, its partitions belong to a live worker, which picks
# the re-queued attempt up at once. With a lease shorter than the failover the
# attempt waits for the rebalance instead.
LEASE_S = 12
FLAKY = ('if [ -e "$1" ]; then echo "second time lucky"; exit 0; fi; '
         'touch "$1"; echo "failing once"; exit 75')
SLOW_ONCE = ('if [ -e "$1" ]; then echo quick; exit 0; fi; touch "$1"; exec sleep 30')


def repo_name(name):
    return "sluice-resilience/" + name


def pipelines(repo, marks):
    def p(name, stages):
        return pipeline(name, repo_name(name), checkout=repo.url, vars_={"MARKS": marks},
                        stages=stages)
    mark = "${MARKS}/${SLUICE_PIPELINE}-${SLUICE_RUN_ID}"
    return {
        "lost.yaml": p("lost", {
            "build": {"run": ["sh", "-c", "echo working; sleep 3; echo done"]},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
        "flaky.yaml": p("flaky", {
            "build": {"run": ["sh", "-c", FLAKY, "sh", mark],
                      "retry": {"max": 2, "on_exit": [75], "backoff": "1s"}},
        }),
        "doomed.yaml": p("doomed", {
            "build": {"run": ["sh", "-c", "echo hopeless; exit 75"],
                      "retry": {"max": 1, "on_exit": [75], "backoff": "200ms"}},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
        "slowonce.yaml": p("slowonce", {
            "build": {"run": ["sh", "-c", SLOW_ONCE, "sh", mark], "timeout": "1s",
                      "retry": {"max": 1, "on": ["timeout"], "backoff": "100ms"}},
        }),
        "long.yaml": p("long", {
            "build": {"run": ["sh", "-c", "echo long; exec sleep 30"], "timeout": "1m"},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
        # Deploys only with a worker a test starts for it.
        "shipping.yaml": dict(p("shipping", {"build": {"run": ["true"]}}), environments={
            "prod": {"deploy": {"run": ["sh", "-c", "echo deploying; exec sleep 30"]}}}),
        # No worker takes deploy jobs here: the stage stays queued.
        "unclaimed.yaml": p("unclaimed", {
            "ship": {"kind": "deploy", "run": ["true"]},
        }),
    }


def marked_pipelines(repo, root):
    marks = os.path.join(root, "marks")
    os.makedirs(marks)
    return pipelines(repo, marks)


@pytest.fixture(scope="module")
def rstack():
    yield from started_stack("sluice-resilience-", marked_pipelines,
                             workers=(("build,test", 2), ("build,test", 2)),
                             extra_settings={"worker": {"lease": "%gs" % LEASE_S},
                                             "agent": {"scheduler_interval": "200ms",
                                                       "requeue_after": "2s"}})


def ms(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def start_run(stack, name):
    status, body = stack.post_hook("push", stack.push_payload(repo_name(name)))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def wait_stage(stack, run_id, stage, statuses, timeout=20):
    def check():
        run = stack.run(run_id)
        return run if run["stages"][stage]["status"] in statuses else None
    return wait_for("stage %s of %s to be %s" % (stage, run_id, statuses), check, timeout,
                    [stack.agent])


def redis(stack):
    return Redis(stack.redis_port)


def topic_messages(stack, topic):
    """Every message of a topic, all partitions, as decoded envelopes."""
    return envelopes(stack.brokers, topic)


def test_killed_worker_stage_is_reaped_and_run_again(rstack):
    run_id = start_run(rstack, "lost")
    wait_stage(rstack, run_id, "build", ("running",))
    with redis(rstack) as r:
        token = r.call("HGET", "sluice:run:%s:stage:build" % run_id, "worker").decode()
    pid = int(token.split(":")[1])
    victim = next(p for p in rstack.procs if p.popen and p.popen.pid == pid)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    victim.popen.wait()
    rstack.procs.remove(victim)
    try:
        run = rstack.wait_run(run_id, timeout=30)
        build = run["stages"]["build"]
        assert run["status"] == "succeeded", run
        assert build["status"] == "succeeded" and build["attempt"] == 2, build
        history = [(a["attempt"], a["status"]) for a in build["attempts"]]
        assert history == [(1, "lost"), (2, "succeeded")], build
        assert build["attempts"][0]["worker"] == token
        assert build["attempts"][1]["worker"] != token
        # The reaper declares the attempt lost once the lease has expired, and
        # the second worker finishes the stage within lease + 5 s of the kill.
        lost_at = ms(build["attempts"][0]["finished"])
        assert lost_at - killed <= LEASE_S + 1.0, build
        assert ms(build["attempts"][1]["finished"]) - killed <= LEASE_S + 5, build
    finally:
        rstack.start_worker("build,test", 2, "worker-3")


def test_retry_on_a_listed_exit_code_waits_the_backoff_then_succeeds(rstack):
    run = rstack.wait_run(start_run(rstack, "flaky"), timeout=30)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert build["status"] == "succeeded" and build["attempt"] == 2, build
    first, second = build["attempts"]
    assert (first["attempt"], first["status"], first["exit_code"]) == (1, "failed", 75), build
    assert (second["attempt"], second["status"], second["exit_code"]) == (2, "succeeded", 0)
    assert ms(second["started"]) - ms(first["finished"]) >= 1.0, build


def test_exhausted_retries_fail_the_stage_and_dead_letter_its_job(rstack):
    run_id = start_run(rstack, "doomed")
    run = rstack.wait_run(run_id, timeout=30)
    build = run["stages"]["build"]
    assert run["status"] == "failed", run
    assert build["status"] == "failed" and build["attempt"] == 2, build
    assert [a["status"] for a in build["attempts"]] == ["failed", "failed"], build
    assert run["stages"]["test"]["status"] == "skipped", run

    def dead_letters():
        return [m for m in topic_messages(rstack, "sluice.dlq") if m["data"]["run"] == run_id]
    letters = wait_for("the job on sluice.dlq", dead_letters, 10)
    assert len(letters) == 1, letters
    assert letters[0]["type"] == "dev.sluice.job.requested"
    assert letters[0]["data"]["stage"] == "build" and letters[0]["data"]["attempt"] == 2


def test_timed_out_stage_is_retried_when_the_policy_lists_timeout(rstack):
    run = rstack.wait_run(start_run(rstack, "slowonce"), timeout=30)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == [
        (1, "timed_out"), (2, "succeeded")], build


def test_a_result_delivered_again_changes_nothing(rstack):
    run_id = start_run(rstack, "flaky")
    before = rstack.wait_run(run_id, timeout=30)
    results = [m for m in topic_messages(rstack, "sluice.results")
               if m["data"]["run"] == run_id]
    assert sorted(m["data"]["attempt"] for m in results) == [1, 2], results
    with redis(rstack) as r:
        for m in results:  # the superseded attempt's failure and the final success
            r.call("XADD", "sluice:outbox", "*", "topic", "sluice.results", "key", run_id,
                   "value", json.dumps(m))
    wait_for("the router to see the copies", lambda: len(
        [m for m in topic_messages(rstack, "sluice.results") if m["data"]["run"] == run_id]) == 4,
        10)
    time.sleep(1.0)
    assert rstack.run(run_id) == before


def test_a_started_deployment_whose_worker_is_lost_after_cancel_finishes_cancelled(rstack):
    """A deployment running when its run is cancelled, whose worker dies
    before it stops it: once the lease expires the attempt is lost and the
    deployment ends as a started stage does, stage.finished cancelled (not
    stage.cancelled, which is for a stage that never started), and its
    promotion ends cancelled."""
    deployer = rstack.start_worker("deploy", 1, "worker-deploy")
    try:
        run_id = start_run(rstack, "shipping")
        wait_stage(rstack, run_id, "deploy@prod", ("running",), timeout=30)
    finally:
        deployer.popen.send_signal(signal.SIGKILL)
        deployer.popen.wait()
        rstack.procs.remove(deployer)
    status, body, _ = http_request(rstack.agent_port, "POST", "/api/v1/runs/%s/cancel" % run_id)
    assert status == 202, body
    wait_stage(rstack, run_id, "deploy@prod", ("cancelled",), timeout=LEASE_S + 10)

    def ended():
        got = [e for e in topic_messages(rstack, "sluice.events") if e["data"]["run"] == run_id]
        done = any(e["type"] == "dev.sluice.promotion.finished" for e in got)
        return got if done else None
    events = wait_for("the promotion to end", ended, 10)
    deploy = [(e["type"][len("dev.sluice."):], e["data"].get("status"))
              for e in events if e["data"].get("stage") == "deploy@prod"]
    assert deploy == [("stage.queued", None), ("stage.started", None), ("stage.lost", None),
                      ("stage.finished", "cancelled")], deploy
    finished = [e["data"] for e in events if e["type"] == "dev.sluice.stage.finished"
                and e["data"]["stage"] == "deploy@prod"][0]
    assert finished["duration_ms"] >= LEASE_S * 1000, finished
    assert [e["data"]["status"] for e in events
            if e["type"] == "dev.sluice.promotion.finished"] == ["cancelled"], events


def test_unclaimed_job_is_published_again_with_the_same_attempt(rstack):
    run_id = start_run(rstack, "unclaimed")

    def jobs():
        return [m for m in topic_messages(rstack, "sluice.jobs.deploy")
                if m["data"]["run"] == run_id]
    again = wait_for("the job published a second time", lambda: len(jobs()) >= 2 and jobs(), 10)
    assert {m["data"]["attempt"] for m in again} == {1}, again
    assert len({m["id"] for m in again}) == len(again), again
    run = rstack.run(run_id)
    assert run["stages"]["ship"]["status"] == "queued", run
    status, body, _ = http_request(rstack.agent_port, "POST", "/api/v1/runs/%s/cancel" % run_id)
    assert status == 202 and body["stages"]["ship"]["status"] == "cancelled", body
    with redis(rstack) as r:
        assert r.call("ZSCORE", "sluice:queued", run_id + "/ship") is None


def test_cancel_stops_the_running_stage_within_a_second(rstack):
    run_id = start_run(rstack, "long")
    wait_stage(rstack, run_id, "build", ("running",))
    time.sleep(0.3)
    status, body, _ = http_request(rstack.agent_port, "POST", "/api/v1/runs/%s/cancel" % run_id)
    answered = time.time()
    assert status == 202, body
    assert body["id"] == run_id and body["status"] == "cancelled", body
    assert body["stages"]["test"]["status"] == "cancelled", body
    run = wait_stage(rstack, run_id, "build", ("cancelled",), timeout=5)
    build = run["stages"]["build"]
    assert ms(build["finished"]) - answered <= 1.0, build
    assert build["attempts"][-1]["status"] == "cancelled", build
    time.sleep(0.5)
    run = rstack.run(run_id)
    assert run["status"] == "cancelled", run
    assert run["stages"]["test"]["status"] == "cancelled", run
    assert run["stages"]["test"]["started"] is None, run

    status, body, _ = http_request(rstack.agent_port, "POST", "/api/v1/runs/%s/cancel" % run_id)
    assert status == 409 and body["error"]["code"] == "conflict", body
    status, body, _ = http_request(rstack.agent_port, "POST", "/api/v1/runs/r_nosuchrun/cancel")
    assert status == 404 and body["error"]["code"] == "not_found", body


def test_sluicectl_cancel(rstack):
    run_id = start_run(rstack, "long")
    wait_stage(rstack, run_id, "build", ("running",))
    out = rstack.ctl("cancel", run_id)
    assert out.returncode == 0, out
    assert run_id in out.stdout and "cancelled" in out.stdout, out.stdout
    wait_stage(rstack, run_id, "build", ("cancelled",), timeout=5)
    again = rstack.ctl("cancel", run_id)
    assert again.returncode == 1 and "already finished" in again.stderr, again


def test_a_due_delayed_entry_is_released_once(rstack):
    """Two agents that both see an entry due: only one publishes it."""
    with redis(rstack) as r:
        P = "t-release:"
        entry = json.dumps({"topic": "t.topic", "value": "v"})
        r.call("ZADD", P + "delayed", 1000, entry)
        released = [r.call("EVAL", lua_script("release"), 0, P, 2000, 100) for _ in range(2)]
        assert released == [1, 0]
        assert r.call("XLEN", P + "outbox") == 1
        assert r.call("ZCARD", P + "delayed") == 0


def test_an_expired_lease_is_reaped_once(rstack):
    """Two agents reaping the same attempt: one re-queues it, the other changes nothing."""
    with redis(rstack) as r:
        P = "t-reap:"
        r.call("HSET", P + "run:r1", "status", "running")
        r.call("HSET", P + "run:r1:stage:build", "status", "running", "attempt", 1,
               "worker", "w:1:aa", "started", 500)
        r.call("ZADD", P + "leases", 1000, "r1/build")
        args = [P, "r1", "build", "1", 2000, 3, "jobs", "job-2", "dlq", "job-1", "results", "res"]
        outcomes = [r.call("EVAL", lua_script("reap"), 0, *args) for _ in range(2)]
        assert outcomes == [b"requeued", b"stale"]
        stage = r.hgetall(P + "run:r1:stage:build")
        assert stage["status"] == "queued" and stage["attempt"] == "2", stage
        assert json.loads(stage["attempts"]) == [
            {"attempt": 1, "status": "lost", "worker": "w:1:aa", "started": 500,
             "finished": 2000}]
        assert [t for t, _ in outbox_messages(r, P)] == ["jobs"]
        assert [json.loads(v)["type"] for _, v in outbox_messages(r, P, "outbox:events")] == [
            "dev.sluice.stage.lost", "dev.sluice.stage.queued"]


# A run's definition of one deployment without a strategy, to prod.
DEPLOY_DEF = {"name": "p", "stages": {"deploy@prod": {"kind": "deploy", "env": "prod",
                                                      "needs": [], "run": ["true"]}},
              "environments": {"prod": {"after": None,
                                        "approval": {"required": False, "expires_s": 0}}}}


@pytest.mark.parametrize("how", ["reap", "handback"])
def test_a_cancelled_runs_deployment_whose_worker_is_gone_frees_the_environment(rstack, how):
    """A deployment without a strategy, running when its run was cancelled,
    whose worker is then gone (lease expired, or handed back as it stopped)
    before it recorded the stage: the stage is cancelled (stage.finished,
    status cancelled) and its result goes to the router, which ends the promotion and passes the environment on
    to the run waiting for it."""
    with redis(rstack) as r:
        P = "t-cancel-%s:" % how
        for run, created in (("r1", 1), ("r2", 2)):
            r.call("HSET", P + "run:" + run, "status", "running", "pipeline", "p",
                   "created", created, "def", json.dumps(DEPLOY_DEF))
        r.call("HSET", P + "run:r1:stage:deploy@prod", "status", "running", "attempt", 1,
               "worker", "w:1:aa", "started", 500)
        r.call("HSET", P + "run:r1:env:prod", "status", "deploying")
        r.call("HSET", P + "run:r2:stage:deploy@prod", "status", "pending", "attempt", 1)
        r.call("HSET", P + "run:r2:env:prod", "status", "queued")
        r.call("ZADD", P + "env:p:prod:waiting", 2, "r2")
        r.call("HSET", P + "env:p:prod", "lock", "r1")
        assert r.call("EVAL", lua_script("cancel"), 0, P, "r1", 1000, "{}") == [b"cancelled",
                                                                                 b"1"]
        if how == "reap":
            got = r.call("EVAL", lua_script("reap"), 0, P, "r1", "deploy@prod", "1", 2000, 3,
                         "jobs", "job-2", "dlq", "job-1", "results", "result-1")
        else:
            got = r.call("EVAL", lua_script("handback"), 0, P, "r1", "deploy@prod", "1",
                         "w:1:aa", 2000, "jobs", "job-2", "results", "result-1")
        assert got == b"cancelled", got
        assert r.hgetall(P + "run:r1:stage:deploy@prod")["status"] == "cancelled"
        assert outbox_messages(r, P) == [("results", "result-1")]
        # It had started: it ends as a started stage does, not as one that never ran.
        ends = [json.loads(v) for _, v in outbox_messages(r, P, "outbox:events")]
        ends = [(e["type"], e["data"].get("status"), e["data"].get("duration_ms"))
                for e in ends if e["data"].get("stage") == "deploy@prod"]
        lost = "dev.sluice.stage.lost" if how == "reap" else "dev.sluice.stage.handed_back"
        assert ends == [(lost, None, None), ("dev.sluice.stage.finished", "cancelled", 1500)]
        got = r.call("EVAL", lua_script("route"), 0, P, "r1", "deploy@prod", 1, 3000, "{}",
                     "", "", "{}")
        assert got == [b"routed", b"cancelled"], got
        assert r.hgetall(P + "run:r1:env:prod")["status"] == "cancelled"
        assert r.hgetall(P + "env:p:prod")["lock"] == "r2"
        assert r.hgetall(P + "run:r2:env:prod")["status"] == "deploying"


@pytest.mark.parametrize("how", ["reap", "handback", "release"])
def test_a_deployment_queued_again_names_its_environment(rstack, how):
    """stage.queued has env for a deployment whichever script queues it
    again: its worker gone (lease expired, or handed back as it stopped),
    or the back-off of a retry over. Only a promotion's first one had it."""
    with redis(rstack) as r:
        P = "t-queued-%s:" % how
        r.call("HSET", P + "run:r1", "status", "running", "pipeline", "p", "created", 1,
               "def", json.dumps(DEPLOY_DEF))
        r.call("HSET", P + "run:r1:stage:deploy@prod", "status", "running", "attempt", 1,
               "worker", "w:1:aa", "started", 500)
        if how == "reap":
            got = r.call("EVAL", lua_script("reap"), 0, P, "r1", "deploy@prod", "1", 2000, 3,
                         "jobs", "job-2", "dlq", "job-1", "results", "result-1")
            assert got == b"requeued", got
        elif how == "handback":
            got = r.call("EVAL", lua_script("handback"), 0, P, "r1", "deploy@prod", "1",
                         "w:1:aa", 2000, "jobs", "job-2", "results", "result-1")
            assert got == b"handed-back", got
        else:
            entry = json.dumps({"topic": "jobs", "value": "job-2", "run": "r1",
                                "stage": "deploy@prod", "attempt": 2})
            r.call("HSET", P + "run:r1:stage:deploy@prod", "status", "retrying", "attempt", 2)
            r.call("ZADD", P + "delayed", 1500, entry)
            r.call("SADD", P + "run:r1:delayed", entry)
            assert r.call("EVAL", lua_script("release"), 0, P, 2000, 100) == 1
        events = [json.loads(v) for _, v in outbox_messages(r, P, "outbox:events")]
        queued = [e["data"] for e in events if e["type"] == "dev.sluice.stage.queued"]
        assert [(d["stage"], d["attempt"], d.get("env")) for d in queued] == [
            ("deploy@prod", 2, "prod")], events


def test_redis_out_of_memory_refuses_webhooks_but_still_shows_runs(rstack):
    """maxmemory reached: a webhook is answered 503 and nothing is recorded
    (GitHub may deliver it again); reading runs goes on, the view of one
    included (read by a read-only script, which Redis runs when out of
    memory). Once memory is back, webhooks are taken again."""
    run_id = start_run(rstack, "lost")
    assert rstack.wait_run(run_id, timeout=30)["status"] == "succeeded"
    before = rstack.run_count()
    with redis(rstack) as r:
        assert r.call("CONFIG", "SET", "maxmemory", "1") == b"OK"
    try:
        status, body = rstack.post_hook("push", rstack.push_payload(repo_name("lost")))
        assert status == 503, (status, body)
        assert body["error"]["message"] == ("the run could not be recorded; deliver again "
                                            "later"), body
        status, view = rstack.get("/api/v1/runs/" + run_id)
        assert status == 200 and view["status"] == "succeeded", (status, view)
        assert view["stages"]["test"]["status"] == "succeeded", view
        status, runs = rstack.get("/api/v1/runs?limit=5")
        assert status == 200 and run_id in [x["id"] for x in runs["runs"]], (status, runs)
    finally:
        with redis(rstack) as r:
            r.call("CONFIG", "SET", "maxmemory", "0")
    assert rstack.run_count() == before
    again = start_run(rstack, "lost")
    assert rstack.wait_run(again, timeout=30)["status"] == "succeeded"
