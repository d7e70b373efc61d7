"""Deployments with a strategy under faults: Redis away while a canary
ends on its worker or reaches a pause, the connection to Redis cut as a
deployment starts or parks, the worker killed while an analysis measures.

The stack is each test's own (it kills its Redis or its deploy worker): a
build worker, a deploy worker, and a canary whose every provider action
appends "action colour weight release" to ctrl/<pipeline>.log. An action
waits while ctrl/hold-<action>-<weight> exists (weight "-" for an action
without one), so that the test can catch the deployment in the middle of
it; stopped with SIGTERM, it takes a second to clean up, then appends
"action weight" to ctrl/stopped. A canary with an analysis step measures a stand-in metric endpoint
(Metric) whose answers the test sets.
"""

import hashlib
import http.server
import json
import os
import signal
import threading

import pytest

from conftest import pipeline, started_stack, wait_for
from faultproxy import FaultProxy
from harness import DurableRedisStack, log_text, lua_script
from kafkawire import envelopes
from resp import Redis

P = "sluice:"
ENV = "production"
STAGE = "deploy@" + ENV

ACTION_SH = r'''
ctrl="%s"
w="${SLUICE_WEIGHT:--}"
trap 'sleep 1; echo "$SLUICE_ACTION $w" >> "$ctrl/stopped"; exit 143' TERM
while [ -e "$ctrl/hold-$SLUICE_ACTION-$w" ]; do sleep 0.02; done
echo "$SLUICE_ACTION ${SLUICE_COLOR:--} $w $SLUICE_IMAGE" >> "$ctrl/$SLUICE_PIPELINE.log"
'''


def fault_pipelines(repo, ctrl, analysis=None, pause=None):
    """The canary goes to 20 %, then 50 %; with analysis, that analysis is
    a step between the two, with pause a pause of that duration."""
    steps = [{"setWeight": 20}, {"setWeight": 50}]
    if analysis:
        steps.insert(1, {"analysis": analysis})
    if pause:
        steps.insert(1, {"pause": {"duration": pause}})
    d = pipeline("canary", "sluice-faults/canary", checkout=repo.url, stages={
        "build": {"sh": 'printf "image=%%s\\n" "$(cat "%s/image")" >> "$SLUICE_OUTPUT"' % ctrl,
                  "checkout": False}})
    d["environments"] = {ENV: {
        "image": "${build.image}",
        "provider": {"type": "exec", "timeout": "30s", "actions": {
            verb: {"sh": ACTION_SH % ctrl}
            for verb in ("apply", "verify", "set_weight", "promote", "scale_down")}},
        "strategy": {"type": "Canary", "steps": steps}}}
    return {"canary.yaml": d}


def fault_stack(tmp_path, **options):
    """A stack for the canary of fault_pipelines(options), with a lease
    that outlasts the outages of the tests: the worker keeps its
    deployment."""
    ctrl = str(tmp_path / "ctrl")
    os.makedirs(ctrl)
    for s in started_stack("sluice-rollout-faults-",
                           lambda repo, root: fault_pipelines(repo, ctrl, **options),
                           stack_class=DurableRedisStack, workers=(("build", 1), ("deploy", 1)),
                           extra_settings={"worker": {"lease": "10s"},
                                           "agent": {"scheduler_interval": "100ms"},
                                           "redis": {"timeout": "1s"}}):
        s.ctrl = ctrl
        yield s


@pytest.fixture
def faults(tmp_path):
    yield from fault_stack(tmp_path)


@pytest.fixture
def paused(tmp_path):
    """The canary pauses for a second between its two weights."""
    yield from fault_stack(tmp_path, pause="1s")


