"""Deployments with a strategy under faults: Redis away while a canary
ends on its worker.

The stack is the test's own (it kills its Redis): a build worker, a deploy
worker, and a canary whose every provider action appends "action colour
weight release" to ctrl/<pipeline>.log. An action waits while
ctrl/hold-<action>-<weight> exists (weight "-" for an action without one),
so that the test can catch the deployment in the middle of it.
"""

import json
import os
import signal

import pytest

from conftest import pipeline, started_stack, wait_for
from harness import Stack
from resp import Redis

P = "sluice:"
ENV = "production"
STAGE = "deploy@" + ENV

ACTION_SH = r'''
ctrl="%s"
w="${SLUICE_WEIGHT:--}"
while [ -e "$ctrl/hold-$SLUICE_ACTION-$w" ]; do sleep 0.02; done
echo "$SLUICE_ACTION ${SLUICE_COLOR:--} $w $SLUICE_IMAGE" >> "$ctrl/$SLUICE_PIPELINE.log"
'''


def fault_pipelines(repo, ctrl):
    d = pipeline("canary", "sluice-faults/canary", checkout=repo.url, stages={
        "build": {"sh": 'printf "image=%%s\\n" "$(cat "%s/image")" >> "$SLUICE_OUTPUT"' % ctrl,
                  "checkout": False}})
    d["environments"] = {ENV: {
        "image": "${build.image}",
        "provider": {"type": "exec", "timeout": "30s", "actions": {
            verb: {"sh": ACTION_SH % ctrl}
            for verb in ("apply", "verify", "set_weight", "promote", "scale_down")}},
        "strategy": {"type": "Canary", "steps": [{"setWeight": 20}, {"setWeight": 50}]}}}
    return {"canary.yaml": d}


class DurableRedisStack(Stack):
    """Redis writes every change to its append-only file before answering,
    so that a restart loses nothing acknowledged."""

    REDIS_PERSISTENCE = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]


@pytest.fixture
def faults(tmp_path):
    ctrl = str(tmp_path / "ctrl")
    os.makedirs(ctrl)
    # The lease outlasts the outage: the worker keeps its deployment.
    for s in started_stack("sluice-rollout-faults-",
                           lambda repo, root: fault_pipelines(repo, ctrl),
                           stack_class=DurableRedisStack, workers=(("build", 1), ("deploy", 1)),
                           extra_settings={"worker": {"lease": "10s"},
                                           "agent": {"scheduler_interval": "100ms"},
                                           "redis": {"timeout": "1s"}}):
        s.ctrl = ctrl
        yield s


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


def test_a_rollout_that_ends_while_redis_is_away_is_recorded_as_it_ended(faults):
    """The worker's saves of the rollout's state fail while Redis is away;
    the outcome, recorded once it is back, brings the state the rollout
    ended in, not that of a step before it."""
    s = faults
    gate = os.path.join(s.ctrl, "hold-scale_down--")
    open(gate, "w").close()
    run_id = push(s, "e1")

    def scaling_down():
        st = rollout(s, run_id)
        step = st and st["step"] < len(st["steps"]) and st["steps"][st["step"]]
        return step and step["name"] == "scale down the canary" and step["status"] == "active"
    wait_for("the canary's scale-down", scaling_down, 20)
    worker = next(p for p in s.procs if p.name == "worker-2")
    kill9(s, s.redis)
    os.unlink(gate)
    wait_for("the scale-down done", lambda: ("scale_down", "canary", "-", "e1") in actions(s), 10)
    wait_for("the outcome waiting for Redis",
             lambda: "outcome not recorded yet" in open(worker.log, errors="replace").read(), 10)
    s.start_redis()

    def ended():
        status, run = s.get("/api/v1/runs/" + run_id)
        return run if status == 200 and run["status"] != "running" else None
    run = wait_for("the run to end", ended, 20)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    st = run["stages"][STAGE]["rollout"]
    assert st["phase"] == "Healthy", st
    assert [x["status"] for x in st["steps"]] == ["done"] * len(st["steps"]), st["steps"]
    assert st["weights"] == {"stable": 100, "canary": 0}, st
    assert [a[0] for a in actions(s)] == ["apply", "verify", "set_weight", "set_weight",
                                          "promote", "verify", "set_weight", "scale_down"]
