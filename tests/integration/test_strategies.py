"""Deployment strategies end to end (stages/rollout.c on a worker): a canary
walking its weights on a real HAProxy and judged by a real Prometheus, a
bad version aborted by its analysis, noData, blue/green with its approval
and its switch back, a rolling update and its progress deadline, a rollback
to the previous release, a timed pause that parks, and an abort through
the API.

The workload is instances of the example deployment's demo service in
named slots (main-stable, main-canary, bg-blue, ...), each on a port of its
own for the whole module. The exec provider's commands are ctrl/slot.sh,
which asks the test's launcher (a thread here, standing in for the process
supervisor a real deployment has) to restart a slot with a release; a
release whose name ends in "-bad" answers every request to / with a 500.
A pipeline's build stage names the release (the file ctrl/images/<pipeline>
the test writes before each push) and the environment deploys
"${build.image}".
"""

import json
import os
import shutil
import tempfile
import threading
import time

import pytest

from conftest import free_port, http_request, pipeline, started_stack, wait_for
from deploy_fixtures import PYTHON, SERVER_PY, DemoService, HAProxy, Load, Prometheus, get
from kafkawire import envelopes
from resp import Redis

P = "sluice:"
ENV = "production"
STAGE = "deploy@" + ENV
# How a run with a deployment ends.
FINAL = ("succeeded", "failed", "aborted", "cancelled", "rejected", "superseded")
INTERVAL_MS = 1000  # of every analysis here

SLOT_SH = r"""#!/bin/sh
# slot.sh apply|verify SLOT: the release $SLUICE_IMAGE onto a slot of the
# demo service, or whether the slot serves it. Every call is logged.
set -eu
ctrl=$(cd "$(dirname "$0")" && pwd)
action=$1
slot=$2
image=${SLUICE_IMAGE:?no release}
echo "$action $slot $image" >> "$ctrl/actions.log"
case $action in
apply)
	printf '%s\n' "$image" > "$ctrl/requests/$slot.tmp"
	mv "$ctrl/requests/$slot.tmp" "$ctrl/requests/$slot"
	i=0
	while [ "$(cat "$ctrl/serving/$slot" 2>/dev/null)" != "$image" ]; do
		i=$((i + 1))
		[ $i -lt 400 ] || { echo "$slot did not start $image"; exit 1; }
		sleep 0.05
	done
	echo "$slot runs $image"
	;;
verify)
	port=$(cat "$ctrl/ports/$slot")
	got=$(curl -fsS "http://127.0.0.1:$port/version") || { echo "$slot does not answer"; exit 1; }
	[ "$got" = "$image" ] || { echo "$slot serves $got, not $image"; exit 1; }
	echo "$slot is ready with $image"
	;;
*)
	echo "unknown action $action"
	exit 2
	;;
esac
"""


class Instance(DemoService):
    """A demo service instance on a port the caller chose, so that a slot
    keeps its address (in HAProxy and Prometheus) from release to release."""

    def __init__(self, root, name, version, track, port, fail_rate):
        self.version = version
        self.track = track
        self.port = port
        self.address = "127.0.0.1:%d" % port
        self.url = "http://" + self.address
        argv = [PYTHON, SERVER_PY, "--listen", self.address, "--version", version,
                "--track", track]

        def up():
            try:
                return get(self.url + "/healthz", timeout=1)[0] == 200
            except OSError:
                return False
        self._start(root, "slot-" + name, argv, up, env={"DEMO_FAIL_RATE": repr(fail_rate)})