@pytest.fixture
def proxied(tmp_path):
    """The canary with its pause; the deploy worker (worker-2) reaches
    Redis through a FaultProxy (s.proxy), the rest directly."""
    proxy = None
    try:
        for s in fault_stack(tmp_path, pause="1s"):
            deploy = next(p for p in s.procs if p.name == "worker-2")
            deploy.stop()
            s.procs.remove(deploy)
            proxy = s.proxy = FaultProxy(s.redis_port)
            config = os.path.join(s.root, "sluice-proxied.yaml")
            with open(s.config) as f:
                text = f.read()
            with open(config, "w") as f:
                f.write(text.replace("redis://127.0.0.1:%d" % s.redis_port,
                                     "redis://127.0.0.1:%d" % proxy.port))
            s.start_worker("deploy", 1, "worker-2", config=config)
            yield s
    finally:
        if proxy:
            proxy.close()


class Metric:
    """A stand-in metric endpoint for a web provider: each request is
    answered {"value": V}, V the first of the values queued (taken off the
    queue while another follows it), so that the last one answers every
    request after it. served counts the requests answered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.values = [0.0]
        self.served = 0
        metric = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with metric.lock:
                    value = metric.values[0]
                    if len(metric.values) > 1:
                        metric.values.pop(0)
                    metric.served += 1
                body = json.dumps({"value": value}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/ratio" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, *values):
        with self.lock:
            self.values = list(values)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


ANALYSIS_INTERVAL_S = 3


@pytest.fixture
def analysed(tmp_path):
    """A canary with an analysis step of the metric: three measurements 3 s
    apart, each failed above 0.1, one failure tolerated. The lease is short
    and the Kafka session too, so that a killed worker's deployment is taken
    up again within a few seconds."""
    ctrl = str(tmp_path / "ctrl")
    os.makedirs(ctrl)
    metric = Metric()
    analysis = {"interval": "%ds" % ANALYSIS_INTERVAL_S, "count": 3, "failureLimit": 1,
                "successCondition": "result[0] <= 0.1",
                "provider": {"web": {"url": metric.url, "jsonPath": "$.value",
                                     "timeout": "2s"}}}
    try:
        for s in started_stack("sluice-rollout-analysis-",
                               lambda repo, root: fault_pipelines(repo, ctrl, analysis),
                               workers=(("build", 1), ("deploy", 1)),
                               extra_settings={"worker": {"lease": "2s"},
                                               "kafka": {"session_timeout": "3s"},
                                               "agent": {"scheduler_interval": "100ms"}}):
            s.ctrl = ctrl
            s.metric = metric
            yield s
    finally:
        metric.stop()


def kill9(stack, proc):
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait()
    stack.procs.remove(proc)


def push(stack, image):
    with open(os.path.join(stack.ctrl, "image"), "w") as f:
        f.write(image + "\n")
    status, body = stack.post_hook("push", stack.push_payload("sluice-faults/canary"))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def actions(stack):
    try:
        with open(os.path.join(stack.ctrl, "canary.log")) as f:
            return [tuple(line.split()) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def rollout(stack, run_id):
    with Redis(stack.redis_port) as r:
        text = r.call("HGET", "%srun:%s:stage:%s" % (P, run_id, STAGE), "rollout")
    return json.loads(text) if text else None


def wait_active_step(stack, run_id, name):
    """Waits for the rollout's step whose name begins with name to be the
    one it is at."""
    def active():
        st = rollout(stack, run_id)
        step = st and st["step"] < len(st["steps"]) and st["steps"][st["step"]]
        return step and step["status"] == "active" and step["name"].startswith(name)
    wait_for("the canary's step " + name, active, 20)


def redis_killed_in(stack, image, gate, step):
    """Pushes image, its deployment held at gate (a hold- file of ctrl),
    and kills Redis once the step named step is at work; the run's id and
    the deploy worker."""
    gate = os.path.join(stack.ctrl, gate)
    open(gate, "w").close()
    run_id = push(stack, image)
    wait_active_step(stack, run_id, step)
    kill9(stack, stack.redis)
    return run_id, next(p for p in stack.procs if p.name == "worker-2")


def assert_steps_told_once_in_order(stack, run):
    """Each of the finished run's steps was published active, then done,
    once each, before the stage's outcome."""
    steps = run["stages"][STAGE]["rollout"]["steps"]

    def published():
        got = [e for e in envelopes(stack.brokers, "sluice.events")
               if e["data"].get("run") == run["id"]]
        return got if any(e["type"] == "dev.sluice.run.finished" for e in got) else None
    events = wait_for("the run's events", published, 10)
    told = [(e["data"]["step"], e["data"]["status"]) for e in events
            if e["type"] == "dev.sluice.deploy.step"]
    assert told == [(i, status) for i in range(len(steps)) for status in ("active", "done")], told
    last_step = max(i for i, e in enumerate(events) if e["type"] == "dev.sluice.deploy.step")
    finished = next(i for i, e in enumerate(events) if e["type"] == "dev.sluice.stage.finished"
                    and e["data"].get("stage") == STAGE)
    assert last_step < finished


