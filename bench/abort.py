"""make bench: abort → traffic restored, measured at HAProxy.

One stack over loopback (redis-server, sluice-devbroker, sluice-agent, one
sluice-worker for build and deploy), a real HAProxy in front of two demo
service instances (config/examples/mint-replica/app/server.py): stable, and
a canary that answers every request with a 500. Each run's deployment is a
Canary whose first step gives the canary 50 % of the traffic, then waits for
a person (pause: {}); an exec provider whose actions do nothing (the
instances are already up) and HAProxy's runtime API as the traffic provider.

1. analysis: RUNS runs whose canary is measured in the background every
   second by a real Prometheus (error rate of the canary > 0.2 fails), with
   users sending requests through HAProxy all along. From the end of the
   failing measurement (its `at` + `ms` in the rollout's analysis) to the
   moment HAProxy's canary weight is 0, polled on its runtime socket.
2. operator: RUNS runs aborted through the API (POST .../abort) while
   paused at 50 %: from the request to HAProxy's canary weight 0.

Writes the "Abort" section of bench/results.md (benchlib.main).
"""

import json
import os
import sys
import threading
import time

import benchlib
from benchlib import BenchError, machine, machine_line, ms, print_machine, push, table, verdict

import harness  # noqa: E402 (benchlib puts tests/ on the path)
from deploy_fixtures import DemoService, HAProxy, Load, Prometheus  # noqa: E402

RUNS = 5
TARGET_S = 1.0
POLL_S = 0.002
STEP_TIMEOUT = 60


class WeightWatch:
    """Polls HAProxy's canary weight in a thread; when() gives the wall
    time it was first seen at 0 after `since`."""

    def __init__(self, hx, server="app-canary"):
        self.hx = hx
        self.server = server
        self.samples = []  # (wall time, weight), only changes
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        last = None
        while not self.stopping.is_set():
            try:
                w = self.hx.weights().get(self.server)
            except OSError:
                w = None
            now = time.time()
            if w != last:
                self.samples.append((now, w))
                last = w
            time.sleep(POLL_S)

    def current(self):
        return self.samples[-1][1] if self.samples else None

    def zero_after(self, since):
        for at, w in self.samples:
            if at >= since and w == 0:
                return at
        return None

    def stop(self):
        self.stopping.set()
        self.thread.join()