class Launcher:
    """The slots and a thread that carries out slot.sh's requests: a file
    requests/<slot> holding a release restarts the slot with it (unless it
    already runs it) and then writes serving/<slot>."""

    def __init__(self, root, ctrl):
        self.root = root
        self.ctrl = ctrl
        self.slots = {}
        self.lock = threading.Lock()
        for d in ("requests", "serving", "ports", "images", "markers"):
            os.makedirs(os.path.join(ctrl, d), exist_ok=True)
        self.script = os.path.join(ctrl, "slot.sh")
        with open(self.script, "w") as f:
            f.write(SLOT_SH)
        os.chmod(self.script, 0o755)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, name, track, version):
        port = free_port()
        self._start(name, track, version, port)
        with open(os.path.join(self.ctrl, "ports", name), "w") as f:
            f.write("%d\n" % port)
        return self.slots[name]

    def _start(self, name, track, version, port):
        rate = 1.0 if version.endswith("-bad") else 0.0
        inst = Instance(self.root, name, version, track, port, rate)
        with self.lock:
            self.slots[name] = inst
        with open(os.path.join(self.ctrl, "serving", name), "w") as f:
            f.write(version + "\n")

    def _run(self):
        reqdir = os.path.join(self.ctrl, "requests")
        while not self._stopping.wait(0.02):
            for name in os.listdir(reqdir):
                if name.endswith(".tmp") or name not in self.slots:
                    continue
                path = os.path.join(reqdir, name)
                with open(path) as f:
                    image = f.read().strip()
                os.unlink(path)
                old = self.slots[name]
                if old.version == image:
                    continue
                os.unlink(os.path.join(self.ctrl, "serving", name))
                old.stop()
                self._start(name, old.track, image, old.port)

    def actions(self):
        """slot.sh's calls so far: [(action, slot, image)]."""
        try:
            with open(os.path.join(self.ctrl, "actions.log")) as f:
                return [tuple(line.split()) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def stop(self):
        self._stopping.set()
        self._thread.join()
        with self.lock:
            for inst in self.slots.values():
                inst.stop()


def error_rate(*slots):
    """The share of 5xx answers of the releases the slots run now (the
    series of a release a slot no longer runs are left out through
    demo_build_info, which goes stale at once)."""
    sel = 'track=~"%s",instance=~"%s"' % ("|".join(sorted({s.track for s in slots})),
                                         "|".join(s.address for s in slots))
    now = 'and on(instance, version) demo_build_info{%s}' % sel
    return ('sum(rate(demo_requests_total{%s,code=~"5.."}[5s]) %s) / '
            'sum(rate(demo_requests_total{%s}[5s]) %s)' % (sel, now, sel, now))


def analysis(prom, query, **keys):
    return dict({"interval": "1s", "successCondition": "result[0] < 0.05",
                 "provider": {"prometheus": {"address": prom.url, "query": query,
                                             "timeout": "2s"}}}, **keys)


class World:
    """The servers of every test's deployments."""

    def __init__(self, root):
        self.root = root
        self.ctrl = os.path.join(root, "ctrl")
        self.started = []
        self.stack = None

    def start(self):
        root = self.root
        self.launcher = Launcher(root, self.ctrl)
        self.started.append(self.launcher)
        la = self.launcher
        self.main = {"stable": la.add("main-stable", "stable", "v1"),
                     "canary": la.add("main-canary", "canary", "v1")}
        self.quiet = {"stable": la.add("quiet-stable", "stable", "q0"),
                      "canary": la.add("quiet-canary", "canary", "q0")}
        self.bg = {"blue": la.add("bg-blue", "blue", "g0"),
                   "green": la.add("bg-green", "green", "g0")}
        self.checked = {"blue": la.add("ck-blue", "blue", "k0"),
                        "green": la.add("ck-green", "green", "k0")}
        la.add("roll", "stable", "r0")
        la.add("stuck", "stable", "s0")
        # The canary slots take no traffic until a rollout gives them some;
        # green is the idle colour.
        self.hx_main = self._start(HAProxy(
            os.path.join(root, "hx-main"),
            {"app-stable": self.main["stable"].port, "app-canary": self.main["canary"].port},
            init_weights={"app-canary": 0}))
        self.hx_quiet = self._start(HAProxy(
            os.path.join(root, "hx-quiet"),
            {"app-stable": self.quiet["stable"].port, "app-canary": self.quiet["canary"].port},
            init_weights={"app-canary": 0}))
        self.hx_bg = self._start(HAProxy(
            os.path.join(root, "hx-bg"),
            {"app-blue": self.bg["blue"].port, "app-green": self.bg["green"].port},
            init_states={"app-green": "maint"}))
        self.hx_checked = self._start(HAProxy(
            os.path.join(root, "hx-checked"),
            {"app-blue": self.checked["blue"].port, "app-green": self.checked["green"].port},
            init_states={"app-green": "maint"}))
        self.prom = self._start(Prometheus(os.path.join(root, "prometheus"), [
            s.address for s in (self.main["stable"], self.main["canary"],
                                self.quiet["canary"], self.bg["blue"], self.bg["green"])]))
        # Users of the main and blue/green services; nobody calls the quiet one.
        self._start(Load(self.hx_main.url + "/", interval=0.01))
        self._start(Load(self.hx_bg.url + "/", interval=0.01))
        # rate() over 5s needs two scrapes of each instance in the window.
        self.prom.wait_for_series("count(rate(demo_build_info[5s])) == %d"
                                  % len(self.prom.targets), timeout=30)

    def _start(self, server):
        self.started.append(server)
        return server

    def stop(self):
        for s in reversed(self.started):
            s.stop()

    def slot_version(self, name):
        return get(self.launcher.slots[name].url + "/version")[2]

    # --- the pipelines ---------------------------------------------------

    def traffic(self, hx, canary=None, colors=None):
        t = {"type": "haproxy", "socket": hx.socket, "backend": hx.backend, "timeout": "5s"}
        if canary:
            t.update(stable="app-stable", canary="app-canary")
        if colors:
            t["colors"] = {c: "app-" + c for c in colors}
        return t

    def exec_provider(self, apply_slot, verify_slot, **more):
        actions = {"apply": {"run": ["sh", self.launcher.script, "apply", apply_slot]},
                   "verify": {"run": ["sh", self.launcher.script, "verify", verify_slot]}}
        for verb, slot in more.items():
            actions[verb] = {"run": ["sh", self.launcher.script, "apply", slot]}
        return {"type": "exec", "actions": actions, "timeout": "30s"}

    def logging_provider(self, name):
        """An exec provider whose every action only appends "verb colour
        release" to ctrl/<name>.log."""
        return {"type": "exec", "timeout": "10s", "actions": {
            verb: {"sh": 'echo "%s $SLUICE_COLOR $SLUICE_IMAGE" >> "%s/%s.log"'
                         % (verb, self.ctrl, name)}
            for verb in ("apply", "verify", "switch", "scale_down")}}

    def canary_env(self, prefix, hx, steps, **more):
        env = {
            "image": "${build.image}",
            # The canary becomes stable: the stable slot gets the release.
            "provider": self.exec_provider(prefix + "-canary", prefix + "-${SLUICE_COLOR}",
                                           promote=prefix + "-stable"),
            "traffic": self.traffic(hx, canary=True),
            "strategy": {"type": "Canary", "steps": steps},
        }
        env.update(more)
        return env

    def environments(self):
        prom = self.prom
        marker = os.path.join(self.ctrl, "markers")
        migrate = {
            "name": "db-migrate",
            "run": ["sh", "-c", 'touch "%s/migrated-$SLUICE_IMAGE"' % marker],
            "rollback": {"run": ["sh", "-c", 'touch "%s/rolled-back-$SLUICE_IMAGE"' % marker]},
        }
        walk = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 50},
                {"pause": {"duration": "2s"}}, {"setWeight": 100}, {"pause": {"duration": "2s"}}]
        envs = {
            "canary": self.canary_env("main", self.hx_main, walk, hooks={"pre": [migrate]}),
            "parking": self.canary_env("quiet", self.hx_quiet, [
                {"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]),
            "aborting": self.canary_env("quiet", self.hx_quiet, [
                {"setWeight": 30}, {"pause": {}}, {"setWeight": 100}]),
            "cancelling": self.canary_env("quiet", self.hx_quiet, [
                {"setWeight": 30}, {"pause": {}}, {"setWeight": 100}]),
            "promoting": self.canary_env("quiet", self.hx_quiet, [
                {"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}},
                {"setWeight": 90}]),
            "bluegreen": {
                "image": "${build.image}",
                "provider": self.exec_provider("bg-${SLUICE_COLOR}", "bg-${SLUICE_COLOR}"),
                "traffic": self.traffic(self.hx_bg, colors=("blue", "green")),
                "strategy": {
                    "type": "BlueGreen", "activeService": "blue", "previewService": "green",
                    "autoPromote": False, "scaleDownDelay": "2s",
                    "postPromotionAnalysis": analysis(
                        prom, error_rate(self.bg["blue"], self.bg["green"]), count=3,
                        initialDelay="2s", failureCondition="result[0] >= 0.2",
                        inconclusiveLimit=1),
                },
            },
            # Blue/green whose provider only applies: HAProxy verifies and
            # scales down.
            "checked": {
                "image": "${build.image}",
                "provider": {"type": "exec", "timeout": "30s", "actions": {"apply": {
                    "run": ["sh", self.launcher.script, "apply", "ck-${SLUICE_COLOR}"]}}},
                "traffic": self.traffic(self.hx_checked, colors=("blue", "green")),
                "strategy": {"type": "BlueGreen", "activeService": "blue",
                             "previewService": "green", "autoPromote": True,
                             "progressDeadline": "10s"},
            },
            # Blue/green by commands alone, each logged to ctrl/hooked.log;
            # the post hook (after the switch) fails a release named
            # "*-badhook".
            "hooked": {
                "image": "${build.image}",
                "provider": self.logging_provider("hooked"),
                "strategy": {"type": "BlueGreen", "activeService": "blue",
                             "previewService": "green", "autoPromote": True,
                             "scaleDownDelay": "1s"},
                "hooks": {"post": [{"name": "flush cache",
                                    "sh": 'case "$SLUICE_IMAGE" in *-badhook) exit 1;; esac'}]},
            },
            # Blue/green by commands alone, each logged to ctrl/lingering.log,
            # with a scale-down delay long enough to send commands during it.
            "lingering": {
                "image": "${build.image}",
                "provider": self.logging_provider("lingering"),
                "strategy": {"type": "BlueGreen", "activeService": "blue",
                             "previewService": "green", "scaleDownDelay": "8s"},
            },
            "rolling": {
                "image": "${build.image}",
                "provider": self.exec_provider("roll", "roll"),
                "strategy": {"type": "RollingUpdate", "maxSurge": 1, "maxUnavailable": 0,
                             "progressDeadline": "10s"},
            },
            # The apply writes the bounds it was given to ctrl/bounds.
            "bounds": {
                "image": "${build.image}",
                "provider": {"type": "exec", "actions": {"apply": {"run": [
                    "sh", "-c", 'echo "$0 $SLUICE_MAX_SURGE $SLUICE_MAX_UNAVAILABLE" > "%s/bounds"'
                    % self.ctrl, "${SLUICE_MAX_SURGE}/${SLUICE_MAX_UNAVAILABLE}"]}}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}},
            },
            # A Kubernetes Deployment of the cluster the worker runs in
            # (no server): the agent that loads it runs in none, nor do
            # the workers here.
            "incluster": {
                "image": "${build.image}",
                "provider": {"type": "kubernetes", "deployment": "app", "container": "app"},
                "strategy": {"type": "RollingUpdate"},
                "hooks": {"pre": [migrate]},
            },
            "stuck": {
                "image": "${build.image}",
                "provider": {"type": "exec", "actions": {
                    "apply": {"run": ["sh", self.launcher.script, "apply", "stuck"]},
                    "verify": {"sh": "echo 'stuck is not ready yet'; exit 1"}}},
                "strategy": {"type": "RollingUpdate", "progressDeadline": "2s"},
            },
        }
        # The main canary is measured in the background from its first pause.
        envs["canary"]["strategy"]["analysis"] = analysis(
            prom, error_rate(self.main["canary"]), startingStep=1, initialDelay="2s",
            failureCondition="result[0] >= 0.2", inconclusiveLimit=2)
        # Nobody calls the quiet service: its background analysis has no
        # data, which is inconclusive, during its last step.
        envs["hesitant"] = self.canary_env("quiet", self.hx_quiet, [
            {"setWeight": 20}, {"pause": {"duration": "3s"}}])
        envs["hesitant"]["strategy"]["analysis"] = analysis(
            prom, error_rate(self.quiet["canary"]), count=1, startingStep=1,
            noData="inconclusive")
        for no_data in ("fail", "pass", "inconclusive"):
            envs["quiet-" + no_data] = self.canary_env("quiet", self.hx_quiet, [
                {"setWeight": 20},
                {"analysis": analysis(prom, error_rate(self.quiet["canary"]), count=2,
                                      noData=no_data)},
                {"setWeight": 100}])
        return envs

    def pipelines(self, repo, root):
        out = {}
        for name, env in self.environments().items():
            d = pipeline(name, "sluice-strategies/" + name, checkout=repo.url, stages={
                "build": {"sh": 'printf "image=%%s\\n" "$(cat "%s/images/$SLUICE_PIPELINE")" '
                                '>> "$SLUICE_OUTPUT"' % self.ctrl}})
            d["environments"] = {ENV: env}
            out[name + ".yaml"] = d
        return out


@pytest.fixture(scope="module")
def world():
    root = tempfile.mkdtemp(prefix="sluice-strategies-")
    w = World(root)
    try:
        w.start()
        for stack in started_stack("sluice-strategies-stack-", w.pipelines,
                                   workers=(("build,deploy", 6),),
                                   extra_settings={"agent": {"scheduler_interval": "100ms"}}):
            w.stack = stack
            yield w
    finally:
        w.stop()
        if not os.environ.get("SLUICE_KEEP_TMP"):
            shutil.rmtree(root, ignore_errors=True)


# --- helpers -----------------------------------------------------------------

def push(w, name, image):
    """A run of pipeline name that releases image; its id."""
    with open(os.path.join(w.ctrl, "images", name), "w") as f:
        f.write(image + "\n")
    status, body = w.stack.post_hook(
        "push", w.stack.push_payload("sluice-strategies/" + name))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def command(w, run_id, verb, body=None):
    status, parsed, _ = http_request(
        w.stack.agent_port, "POST", "/api/v1/runs/%s/environments/%s/%s" % (run_id, ENV, verb),
        json.dumps(body or {"by": "tester"}).encode(), {"Content-Type": "application/json"})
    return status, parsed


def state(run):
    """The rollout's state as the worker saved it with the stage, or None."""
    return run["stages"][STAGE].get("rollout")


def wait_run(w, run_id, check, what, timeout=30):
    def reached():
        run = w.stack.run(run_id)
        return run if check(run) else None
    try:
        return wait_for("run %s: %s" % (run_id, what), reached, timeout)
    except RuntimeError:
        raise AssertionError("%s not reached:\n%s" % (
            what, json.dumps(w.stack.run(run_id), indent=2))) from None


def wait_end(w, run_id, timeout=40):
    return wait_run(w, run_id, lambda r: r["status"] in FINAL, "the end", timeout)


def wait_stage(w, run_id, status, timeout=30):
    return wait_run(w, run_id, lambda r: r["stages"][STAGE]["status"] == status,
                    "deployment " + status, timeout)


def stage_hash(w, run_id):
    with Redis(w.stack.redis_port) as r:
        return r.hgetall("%srun:%s:stage:%s" % (P, run_id, STAGE))


def env_hash(w, name):
    with Redis(w.stack.redis_port) as r:
        return r.hgetall("%senv:%s:%s" % (P, name, ENV))


def lease_exists(w, run_id):
    with Redis(w.stack.redis_port) as r:
        return bool(r.call("EXISTS", "%slease:%s:%s" % (P, run_id, STAGE))) or \
            r.call("ZSCORE", P + "leases", "%s/%s" % (run_id, STAGE)) is not None


def current_step(st):
    if not st or st["step"] >= len(st["steps"]):
        return None
    return st["steps"][st["step"]]


def split(w):
    """HAProxy's weights of the canary and stable servers."""
    return {"canary": w["app-canary"], "stable": w["app-stable"]}


def measurements(st, name):
    entry = next((a for a in st["analyses"] if a["name"] == name), None)
    assert entry is not None, st["analyses"]
    return entry


def step_events(w, run_id):
    """The data of every deploy.step event of the run's deployment."""
    return [e["data"] for e in envelopes(w.stack.brokers, "sluice.events")
            if e["type"] == "dev.sluice.deploy.step" and e["data"].get("run") == run_id]


def assert_interrupted(w, run_id):
    """The steps in progress when the rollout was aborted ended "aborted",
    with the abort's reason, in the saved state and each in a deploy.step
    event; the names of those steps."""
    st = state(w.stack.run(run_id))
    assert not [s for s in st["steps"] if s["status"] == "active"], st["steps"]
    stopped = [(i, s) for i, s in enumerate(st["steps"]) if s["status"] == "aborted"]
    for _, s in stopped:
        assert s["message"] == "interrupted: " + st["message"], (s, st["message"])
        assert s["finished"] >= s["started"], s

    def closed():
        got = [(e["step"], e["name"], e["status"], e.get("message"))
               for e in step_events(w, run_id) if e["status"] == "aborted"]
        return got if len(got) == len(stopped) else None
    assert wait_for("the interrupted steps' events", closed, 10) == [
        (i, s["name"], "aborted", s["message"]) for i, s in stopped]
    return [s["name"] for _, s in stopped]


def assert_the_events_tell_each_step(w, run_id):
    """Every step that is no longer pending in the saved state was last
    published (deploy.step under its index) with its name and status."""
    steps = state(w.stack.run(run_id))["steps"]
    want = {i: (s["name"], s["status"]) for i, s in enumerate(steps) if s["status"] != "pending"}

    def told():
        last = {e["step"]: (e["name"], e["status"]) for e in step_events(w, run_id)}
        return last if all(last.get(i) == v for i, v in want.items()) else None
    try:
        wait_for("every step's last event", told, 10)
    except RuntimeError:
        raise AssertionError("%s\n%s" % (want, step_events(w, run_id))) from None


class Watch:
    """Polls HAProxy's weights on a thread: the first instant (epoch ms)
    at which check(weights) held."""

    def __init__(self, hx, check):
        self.at = None
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                if check(hx.weights()):
                    self.at = time.time() * 1000
                    return
                time.sleep(0.01)
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


# --- Canary ------------------------------------------------------------------

def test_a_good_canary_walks_20_50_100_and_haproxy_shows_each_weight(world):
    run_id = push(world, "canary", "v2")
    seen = []  # (step index, the state's weights, HAProxy's) while a pause holds a weight
    deadline = time.monotonic() + 45
    while True:
        run = world.stack.run(run_id)
        if run["status"] in FINAL:
            break
        st = state(run)
        step = current_step(st)
        if step and step["kind"] == "pause" and step["status"] == "active":
            hx = split(world.hx_main.weights())
            again = state(world.stack.run(run_id))
            # Only what held for both reads: the step did not move between them.
            if again and again["step"] == st["step"] and \
                    current_step(again)["status"] == "active":
                if not seen or seen[-1][0] != st["step"]:
                    seen.append((st["step"], st["weights"], hx))
        assert time.monotonic() < deadline, json.dumps(run, indent=2)
        time.sleep(0.05)

    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert [s[1]["canary"] for s in seen] == [20, 50, 100], seen
    for _, weights, hx in seen:
        assert weights["stable"] == 100 - weights["canary"], seen
        assert hx == weights, seen

    st = state(run)
    assert st["phase"] == "Healthy" and all(
        s["status"] in ("done", "skipped") for s in st["steps"]), st["steps"]
    names = [s["name"] for s in st["steps"]]
    assert names.index("setWeight 20") < names.index("setWeight 50") < names.index(
        "setWeight 100") < names.index("promote the canary to stable"), names
    # The release is stable now and takes all traffic; the canary none.
    assert world.slot_version("main-stable") == "v2"
    assert split(world.hx_main.weights()) == {"canary": 0, "stable": 100}
    assert set(world.hx_main.traffic(10, by="version")) == {"v2"}
    bg = measurements(st, "background")
    assert bg["verdict"] == "Successful", bg
    assert [m["values"] for m in bg["measurements"] if m["verdict"] == "Successful"], bg
    assert all(m["verdict"] != "Failed" for m in bg["measurements"]), bg
    env = env_hash(world, "canary")
    assert env["current"] == run_id and env["current_image"] == "v2", env


def test_a_bad_version_fails_analysis_and_is_rolled_back(world):
    marker = os.path.join(world.ctrl, "markers", "rolled-back-v3-bad")
    run_id = push(world, "canary", "v3-bad")
    wait_run(world, run_id, lambda r: (state(r) or {}).get("weights", {}).get("canary") == 20,
             "the canary at 20 %")
    # From now on: the first instant HAProxy gives the canary nothing.
    watch = Watch(world.hx_main, lambda w: w["app-canary"] == 0)
    try:
        run = wait_end(world, run_id)
    finally:
        watch.stop()

    assert run["status"] == "aborted", json.dumps(run, indent=2)
    assert run["environments"][ENV]["status"] == "aborted", run["environments"]
    stage = run["stages"][STAGE]
    assert stage["status"] == "aborted", stage
    st = state(run)
    bg = measurements(st, "background")
    assert bg["verdict"] == "Failed", bg
    failing = [m for m in bg["measurements"] if m["verdict"] == "Failed"]
    assert failing and failing[0]["values"] == [1.0], bg
    assert failing[0]["condition"] == "result[0] >= 0.2", failing
    # Traffic left the bad version within one analysis interval of the
    # measurement that failed it.
    assert watch.at is not None, "HAProxy still sends traffic to the canary"
    measured = failing[0]["at"] + failing[0]["ms"]
    assert 0 <= watch.at - measured <= INTERVAL_MS, (watch.at, failing[0])
    assert split(world.hx_main.weights()) == {"canary": 0, "stable": 100}
    assert set(world.hx_main.traffic(10, by="server")) == {"app-stable"}
    # The rollback of the pre hook ran.
    assert os.path.exists(os.path.join(world.ctrl, "markers", "migrated-v3-bad"))
    assert os.path.exists(marker), os.listdir(os.path.dirname(marker))
    assert [h["status"] for h in st["hooks"]["rollback"]] == ["passed"], st["hooks"]
    assert [(a["name"], a["status"]) for a in st["abort"]] == [
        ("all traffic back to stable", "done"), ("scale down the canary", "skipped"),
        ("rollback of the pre hooks", "done")], st["abort"]
    # Why, with the value measured and the threshold.
    for text in (stage["error"], st["message"]):
        assert "result[0] >= 0.2 holds for 1" in text, text
    view = run["environments"][ENV]["strategy"]["analysis"]
    assert {"metric": "background", "value": 1, "threshold": "result[0] >= 0.2",
            "status": "failed"}.items() <= view[0].items(), view
    # The stable release is the previous one still.
    assert env_hash(world, "canary")["current_image"] != "v3-bad"
    assert_interrupted(world, run_id)


@pytest.mark.parametrize("no_data", ["fail", "pass", "inconclusive"])
def test_a_canary_without_traffic_follows_no_data(world, no_data):
    name = "quiet-" + no_data
    image = "q-" + no_data
    run_id = push(world, name, image)
    if no_data == "inconclusive":
        run = wait_stage(world, run_id, "paused")
        st = state(run)
        step = current_step(st)
        assert step["kind"] == "pause" and step.get("inconclusive") is True, step
        assert st["pause"] == "manual" and st["phase"] == "Paused", st
        assert "noData is inconclusive" in step["message"], step
        assert "promote" in run["environments"][ENV]["actions"], run["environments"][ENV]
        status, body = command(world, run_id, "promote")
        assert status == 202, body
    run = wait_end(world, run_id)
    st = state(run)
    entry = next(a for a in st["analyses"] if a["name"].startswith("step"))
    ms = entry["measurements"]
    assert ms and all(m["verdict"] != "Error" for m in ms), entry
    assert "noData is %s" % no_data in ms[0]["message"], ms[0]
    if no_data == "fail":
        assert run["status"] == "aborted", json.dumps(run, indent=2)
        assert entry["verdict"] == "Failed", entry
        assert "noData is fail" in run["stages"][STAGE]["error"], run["stages"][STAGE]
        assert split(world.hx_quiet.weights()) == {"canary": 0, "stable": 100}
    else:
        assert run["status"] == "succeeded", json.dumps(run, indent=2)
        assert entry["verdict"] == ("Successful" if no_data == "pass" else "Inconclusive"), entry
        assert world.slot_version("quiet-stable") == image


def test_an_inconclusive_background_analysis_waits_for_promote_before_the_promotion(world):
    run_id = push(world, "hesitant", "h-new")
    run = wait_stage(world, run_id, "paused")
    st = state(run)
    step = current_step(st)
    assert step["name"] == "inconclusive: waiting for promote", st["steps"]
    assert st["pause"] == "manual", st
    assert measurements(st, "background")["verdict"] == "Inconclusive", st["analyses"]
    assert world.slot_version("quiet-stable") != "h-new"
    status, body = command(world, run_id, "promote")
    assert status == 202, body
    run = wait_end(world, run_id)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert world.slot_version("quiet-stable") == "h-new"


def test_a_timed_pause_parks_and_resumes_on_its_own(world):
    run_id = push(world, "parking", "p1")
    run = wait_stage(world, run_id, "paused")
    st = state(run)
    step = current_step(st)
    assert step["name"] == "pause 2 s" and step["status"] == "active", step
    assert st["pause"] == "timed" and st["phase"] == "Paused", st
    until = st["paused_until"]
    # Parked: no worker and no lease, a resumption waiting in the delayed set.
    h = stage_hash(world, run_id)
    assert h["status"] == "paused" and "worker" not in h, h
    assert not lease_exists(world, run_id)
    with Redis(world.stack.redis_port) as r:
        assert r.call("ZSCORE", P + "delayed", h["resume_entry"]) is not None, h
    assert split(world.hx_quiet.weights()) == {"canary": 50, "stable": 50}

    run = wait_end(world, run_id)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    pause = next(s for s in state(run)["steps"] if s["name"] == "pause 2 s")
    assert pause["status"] == "done" and pause["finished"] >= until, (pause, until)
    assert world.slot_version("quiet-stable") == "p1"
    attempts = run["stages"][STAGE]["attempts"]
    assert [a["status"] for a in attempts] == ["succeeded"], attempts


def test_abort_through_the_api_during_a_pause_sends_traffic_back_to_stable(world):
    run_id = push(world, "aborting", "a1-new")
    run = wait_stage(world, run_id, "paused")
    assert state(run)["pause"] == "manual", state(run)
    assert split(world.hx_quiet.weights()) == {"canary": 30, "stable": 70}
    assert "a1-new" in world.hx_quiet.traffic(20, by="version"), "the canary takes no traffic"

    status, body = command(world, run_id, "abort", {"by": "oncall", "reason": "pager"})
    assert status == 202, body
    run = wait_end(world, run_id)
    assert run["status"] == "aborted", json.dumps(run, indent=2)
    assert run["stages"][STAGE]["status"] == "aborted", run["stages"][STAGE]
    assert split(world.hx_quiet.weights()) == {"canary": 0, "stable": 100}
    assert set(world.hx_quiet.traffic(20, by="server")) == {"app-stable"}
    assert "aborted by oncall" in state(run)["message"], state(run)
    assert assert_interrupted(world, run_id) == ["pause until promoted"]


def test_cancelling_the_run_during_a_pause_sends_traffic_back_to_stable(world):
    """A cancelled run's parked rollout is queued again with the command
    abort (cancel.lua; stage.queued says so), and a worker aborts it:
    traffic goes back to stable rather than staying split. The deployment ends aborted by the command,
    or cancelled when the worker saw the run cancelled first (both abort)."""
    run_id = push(world, "cancelling", "c1-new")
    run = wait_stage(world, run_id, "paused")
    assert split(world.hx_quiet.weights()) == {"canary": 30, "stable": 70}

    status, body, _ = http_request(world.stack.agent_port, "POST",
                                   "/api/v1/runs/%s/cancel" % run_id, b"{}",
                                   {"Content-Type": "application/json"})
    assert status == 202, body
    run = wait_run(world, run_id,
                   lambda r: r["stages"][STAGE]["status"] in ("aborted", "cancelled"),
                   "the deployment aborted")
    assert run["status"] == "cancelled", json.dumps(run, indent=2)
    assert run["stages"][STAGE]["error"] in ("aborted by cancel",
                                            "the run was cancelled"), run
    assert split(world.hx_quiet.weights()) == {"canary": 0, "stable": 100}
    assert set(world.hx_quiet.traffic(20, by="server")) == {"app-stable"}
    # The job published for the abort is announced as any other.

    def deploy_events():
        got = [(e["type"][len("dev.sluice."):], e["data"].get("command"))
               for e in envelopes(world.stack.brokers, "sluice.events")
               if e["data"].get("run") == run_id and e["data"].get("stage") == STAGE]
        return got if ("stage.finished", None) in got else None
    deploy = wait_for("the deployment's events", deploy_events, 10)
    after = deploy[deploy.index(("deploy.paused", None)) + 1:]
    assert after[:2] == [("stage.queued", "abort"), ("stage.started", None)], deploy
    assert assert_interrupted(world, run_id) == ["pause until promoted"]


def test_a_full_promotion_at_a_pause_publishes_each_step_it_skips(world):
    run_id = push(world, "promoting", "f1-new")
    wait_stage(world, run_id, "paused")
    status, body = command(world, run_id, "promote", {"by": "tester", "full": True})
    assert status == 202, body
    run = wait_end(world, run_id)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    steps = state(run)["steps"]
    # (The final scale-down is skipped too: the exec provider has none.)
    skipped = [(s["name"], s.get("message")) for s in steps
               if s["status"] == "skipped" and not s.get("final")]
    assert skipped == [("pause until promoted", "full promotion by tester"),
                       ("setWeight 60", "full promotion by tester"),
                       ("pause until promoted", "full promotion by tester"),
                       ("setWeight 90", "full promotion by tester")], steps
    assert_the_events_tell_each_step(world, run_id)
    assert world.slot_version("quiet-stable") == "f1-new"


# --- BlueGreen ---------------------------------------------------------------

def blue_green_run(w, image, live, idle):
    """A blue/green run up to its switch: the preview waits for promote."""
    run_id = push(w, "bluegreen", image)
    run = wait_stage(w, run_id, "paused")
    st = state(run)
    assert st["pause"] == "manual" and current_step(st)["name"] == "wait for promote", st
    assert st["color"] == idle and st["weights"] == {live: 100, idle: 0}, st
    # The preview runs the release and gets no traffic.
    assert w.slot_version("bg-" + idle) == image
    states = w.hx_bg.states()
    assert states["app-" + live] == "ready" and states["app-" + idle] != "ready", states
    assert set(w.hx_bg.traffic(10, by="server")) == {"app-" + live}

    status, body = command(w, run_id, "promote")
    assert status == 202, body
    try:
        wait_for("HAProxy to switch to " + idle,
                 lambda: w.hx_bg.states() == {"app-" + idle: "ready", "app-" + live: "drain"}, 15)
    except RuntimeError:
        raise AssertionError("%s\n%s" % (w.hx_bg.states(), json.dumps(w.stack.run(run_id), indent=2)))
    return run_id


def test_blue_green_waits_for_approval_switches_and_switches_back_on_failure(world):
    good = blue_green_run(world, "g1", "blue", "green")
    run = wait_end(world, good)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    post = measurements(state(run), "postPromotion")
    assert post["verdict"] == "Successful", post
    # After the scale-down delay the old colour is retired.
    assert world.hx_bg.states() == {"app-green": "ready", "app-blue": "maint"}
    assert set(world.hx_bg.traffic(10, by="version")) == {"g1"}
    assert env_hash(world, "bluegreen")["active_color"] == "green"

    bad = blue_green_run(world, "b1-bad", "green", "blue")
    run = wait_end(world, bad)
    assert run["status"] == "aborted", json.dumps(run, indent=2)
    st = state(run)
    post = measurements(st, "postPromotion")
    assert post["verdict"] == "Failed", post
    assert "analysis (postPromotion) Failed" in st["message"], st["message"]
    assert [(a["name"], a["status"]) for a in st["abort"]] == [
        ("switch traffic back to green", "done"), ("scale down blue", "done")], st["abort"]
    assert "result[0] >= 0.2 holds for" in run["stages"][STAGE]["error"], run["stages"][STAGE]
    assert world.hx_bg.states() == {"app-green": "ready", "app-blue": "maint"}
    assert set(world.hx_bg.traffic(10, by="version")) == {"g1"}
    env = env_hash(world, "bluegreen")
    assert env["active_color"] == "green" and env["current"] == good, env


def test_blue_green_verified_by_haproxy_drains_its_preview_out_of_maintenance(world):
    """With a provider that only applies, HAProxy verifies the preview and
    scales the old colour down (maintenance). The next release's preview
    is that colour: its verify drains it, which HAProxy health-checks and
    sends no new traffic, and the switch readies it."""
    for image, live, idle in (("k1", "blue", "green"), ("k2", "green", "blue")):
        assert world.hx_checked.states()["app-" + idle] == "maint"
        run = wait_end(world, push(world, "checked", image))
        assert run["status"] == "succeeded", json.dumps(run, indent=2)
        verify = next(s for s in state(run)["steps"]
                      if s["name"] == "wait until %s is ready" % idle)
        assert verify["preview"] is True and verify["message"].startswith(
            "verify done: app:"), verify
        assert world.hx_checked.states() == {"app-" + idle: "ready", "app-" + live: "maint"}
        assert set(world.hx_checked.traffic(10, by="version")) == {image}


def logged_actions(w, name):
    """(verb, colour, release) of each action of a pipeline whose provider
    is World.logging_provider(name)."""
    with open(os.path.join(w.ctrl, name + ".log")) as f:
        return [tuple(line.split()) for line in f if line.strip()]


def test_blue_green_failing_past_its_switch_leaves_its_colour_live(world):
    """A blue/green deployment whose post hook fails after the switch, past
    the point of no return (no switch back), fails with its release live:
    the environment records it current and its colour active, so the next
    deployment goes to the other colour and scales this one down."""
    first = push(world, "hooked", "h1-badhook")
    run = wait_end(world, first)
    assert run["status"] == "failed", json.dumps(run, indent=2)
    assert [a for a in logged_actions(world, "hooked") if a[0] == "switch"] == [
        ("switch", "green", "h1-badhook")]
    env = env_hash(world, "hooked")
    assert (env["active_color"], env["current"], env["current_image"]) == (
        "green", first, "h1-badhook"), env

    done = len(logged_actions(world, "hooked"))
    second = push(world, "hooked", "h2")
    run = wait_end(world, second)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert logged_actions(world, "hooked")[done:] == [
        ("apply", "blue", "h2"), ("verify", "blue", "h2"), ("switch", "blue", "h2"),
        ("scale_down", "green", "h2")]
    env = env_hash(world, "hooked")
    assert (env["active_color"], env["current"], env["previous"], env["previous_image"]) == (
        "blue", second, first, "h1-badhook"), env


def test_blue_green_scale_down_delay_runs_its_course(world):
    """After its switch a blue/green rollout waits its scale-down delay so
    that requests to the old colour finish: there is nothing to promote
    then (refused through the API and sluicectl, not offered), and an abort,
    past the point of no return, is ignored. Neither cuts the delay short."""
    run_id = push(world, "lingering", "l1")
    wait_stage(world, run_id, "paused")
    status, body = command(world, run_id, "promote")
    assert status == 202, body

    def in_delay(run):
        return run["stages"][STAGE]["status"] == "paused" and (
            current_step(state(run)) or {}).get("name") == "scale-down delay"
    run = wait_run(world, run_id, in_delay, "the scale-down delay")
    until = state(run)["paused_until"]
    env = run["environments"][ENV]
    assert (env["actions"], env["strategy"]["status"]) == (["abort"], "Progressing"), env
    status, body = command(world, run_id, "promote")
    assert status == 409 and body["error"]["code"] == "not_paused", body
    assert "waits its scale-down delay" in body["error"]["message"], body
    r = world.stack.ctl("promote", run_id, ENV, "--full")
    assert r.returncode == 1 and "nothing to promote" in r.stderr, r

    status, body = command(world, run_id, "abort")
    assert status == 202, body
    wait_for("the abort ignored", lambda: [
        line for line in world.stack.log(run_id, STAGE)
        if line["line"] == "not aborted (aborted by tester): past the point of no return"], 10)
    run = wait_run(world, run_id, in_delay, "the scale-down delay, resumed")
    env = run["environments"][ENV]
    assert (env["actions"], env["strategy"]["status"]) == (["abort"], "Progressing"), env

    run = wait_end(world, run_id)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    delay = next(s for s in state(run)["steps"] if s["name"] == "scale-down delay")
    assert delay["message"] == "pause over" and delay["finished"] >= until, delay
    assert logged_actions(world, "lingering") == [
        ("apply", "green", "l1"), ("verify", "green", "l1"), ("switch", "green", "l1"),
        ("scale_down", "blue", "l1")]


# --- RollingUpdate -----------------------------------------------------------

def test_a_rolling_update_completes(world):
    run_id = push(world, "rolling", "r1")
    run = wait_end(world, run_id)
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    assert [s["name"] for s in state(run)["steps"]] == ["apply the new version",
                                                       "wait until ready"]
    assert world.slot_version("roll") == "r1"
    assert ("apply", "roll", "r1") in world.launcher.actions()
    assert ("verify", "roll", "r1") in world.launcher.actions()


def test_a_rolling_updates_apply_has_its_bounds(world):
    run = wait_end(world, push(world, "bounds", "b1"))
    assert run["status"] == "succeeded", json.dumps(run, indent=2)
    with open(os.path.join(world.ctrl, "bounds")) as f:
        assert f.read() == "50%/0 50% 0\n"


def test_a_rolling_update_past_its_progress_deadline_fails(world):
    run_id = push(world, "stuck", "s1")
    run = wait_end(world, run_id)
    assert run["status"] == "failed", json.dumps(run, indent=2)
    stage = run["stages"][STAGE]
    assert stage["status"] == "failed", stage
    assert stage["error"].startswith("progress deadline of 2 s exceeded: "), stage
    assert stage["error"].endswith("stuck is not ready yet"), stage
    verify = next(s for s in state(run)["steps"] if s["name"] == "wait until ready")
    assert verify["status"] == "failed", verify
    assert 2000 <= verify["finished"] - verify["started"] < 4000, verify


def test_a_kubernetes_provider_of_the_workers_cluster_fails_outside_one_before_anything(world):
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        pytest.skip("the workers run in a cluster")
    run_id = push(world, "incluster", "k1")
    run = wait_end(world, run_id)
    assert run["status"] == "failed", json.dumps(run, indent=2)
    stage = run["stages"][STAGE]
    assert stage["status"] == "failed", stage
    assert stage["error"] == ("provider.server: required outside a cluster "
                              "(KUBERNETES_SERVICE_HOST is not set)"), stage
    assert not os.path.exists(os.path.join(world.ctrl, "markers", "migrated-k1"))


def test_rollback_restores_the_previous_release(world):
    first = push(world, "rolling", "r2")
    assert wait_end(world, first)["status"] == "succeeded"
    second = push(world, "rolling", "r3")
    assert wait_end(world, second)["status"] == "succeeded"
    assert world.slot_version("roll") == "r3"
    env = env_hash(world, "rolling")
    assert (env["current"], env["previous"], env["previous_image"]) == (second, first, "r2"), env
    applied = len(world.launcher.actions())

    status, body = command(world, second, "rollback", {"by": "oncall"})
    assert status == 202, body
    assert body["rollback"] == {"run": first, "image": "r2"}, body
    run = wait_run(world, second, lambda r: r["environments"][ENV]["status"] == "rolled_back"
                   and r["status"] in FINAL, "rolled back")
    assert run["stages"][STAGE]["status"] == "rolled_back", run["stages"][STAGE]
    env = env_hash(world, "rolling")
    assert env["current"] == first and env["current_image"] == "r2", env
    assert world.launcher.actions()[applied:][0] == ("apply", "roll", "r2")
    assert world.slot_version("roll") == "r2"