CANARY_ACTIONS = ["apply", "verify", "set_weight", "set_weight", "promote", "verify",
                  "set_weight", "scale_down"]


def attempts(run):
    return [(a["attempt"], a["status"]) for a in run["stages"][STAGE]["attempts"]]


def test_a_rollout_that_ends_while_redis_is_away_is_recorded_as_it_ended(faults):
    """The worker's saves of the rollout's state fail while Redis is away;
    the outcome, recorded once it is back, brings the state the rollout
    ended in, not that of a step before it."""
    s = faults
    run_id, worker = redis_killed_in(s, "e1", "hold-scale_down--", "scale down the canary")
    os.unlink(os.path.join(s.ctrl, "hold-scale_down--"))
    wait_for("the scale-down done", lambda: ("scale_down", "canary", "-", "e1") in actions(s), 10)
    wait_for("the outcome waiting for Redis",
             lambda: "outcome waits for the rollout's saves" in open(
                 worker.log, errors="replace").read(), 10)
    s.start_redis()
    run = s.wait_run(run_id, timeout=20)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    st = run["stages"][STAGE]["rollout"]
    assert st["phase"] == "Healthy", st
    assert [x["status"] for x in st["steps"]] == ["done"] * len(st["steps"]), st["steps"]
    assert st["weights"] == {"stable": 100, "canary": 0}, st
    assert [a[0] for a in actions(s)] == CANARY_ACTIONS


def test_the_saves_of_a_rollout_while_redis_is_away_land_in_order_once_it_is_back(faults):
    """The steps a canary goes through while Redis is away (within its
    lease) are saved once Redis is back, in order: each step published
    active, then done, once each, before the stage's outcome."""
    s = faults
    run_id, worker = redis_killed_in(s, "g1", "hold-set_weight-50", "setWeight 50")
    os.unlink(os.path.join(s.ctrl, "hold-set_weight-50"))
    wait_for("the outcome waiting for Redis",
             lambda: "outcome waits for the rollout's saves" in open(
                 worker.log, errors="replace").read(), 10)
    assert ("scale_down", "canary", "-", "g1") in actions(s)
    s.start_redis()
    run = s.wait_run(run_id, timeout=20)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert_steps_told_once_in_order(s, run)


def test_a_rollout_whose_lease_cannot_be_renewed_stops_and_resumes_on_the_next_attempt(faults):
    """With Redis away longer than its lease allows, the worker stops the
    deployment in the middle of an action (the action's command killed
    before it did anything) rather than carry on beside the attempt queued
    once Redis is back; that attempt carries on at the step the first was
    at, each action done once."""
    s = faults
    run_id, worker = redis_killed_in(s, "f1", "hold-set_weight-50", "setWeight 50")
    wait_for("the deployment stopped with Redis away",
             lambda: "lease not renewed in time" in open(worker.log, errors="replace").read(), 20)
    os.unlink(os.path.join(s.ctrl, "hold-set_weight-50"))
    s.start_redis()

    run = s.wait_run(run_id, timeout=40)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    deploy = run["stages"][STAGE]
    assert [(a["attempt"], a["status"]) for a in deploy["attempts"]] == [
        (1, "lost"), (2, "succeeded")], deploy
    assert [a[0] for a in actions(s)] == CANARY_ACTIONS
    assert [a[2] for a in actions(s) if a[0] == "set_weight"] == ["20", "50", "0"]