def wait(what, check, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise BenchError("%s: not after %d s" % (what, timeout))
        time.sleep(0.01)


def pipelines(repo, hx, prom, canary):
    query = ('sum(rate(demo_requests_total{instance="%s",code=~"5.."}[5s])) / '
             'sum(rate(demo_requests_total{instance="%s"}[5s]))' % (canary.address,
                                                                   canary.address))
    out = {}
    for name, background in (("measured", True), ("operated", False)):
        p = harness.pipeline(name, "sluice-bench/" + name, checkout=repo.url, stages={
            "build": {"sh": 'echo "image=app:$SLUICE_SHA_SHORT" >> "$SLUICE_OUTPUT"',
                      "checkout": False}})
        strategy = {"type": "Canary", "steps": [{"setWeight": 50}, {"pause": {}}]}
        if background:
            strategy["analysis"] = {
                # Until the canary's first scrapes with traffic, the rate is
                # 0/0: no data, tolerated a few times.
                "interval": "1s", "initialDelay": "1s", "failureCondition": "result[0] > 0.2",
                "inconclusiveLimit": 10,
                "provider": {"prometheus": {"address": prom.url, "query": query,
                                            "timeout": "2s"}}}
        p["environments"] = {"production": {
            "image": "${build.image}",
            "provider": {"type": "exec", "actions": {"apply": {"run": ["true"]},
                                                     "promote": {"run": ["true"]}}},
            "traffic": {"type": "haproxy", "socket": hx.socket, "backend": hx.backend,
                        "stable": "app-stable", "canary": "app-canary"},
            "strategy": strategy}}
        out[name + ".yaml"] = p
    return out


def rollout(stack, run_id):
    return (stack.run(run_id)["stages"].get("deploy@production") or {}).get("rollout") or {}


def failing_measurement_end(state):
    for a in state.get("analyses", []):
        if a.get("name") == "background":
            for m in reversed(a.get("measurements", [])):
                if m.get("verdict") == "Failed":
                    return (m["at"] + m["ms"]) / 1000.0
    return None


def bench(root):
    info = machine()
    print_machine(info)
    stable = DemoService(os.path.join(root, "stable"), "v1", track="stable", fail_rate=0.0)
    canary = DemoService(os.path.join(root, "canary"), "v2", track="canary", fail_rate=1.0)
    hx = HAProxy(os.path.join(root, "haproxy"),
                 {"app-stable": stable.port, "app-canary": canary.port},
                 init_weights={"app-canary": 0})
    prom = Prometheus(os.path.join(root, "prometheus"), [stable.address, canary.address])
    load = Load(hx.url + "/", interval=0.005)
    prom.wait_for_series('demo_build_info{instance="%s"}' % canary.address, timeout=30)
    servers = [load, prom, hx, canary, stable]
    repo = harness.LocalRepo(os.path.join(root, "repo"))
    stack = harness.Stack(root, repo, pipelines(repo, hx, prom, canary),
                          workers=(("build,deploy", 2),),
                          extra_settings=benchlib.stack_settings({"agent": {"scheduler_interval": "100ms"}}),
                          log_level="info")
    watch = None

    def body():
        nonlocal watch
        watch = WeightWatch(hx)
        measured, operated = [], []
        for i in range(RUNS):
            for name, results in (("measured", measured), ("operated", operated)):
                run_id, _, _ = push(stack, json.dumps(stack.push_payload(
                    "sluice-bench/" + name)).encode())
                wait("run %s: canary at 50 %%" % run_id, lambda: watch.current() == 50)
                if name == "operated":
                    wait("run %s: paused" % run_id,
                         lambda: rollout(stack, run_id).get("phase") == "Paused")
                    sent = time.time()
                    status, reply, _ = harness.http_request(
                        stack.agent_port, "POST",
                        "/api/v1/runs/%s/environments/production/abort" % run_id,
                        body=json.dumps({"reason": "bench"}).encode(),
                        headers={"Content-Type": "application/json"})
                    if status != 202:
                        raise BenchError("abort answered %s %s" % (status, reply))
                    zero = wait("run %s: canary at 0" % run_id,
                                lambda: watch.zero_after(sent))
                    results.append(zero - sent)
                else:
                    wait("run %s: aborted by its analysis" % run_id,
                         lambda: rollout(stack, run_id).get("phase") == "Aborted")
                    end = failing_measurement_end(rollout(stack, run_id))
                    if end is None:
                        raise BenchError("run %s: no failed measurement: %s" % (
                            run_id, json.dumps(rollout(stack, run_id))[:2000]))
                    zero = wait("run %s: canary at 0" % run_id, lambda: watch.zero_after(end))
                    results.append(zero - end)
                run = wait("run %s ended" % run_id, lambda: (
                    stack.run(run_id) if stack.run(run_id)["status"] in harness.TERMINAL
                    else None))
                if run["status"] != "aborted":
                    raise BenchError("run %s ended %s, not aborted" % (run_id, run["status"]))
                # The next run starts from a canary without traffic.
                wait("canary weight 0", lambda: watch.current() == 0)
                print("%s run %d: %s" % (name, i + 1, ms(results[-1])), flush=True)
        return measured, operated

    try:
        measured, operated = benchlib.run_stack(stack, body)
    finally:
        if watch:
            watch.stop()
        for s in servers:
            s.stop()
    rows = []
    for label, values in (("failing measurement → canary weight 0", measured),
                          ("POST abort → canary weight 0", operated)):
        worst = max(values)
        rows.append([label, ms(sorted(values)[len(values) // 2]), ms(worst),
                     "< %s: %s" % (ms(TARGET_S), verdict(worst < TARGET_S))])
    lines = [
        "## Abort",
        "",
        machine_line(info),
        "",
    ] + table(["from → to (measured at HAProxy)", "median", "worst of %d" % RUNS, "target"],
              rows) + [
        "",
        "How each figure is taken: HAProxy's runtime socket is polled every %d ms for the "
        "canary server's weight (`show servers state`) while a canary is at 50 %% and a load "
        "generator sends requests through HAProxy; the canary answers every request with a "
        "500. Failing measurement: the background analysis (interval 1 s, a real Prometheus "
        "scraping both instances every second, `failureCondition: result[0] > 0.2`) records "
        "when each measurement started (`at`) and how long it took (`ms`); the figure runs "
        "from its end to the first poll that sees weight 0. Operator: from sending `POST "
        "/api/v1/runs/{id}/environments/production/abort` to the first poll that sees weight "
        "0, while the rollout is parked at its open pause (the job is queued again and a "
        "worker takes it up)." % (POLL_S * 1e3),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(benchlib.main(__doc__, bench))