def test_a_worker_told_to_stop_with_redis_hung_hands_its_rollout_back_and_exits(faults):
    """A deployment whose save Redis has not answered (Redis stopped, not
    gone) when its worker is told to stop at once (a second SIGTERM): the
    worker does not wait for Redis to hand the stage back, and exits; once
    Redis answers again, another worker carries the deployment on."""
    s = faults
    for gate in ("hold-set_weight-50", "hold-promote--"):
        open(os.path.join(s.ctrl, gate), "w").close()
    run_id = push(s, "h1")
    wait_active_step(s, run_id, "setWeight 50")
    worker = next(p for p in s.procs if p.name == "worker-2")
    os.kill(s.redis.popen.pid, signal.SIGSTOP)
    try:
        os.unlink(os.path.join(s.ctrl, "hold-set_weight-50"))
        wait_for("setWeight 50 done", lambda: ("set_weight", "-", "50", "h1") in actions(s), 10)
        # Its save on its way (redis.timeout is 1 s): the hand-back waits
        # for it while the connection stands, not once the save failed.
        worker.popen.send_signal(signal.SIGTERM)
        # Two signals sent at once may arrive as one.
        wait_for("the worker to drain", lambda: "draining" in log_text(worker), 10)
        worker.popen.send_signal(signal.SIGTERM)
        wait_for("the worker to exit", lambda: worker.popen.poll() is not None, 20)
    finally:
        os.kill(s.redis.popen.pid, signal.SIGCONT)
    s.procs.remove(worker)
    s.start_worker("deploy", 1, "worker-3")
    os.unlink(os.path.join(s.ctrl, "hold-promote--"))
    run = s.wait_run(run_id, timeout=40)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert [a[0] for a in actions(s)][-4:] == ["promote", "verify", "set_weight", "scale_down"]


def test_a_worker_told_to_stop_waits_for_a_handed_back_action_s_grace(faults):
    """A second SIGTERM hands the deployment back while a provider action
    runs: the action is stopped with SIGTERM, and the worker waits for it
    to clean up within its grace before it exits, rather than leave it to
    be SIGKILLed as the worker goes."""
    s = faults
    open(os.path.join(s.ctrl, "hold-set_weight-50"), "w").close()
    run_id = push(s, "g1")
    wait_active_step(s, run_id, "setWeight 50")
    worker = next(p for p in s.procs if p.name == "worker-2")
    worker.popen.send_signal(signal.SIGTERM)
    # Two signals sent at once may arrive as one.
    wait_for("the worker to drain", lambda: "draining" in log_text(worker), 10)
    worker.popen.send_signal(signal.SIGTERM)
    wait_for("the worker to exit", lambda: worker.popen.poll() is not None, 20)
    s.procs.remove(worker)
    assert worker.popen.returncode == 0, log_text(worker)
    with open(os.path.join(s.ctrl, "stopped")) as f:
        assert f.read() == "set_weight 50\n"
    assert "waiting for commands to stop" in log_text(worker)
    os.unlink(os.path.join(s.ctrl, "hold-set_weight-50"))
    s.start_worker("deploy", 1, "worker-3")
    run = s.wait_run(run_id, timeout=40)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert attempts(run) == [(1, "handed_back"), (2, "succeeded")], attempts(run)


def analysis_entry(st, name):
    return next((a for a in (st or {}).get("analyses", []) if a["name"] == name), None)


def test_an_analysis_resumes_with_its_counts_and_measurements_after_its_worker_dies(analysed):
    """A step analysis that has recorded one failure (its failureLimit) when
    its worker is killed carries on, on the next attempt, from there: the
    next failure fails it and aborts the deployment (no fresh allowance),
    the measurement before the kill is still there, and the next one is
    taken an interval after it, not more than count in all."""
    s = analysed
    BAD, GOOD = 0.5, 0.01
    s.metric.answer(BAD)
    run_id = push(s, "a1")

    def one_failure():
        a = analysis_entry(rollout(s, run_id), "step 2")
        return a if a and a.get("failed") == 1 else None
    before = wait_for("the analysis' first failure saved", one_failure, 20)
    worker = next(p for p in s.procs if p.name == "worker-2")
    kill9(s, worker)
    # Killed between its first measurement and its second.
    assert s.metric.served == 1, before
    # A fresh allowance would tolerate the next failure and pass after it.
    s.metric.answer(BAD, GOOD)
    s.start_worker("deploy", 1, "worker-3")

    run = s.wait_run(run_id, timeout=25)
    stage = run["stages"][STAGE]
    assert [(a["attempt"], a["status"]) for a in stage["attempts"]] == [
        (1, "lost"), (2, "aborted")], stage
    a = analysis_entry(stage["rollout"], "step 2")
    assert a["verdict"] == "Failed", a
    assert (a["failed"], a["successful"]) == (2, 0), a
    ms = a["measurements"]
    assert [m["n"] for m in ms] == [1, 2], a
    assert ms[0] == before["measurements"][0], (before, a)
    # An interval after it, not at once: "at" is the wall clock, the
    # interval is timed on the monotonic one (a few ms apart).
    assert ms[1]["at"] >= ms[0]["at"] + ANALYSIS_INTERVAL_S * 1000 - 50, a
    assert s.metric.served == 2
    assert ("set_weight", "-", "50", "a1") not in actions(s)


def test_a_canary_that_reaches_its_pause_while_redis_is_away_parks_once_it_is_back(paused):
    """The canary comes to its pause while Redis is away: the park waits in
    the worker, after the saves before it, and is made once Redis is back.
    The attempt is not lost (no lease left to run out, no attempt 2), every
    step is told once, in order, and the canary goes on after its pause."""
    s = paused
    run_id, worker = redis_killed_in(s, "p1", "hold-set_weight-20", "setWeight 20")
    os.unlink(os.path.join(s.ctrl, "hold-set_weight-20"))
    wait_for("the park waiting for Redis",
             lambda: "park waits for the rollout's saves" in log_text(worker), 10)
    s.start_redis()
    run = s.wait_run(run_id, timeout=30)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert attempts(run) == [(1, "succeeded")], run["stages"][STAGE]
    assert [a[0] for a in actions(s)] == CANARY_ACTIONS
    assert_steps_told_once_in_order(s, run)


@pytest.mark.parametrize("read,patterns", [
    ("its saved state", (b"HMGET", b"rollback_image")),
    ("its environment's active colour", (b"HGET", b"active_color")),
])
def test_a_deployment_start_read_cut_off_is_read_again(proxied, read, patterns):
    """The deploy worker's connection to Redis is cut as it reads what its
    deployment starts from (read): the read is sent again once it is
    connected again, and the deployment goes on; it neither fails nor
    loses its attempt."""
    s = proxied
    s.proxy.arm(*patterns)
    run_id = push(s, "r1")
    run = s.wait_run(run_id, timeout=30)
    assert s.proxy.cuts == 1, read
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert attempts(run) == [(1, "succeeded")], run["stages"][STAGE]
    worker = next(p for p in s.procs if p.name == "worker-2")
    assert "deployment's state not read yet" in log_text(worker)
    assert [a[0] for a in actions(s)] == CANARY_ACTIONS


def test_a_park_cut_off_is_sent_again(proxied):
    """The deploy worker's connection to Redis is cut as it parks its
    canary at the pause (park.lua): the park is sent again, and the
    canary goes on after its pause with the same attempt rather than
    waiting for its lease to run out."""
    s = proxied
    park = hashlib.sha1(lua_script("park").encode()).hexdigest().encode()
    s.proxy.arm(b"EVALSHA", park)
    run_id = push(s, "q1")
    run = s.wait_run(run_id, timeout=30)
    assert s.proxy.cuts == 1
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert attempts(run) == [(1, "succeeded")], run["stages"][STAGE]
    worker = next(p for p in s.procs if p.name == "worker-2")
    assert "deployment not parked yet" in log_text(worker)
    assert [a[0] for a in actions(s)] == CANARY_ACTIONS
