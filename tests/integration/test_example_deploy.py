"""The example deployment's scripts (config/examples/mint-replica/) against
real servers: Debian's docker-registry holding images built by the
example's build-image.sh and pushed by its push-image.sh, the example's own
haproxy.cfg.in (health checks, the runtime API) on free ports, a Redis for
the caches, and the example's instance launcher.

The scripts run as sluice runs them: the argv of the pipeline file's
provider actions, hooks and checks, ${NAME} expanded from the environment's
vars, in the example directory (laid out as the example repository), with
SLUICE_ENV, SLUICE_IMAGE and SLUICE_COLOR, and a rolling update's apply
with SLUICE_MAX_SURGE and SLUICE_MAX_UNAVAILABLE. The weights and server states
that sluice's haproxy traffic provider sets are set here with the same
runtime API commands (stages/provider_haproxy.c).
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import yaml

from deploy_fixtures import Registry, get
from harness import BUILD, Proc, free_port, free_ports, redis_ping, wait_for

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(REPO_ROOT, "config", "examples", "mint-replica")
PIPELINE = os.path.join(EXAMPLE, "pipelines.d", "mint-replica.yaml")
HAPROXY_PY = os.path.join(EXAMPLE, "deploy", "haproxy.py")
LOCAL_PORT = re.compile(r"127\.0\.0\.1:(18\d\d\d)")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def run(argv, env=None, cwd=None, timeout=120):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def last_line(r):
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[-1] if lines else ""


class World:
    """The servers, the images v1 and v2, and the pipeline file."""

    def __init__(self, root):
        self.root = root
        self.state = os.path.join(root, "state")
        self.procs = []
        with open(PIPELINE) as f:
            self.pipeline = yaml.safe_load(f)
        # Every fixed port of the example gets a free one here.
        with open(os.path.join(EXAMPLE, "haproxy.cfg.in")) as f:
            cfg = f.read()
        fixed = sorted(set(LOCAL_PORT.findall(cfg)))
        *ports, self.cache_port = free_ports(len(fixed) + 1)
        self.ports = {p: str(port) for p, port in zip(fixed, ports)}
        self.admin = "127.0.0.1:" + self.ports["18099"]
        os.makedirs(os.path.join(self.state, "tls"))
        pem = os.path.join(self.state, "tls", "production.pem")
        r = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                 "-subj", "/CN=mint-replica.localhost", "-keyout", pem + ".key", "-out",
                 pem + ".crt"])
        assert r.returncode == 0, r.stderr
        with open(pem, "w") as out:
            for part in (pem + ".crt", pem + ".key"):
                with open(part) as f:
                    out.write(f.read())
        cfg = LOCAL_PORT.sub(lambda m: "127.0.0.1:" + self.ports[m.group(1)], cfg)
        cfg = cfg.replace("@STATE@", self.state)
        with open(os.path.join(root, "haproxy.cfg"), "w") as f:
            f.write(cfg)

        self.start("cache", ["redis-server", "--port", str(self.cache_port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no"])
        wait_for("the cache's redis", lambda: redis_ping(self.cache_port), 10, self.procs)
        self.start("haproxy", ["haproxy", "-db", "-f", os.path.join(root, "haproxy.cfg")])
        wait_for("haproxy's runtime API",
                 lambda: run(["python3", HAPROXY_PY, self.admin, "state", "production"])
                 .returncode == 0, 10, self.procs)
        self.start_launcher()
        self.registry = Registry(os.path.join(root, "registry"))
        self.images = {v: self.build_and_push(v) for v in ("v1", "v2")}

    def start(self, name, argv):
        p = Proc(name, argv, self.root, self.root).start()
        self.procs.append(p)
        return p

    def start_launcher(self):
        spool = os.path.join(self.state, "launcher")
        self.launcher = self.start("launcher", ["python3", os.path.join(
            EXAMPLE, "local", "launcher.py"), spool])
        wait_for("the launcher", lambda: os.path.exists(os.path.join(spool, "launcher.pid")),
                 10, self.procs)

    def build_and_push(self, version):
        """The image of the demo service at version, as ci/build.sh and
        ci/push.sh make it: its reference by digest."""
        src = os.path.join(self.root, "src-" + version)
        os.makedirs(src)
        shutil.copy(os.path.join(EXAMPLE, "app", "server.py"), src)
        with open(os.path.join(src, "VERSION"), "w") as f:
            f.write(version + "\n")
        oci = os.path.join(self.root, "oci")
        r = run([os.path.join(EXAMPLE, "app", "build-image.sh"), oci, version, src])
        assert r.returncode == 0, r.stderr
        output = os.path.join(self.root, "output-" + version)
        r = run([os.path.join(EXAMPLE, "app", "push-image.sh"), oci, version,
                 self.registry.host_port, "mint-replica/backend"],
                env=dict(os.environ, SLUICE_OUTPUT=output))
        assert r.returncode == 0, r.stderr
        with open(output) as f:
            return f.read().strip().split("=", 1)[1]

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        self.registry.stop()

    # --- the pipeline, as sluice reads it -----------------------------

    def vars(self, env, **extra):
        """The environment's variables: the pipeline's with the
        environment's over them, the example's ports mapped to this test's,
        and what sluice adds."""
        v = dict(self.pipeline.get("vars") or {})
        v.update(self.pipeline["environments"][env].get("vars") or {})
        v = {k: LOCAL_PORT.sub(lambda m: "127.0.0.1:" + self.ports.get(m.group(1), m.group(1)),
                               str(x)) for k, x in v.items()}
        v = {k: self.ports.get(x, x) if k.startswith("PORT_") else x for k, x in v.items()}
        db = {"development": 0, "staging": 1, "production": 2}[env]
        v.update(SLUICE_ENV=env, SLUICE_RUN_ID="r_test", SLUICE_SHA_SHORT="v2",
                 CACHE_URL="redis://127.0.0.1:%d/%d" % (self.cache_port, db),
                 REGISTRY=self.registry.host_port, MINT_STATE=self.state)
        v.update(extra)
        return v

    def command(self, argv, variables, cwd=EXAMPLE):
        argv = [VAR.sub(lambda m: variables.get(m.group(1), ""), a) for a in argv]
        # The example's fixed ports in arguments (a load balancer's URL).
        argv = [LOCAL_PORT.sub(lambda m: "127.0.0.1:" + self.ports.get(m.group(1), m.group(1)),
                               a) for a in argv]
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env.update(variables)
        return run(argv, env=env, cwd=cwd)

    def stage(self, name, checkout, **extra):
        """The CI stage name, run in checkout (a copy of the example: stages
        write dist/ there), with the pipeline's vars."""
        v = dict(self.pipeline.get("vars") or {}, REGISTRY=self.registry.host_port)
        v.update(extra)
        return self.command(self.pipeline["stages"][name]["run"], v, cwd=checkout)

    def action(self, env, verb, version, color=None, **more):
        """The provider's action verb of env, for the release version; more
        over the variables sluice sets."""
        spec = self.pipeline["environments"][env]["provider"]["actions"][verb]["run"]
        strategy = self.pipeline["environments"][env]["strategy"]
        extra = {"SLUICE_ACTION": verb, "SLUICE_IMAGE": self.images[version]}
        if color:
            extra["SLUICE_COLOR"] = color
        if verb == "apply" and strategy["type"] == "RollingUpdate":
            bounds = strategy.get("rollingUpdate", strategy)
            extra.update(SLUICE_MAX_SURGE=str(bounds.get("maxSurge", "25%")),
                         SLUICE_MAX_UNAVAILABLE=str(bounds.get("maxUnavailable", "25%")))
        extra.update(more)
        return self.command(spec, self.vars(env, **extra))

    def item(self, env, what, phase, name, rollback=False, **extra):
        """The hook or check named name of env."""
        items = self.pipeline["environments"][env][what][phase]
        spec = next(i for i in items if i["name"] == name)
        if rollback:
            spec = spec["rollback"]
        return self.command(spec["run"], self.vars(env, **extra))

    # --- what is running ------------------------------------------------

    def port(self, env, slot):
        return int(self.vars(env)["PORT_" + slot.upper()])

    def pid(self, env, slot):
        path = os.path.join(self.state, "slots", "%s-%s" % (env, slot), "pid")
        with open(path) as f:
            return int(f.read())

    def lb(self, *args):
        r = run(["python3", HAPROXY_PY, self.admin] + list(args))
        assert r.returncode == 0, r.stderr
        return r.stdout

    def frontend(self, env):
        return int(self.ports[{"development": "18100", "staging": "18200",
                               "production": "18300"}[env]])

    def traffic(self, env, n):
        """n requests through env's load balancer: {version: answers}."""
        seen = collections.Counter()
        for _ in range(n):
            status, headers, _ = get("http://127.0.0.1:%d/" % self.frontend(env))
            seen[(status, headers.get("x-demo-version"))] += 1
        return seen

    def wait_up(self, backend, server):
        self.lb("wait-up", backend, server, "20")

    def reset(self):
        """Nothing running, HAProxy as haproxy.cfg.in starts it."""
        for env, slots in (("development", "a b surge"), ("staging", "blue green"),
                           ("production", "stable canary")):
            r = self.command(["./deploy/stop.sh"] + slots.split(), self.vars(env))
            assert r.returncode == 0, r.stderr
        for server in ("a", "b", "surge"):
            self.lb("cmd", "set server development/%s state ready" % server)
        self.lb("cmd", "set server staging/blue state ready")
        self.lb("cmd", "set server staging/green state drain")
        self.lb("weight", "production", "stable=100", "canary=0")
        for env in ("development", "staging", "production"):
            run(["redis-cli", "-p", str(self.cache_port), "-n",
                 str({"development": 0, "staging": 1, "production": 2}[env]), "FLUSHDB"])


@pytest.fixture(scope="module")
def world():
    root = tempfile.mkdtemp(prefix="sluice-example-")
    w = None
    try:
        w = World(root)
        yield w
    finally:
        if w is not None:
            w.stop()
        if not os.environ.get("SLUICE_KEEP_TMP"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clean(world):
    world.reset()
    yield world
    world.reset()


def slot_processes(world, env, slot):
    """Processes running a release of the slot, found by command line."""
    mark = os.path.join(world.state, "slots", "%s-%s" % (env, slot), "releases") + "/"
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if mark in cmdline and "server.py" in cmdline:
            found.append(int(pid))
    return found


# --- one slot: apply, verify, stop ------------------------------------------

def test_apply_runs_the_image_from_the_registry_and_verify_confirms_it(clean):
    w = clean
    r = w.action("production", "apply", "v1")
    assert r.returncode == 0, r.stdout + r.stderr
    port = w.port("production", "canary")
    status, headers, body = get("http://127.0.0.1:%d/" % port)
    assert (status, body, headers["x-demo-track"]) == (200, "hello from v1\n", "canary")
    hexdigest = w.images["v1"].split("@sha256:")[1]
    assert os.path.isfile(os.path.join(w.state, "images", hexdigest, "index.json"))
    assert os.path.isfile(os.path.join(w.state, "slots", "production-canary", "releases",
                                       hexdigest, "rootfs", "app", "server.py"))
    assert slot_processes(w, "production", "canary") == [w.pid("production", "canary")]
    r = w.action("production", "verify", "v1", color="canary")
    assert r.returncode == 0, r.stdout + r.stderr
    assert last_line(r) == "verify.sh: production/canary ready: version v1 on port %d" % port


def test_apply_again_keeps_the_running_release_and_replaces_another(clean):
    w = clean
    assert w.action("production", "apply", "v1").returncode == 0
    pid = w.pid("production", "canary")
    r = w.action("production", "apply", "v1")
    assert r.returncode == 0, r.stderr
    assert "production/canary already runs v1" in r.stdout
    assert w.pid("production", "canary") == pid
    r = w.action("production", "apply", "v2")
    assert r.returncode == 0, r.stderr
    assert w.pid("production", "canary") != pid
    assert slot_processes(w, "production", "canary") == [w.pid("production", "canary")]
    assert get("http://127.0.0.1:%d/version" % w.port("production", "canary"))[2] == "v2"
    r = w.action("production", "verify", "v1", color="canary")
    assert r.returncode == 1
    assert last_line(r) == "verify.sh: production/canary runs sha256:%s, not sha256:%s" % (
        w.images["v2"].split("@sha256:")[1][:12], w.images["v1"].split("@sha256:")[1][:12])


def test_apply_after_a_crash_restarts_the_slot_cleanly(clean):
    w = clean
    assert w.action("production", "apply", "v1").returncode == 0
    slot = os.path.join(w.state, "slots", "production-canary")
    # The instance died, a half-made unpack is left, and the pid file is lost.
    os.kill(w.pid("production", "canary"), signal.SIGKILL)
    wait_for("the instance to be gone", lambda: not slot_processes(w, "production", "canary"),
             10)
    os.makedirs(os.path.join(slot, "releases", w.images["v2"].split("@sha256:")[1] + ".tmp"))
    r = w.action("production", "apply", "v1")
    assert r.returncode == 0, r.stderr
    assert get("http://127.0.0.1:%d/healthz" % w.port("production", "canary"))[2] == "ok"
    # An instance running without its pid file is found by its command line.
    orphan = w.pid("production", "canary")
    os.unlink(os.path.join(slot, "pid"))
    r = w.action("production", "apply", "v2")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for("the orphan to be stopped", lambda: not os.path.exists("/proc/%d" % orphan), 10)
    assert slot_processes(w, "production", "canary") == [w.pid("production", "canary")]
    assert w.action("production", "verify", "v2", color="canary").returncode == 0
    assert not os.path.exists(os.path.join(
        slot, "releases", w.images["v2"].split("@sha256:")[1] + ".tmp"))


def test_apply_refuses_a_port_held_by_another_process(clean):
    w = clean
    port = w.port("production", "canary")
    squatter = w.start("squatter", ["python3", "-m", "http.server", str(port),
                                    "--bind", "127.0.0.1"])
    try:
        wait_for("the squatter", lambda: not get_refused(port), 10, [squatter])
        r = w.action("production", "apply", "v1")
        assert r.returncode == 1
        assert last_line(r) == (
            "apply.sh: port %d of production/canary is held by another process" % port)
        r = w.item("production", "checks", "pre", "resource quotas")
        assert r.returncode == 1
        assert last_line(r) == (
            "capacity.sh: port %d of production/canary is held by another process" % port)
    finally:
        squatter.stop()
        w.procs.remove(squatter)


def test_verify_and_stop_of_a_slot_that_does_not_run(clean):
    w = clean
    r = w.action("production", "verify", "v1", color="canary")
    assert (r.returncode, last_line(r)) == (1, "verify.sh: production/canary is not running")
    assert w.action("production", "apply", "v1").returncode == 0
    pid = w.pid("production", "canary")
    r = w.action("production", "scale_down", "v1")
    assert r.returncode == 0, r.stderr
    assert last_line(r) == "stop.sh: stopped production/canary (pid %d)" % pid
    assert not slot_processes(w, "production", "canary")
    assert get_refused(w.port("production", "canary"))
    r = w.action("production", "scale_down", "v1")
    assert (r.returncode, last_line(r)) == (0, "stop.sh: production/canary is not running")


def get_refused(port):
    try:
        get("http://127.0.0.1:%d/" % port, timeout=2)
    except ConnectionRefusedError:
        return True
    return False


def test_apply_without_the_launcher_says_so(clean):
    w = clean
    w.launcher.stop()
    try:
        r = w.action("production", "apply", "v1")
        assert r.returncode == 1
        assert last_line(r).startswith(
            "apply.sh: the instance launcher is not running for %s " % w.state)
    finally:
        w.procs.remove(w.launcher)
        w.start_launcher()


# --- the three strategies ---------------------------------------------------

class Traffic:
    """Requests through a load balancer on a thread: (status, version) counts."""

    def __init__(self, port):
        self.port = port
        self.seen = collections.Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.send, daemon=True)
        self.thread.start()

    def send(self):
        while not self.stopping.is_set():
            try:
                status, headers, _ = get("http://127.0.0.1:%d/" % self.port, timeout=5)
                self.seen[(status, headers.get("x-demo-version"))] += 1
            except OSError as e:
                self.seen[("error", type(e).__name__)] += 1
            self.stopping.wait(0.01)

    def stop(self):
        self.stopping.set()
        self.thread.join()
        return self.seen


def rolling_update_under_load(w, **more):
    """Development's a and b on v1, then its rolling apply of v2 (with more
    over sluice's variables) while requests arrive: its result and what
    they got."""
    for slot in ("a", "b"):
        r = w.command(["./deploy/apply.sh", slot],
                      w.vars("development", SLUICE_IMAGE=w.images["v1"]))
        assert r.returncode == 0, r.stderr
    assert w.traffic("development", 10) == {(200, "v1"): 10}
    load = Traffic(w.frontend("development"))
    r = w.action("development", "apply", "v2", **more)
    seen = load.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    return r, seen


def test_rolling_update_replaces_every_instance_without_a_failed_request(clean):
    w = clean
    _, seen = rolling_update_under_load(w)
    # Every request answered 200, by v1 until v2 took over.
    assert set(seen) <= {(200, "v1"), (200, "v2")}, seen
    assert seen[(200, "v2")] > 0, seen
    assert not slot_processes(w, "development", "surge")
    assert w.action("development", "verify", "v2").returncode == 0
    assert w.traffic("development", 10) == {(200, "v2"): 10}
    state = w.lb("state", "development")
    assert re.search(r"^a +weight 100  up ", state, re.M), state
    assert re.search(r"^b +weight 100  up ", state, re.M), state


def test_rolling_update_with_maxsurge_0_replaces_the_slots_in_place(clean):
    w = clean
    r, seen = rolling_update_under_load(w, SLUICE_MAX_SURGE="0", SLUICE_MAX_UNAVAILABLE="1")
    # One slot at a time: the other answered meanwhile.
    assert set(seen) <= {(200, "v1"), (200, "v2")}, seen
    # Neither started nor stopped.
    assert "development/surge" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert w.action("development", "verify", "v2").returncode == 0
    assert w.traffic("development", 10) == {(200, "v2"): 10}


def test_blue_green_preview_then_switch_then_scale_down(clean):
    w = clean
    r = w.command(["./deploy/apply.sh", "blue"], w.vars("staging", SLUICE_IMAGE=w.images["v1"]))
    assert r.returncode == 0, r.stderr
    # The release on the idle colour: checked by HAProxy, served by it not.
    assert w.action("staging", "apply", "v2", color="green").returncode == 0
    assert w.action("staging", "verify", "v2", color="green").returncode == 0
    w.wait_up("staging", "green")
    assert w.traffic("staging", 10) == {(200, "v1"): 10}
    assert get("http://127.0.0.1:%d/version" % w.port("staging", "green"))[2] == "v2"
    # The switch, as the haproxy traffic provider makes it.
    w.lb("cmd", "set server staging/blue state drain")
    w.lb("cmd", "set server staging/green state ready")
    assert w.traffic("staging", 10) == {(200, "v2"): 10}
    r = w.action("staging", "scale_down", "v2", color="blue")
    assert r.returncode == 0, r.stderr
    assert not slot_processes(w, "staging", "blue")
    assert w.traffic("staging", 10) == {(200, "v2"): 10}


def test_canary_takes_its_weight_then_promote_moves_the_release_to_stable(clean):
    w = clean
    r = w.command(["./deploy/apply.sh", "stable"],
                  w.vars("production", SLUICE_IMAGE=w.images["v1"]))
    assert r.returncode == 0, r.stderr
    assert w.action("production", "apply", "v2").returncode == 0
    w.wait_up("production", "canary")
    assert w.traffic("production", 20) == {(200, "v1"): 20}
    # Weighted round robin: the canary's share of consecutive requests.
    w.lb("weight", "production", "canary=20", "stable=80")
    seen = w.traffic("production", 50)
    assert set(seen) == {(200, "v1"), (200, "v2")} and 9 <= seen[(200, "v2")] <= 11, seen
    w.lb("weight", "production", "canary=50", "stable=50")
    seen = w.traffic("production", 20)
    assert set(seen) == {(200, "v1"), (200, "v2")} and 9 <= seen[(200, "v2")] <= 11, seen
    stable_pid = w.pid("production", "stable")
    load = Traffic(w.frontend("production"))
    r = w.action("production", "promote", "v2")
    seen = load.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(seen) <= {(200, "v1"), (200, "v2")}, seen
    assert w.pid("production", "stable") != stable_pid
    assert w.action("production", "verify", "v2", color="stable").returncode == 0
    assert get("http://127.0.0.1:%d/version" % w.port("production", "stable"))[2] == "v2"
    state = w.lb("state", "production")
    assert re.search(r"^stable +weight 100  up ", state, re.M), state
    assert re.search(r"^canary +weight   0 ", state, re.M), state
    # Promote again (a worker that died after it): nothing changes.
    new_stable = w.pid("production", "stable")
    assert w.action("production", "promote", "v2").returncode == 0
    assert w.pid("production", "stable") == new_stable
    assert w.action("production", "scale_down", "v2").returncode == 0
    assert w.traffic("production", 20) == {(200, "v2"): 20}


# --- hooks and checks -------------------------------------------------------

def schema_version(w, env):
    r = run(["python3", os.path.join(EXAMPLE, "db", "schema.py"),
             os.path.join(w.state, "db", env + ".sqlite3"), os.path.join(EXAMPLE, "db",
                                                                       "migrations"), "version"])
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def test_db_migrate_and_its_rollback(clean):
    w = clean
    shutil.rmtree(os.path.join(w.state, "db"), ignore_errors=True)
    r = w.item("staging", "hooks", "pre", "db-migrate")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["applied 001_accounts", "applied 002_transactions",
                                     "staging.sqlite3: schema version 2"]
    # A second attempt of the same run keeps what it recorded first.
    r = w.item("staging", "hooks", "pre", "db-migrate")
    assert last_line(r) == "staging.sqlite3: schema version 2 (nothing to apply)"
    assert schema_version(w, "production") == 0
    r = w.item("staging", "hooks", "pre", "db-migrate", rollback=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["reverted 002_transactions", "reverted 001_accounts",
                                     "staging.sqlite3: schema version 0"]
    assert schema_version(w, "staging") == 0
    r = w.item("staging", "hooks", "pre", "db-migrate", rollback=True)
    assert (r.returncode, last_line(r)) == (
        0, "rollback.sh: staging: no migration recorded for run r_test: nothing to undo")


def test_cache_flush_empties_its_own_environment_only(clean):
    w = clean
    for db in (1, 2):
        for key in ("a", "b", "c"):
            run(["redis-cli", "-p", str(w.cache_port), "-n", str(db), "SET", key, "x"])
    r = w.item("production", "hooks", "post", "cache-flush")
    assert r.returncode == 0, r.stderr
    assert last_line(r) == (
        "cache-flush.sh: production: flushed 3 keys from redis://127.0.0.1:%d/2" % w.cache_port)
    sizes = [run(["redis-cli", "-p", str(w.cache_port), "-n", str(db), "DBSIZE"]).stdout.strip()
             for db in (1, 2)]
    assert sizes == ["3", "0"]


def test_smoke_check_wants_every_answer_from_the_new_release(clean):
    w = clean
    r = w.command(["./deploy/apply.sh", "stable"],
                  w.vars("production", SLUICE_IMAGE=w.images["v2"]))
    assert r.returncode == 0, r.stderr
    r = w.item("production", "checks", "post", "serves the new release")
    assert (r.returncode, last_line(r)) == (
        0, "smoke.sh: 20 of 20 requests to http://127.0.0.1:%d/ answered 200 by v2"
        % w.frontend("production"))
    r = w.command(["./deploy/apply.sh", "stable"],
                  w.vars("production", SLUICE_IMAGE=w.images["v1"]))
    assert r.returncode == 0, r.stderr
    r = w.item("production", "checks", "post", "serves the new release")
    assert (r.returncode, last_line(r)) == (
        1, "smoke.sh: request 1 of 20 to http://127.0.0.1:%d/: answered by v1, not v2"
        % w.frontend("production"))


def test_production_keeps_its_last_5_releases_in_the_registry(world, tmp_path):
    """Seven releases, each pushed by the push stage (tagged VERSION and
    latest) and then through production's post hooks (tagged prod-VERSION,
    then the registry's lifecycle policy): the last 5 production images stay
    with their tags, the older ones are deleted whole, VERSION tag and all,
    on a registry that cannot delete a tag alone. Images that never reached
    production (v1 and v2) stay."""
    w = world
    checkout = str(tmp_path / "checkout")
    shutil.copytree(EXAMPLE, checkout)
    base = int(time.time()) - 30 * 86400
    pushed = {}
    for n in range(1, 8):
        version = "r%d" % n
        r = w.stage("push", checkout, SLUICE_SHA_SHORT=version,
                    SOURCE_DATE_EPOCH=str(base + n * 86400))
        assert r.returncode == 0, r.stdout + r.stderr
        pushed[version] = next(line for line in r.stdout.splitlines()
                               if line.startswith("image=")).split("@", 1)[1]
        for hook in ("tag the release for production", "registry lifecycle"):
            r = w.item("production", "hooks", "post", hook, SLUICE_SHA_SHORT=version,
                       SLUICE_BIN=BUILD)
            assert r.returncode == 0, r.stdout + r.stderr
    assert "deleted 1 manifests and 0 tags alone" in r.stdout, r.stdout
    repo = w.registry.url + "/v2/" + w.pipeline["vars"]["IMAGE_REPO"]
    status, _, body = get(repo + "/tags/list")
    assert status == 200, body
    kept = ["r3", "r4", "r5", "r6", "r7"]
    assert sorted(json.loads(body)["tags"]) == sorted(
        ["latest", "v1", "v2"] + kept + ["prod-" + v for v in kept])
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert {v: get(repo + "/manifests/" + d, headers=accept)[0]
            for v, d in pushed.items()} == {
        "r1": 404, "r2": 404, "r3": 200, "r4": 200, "r5": 200, "r6": 200, "r7": 200}
    assert get(repo + "/manifests/latest", headers=accept)[2] == get(
        repo + "/manifests/" + pushed["r7"], headers=accept)[2]


def test_launcher_stops_its_instances_when_stopped(tmp_path):
    spool = str(tmp_path / "spool")
    launcher = Proc("launcher", ["python3", os.path.join(EXAMPLE, "local", "launcher.py"),
                                 spool], str(tmp_path), str(tmp_path)).start()
    try:
        wait_for("the launcher", lambda: os.path.exists(os.path.join(spool, "launcher.pid")), 10,
                 [launcher])
        port = free_port()
        pidfile = str(tmp_path / "pid")
        with open(os.path.join(spool, "one.req.tmp"), "w") as f:
            f.write("\n".join([pidfile, str(tmp_path / "one.log"), str(tmp_path), "python3",
                               os.path.join(EXAMPLE, "app", "server.py"), "--listen",
                               "127.0.0.1:%d" % port, "--version", "x"]) + "\n")
        os.rename(os.path.join(spool, "one.req.tmp"), os.path.join(spool, "one.req"))
        wait_for("the instance", lambda: os.path.exists(pidfile), 10, [launcher])
        with open(pidfile) as f:
            pid = int(f.read())
        wait_for("the instance to answer", lambda: not get_refused(port), 10, [launcher])
        assert not os.path.exists(os.path.join(spool, "one.req"))
        # Its own session: a stage's process group kill does not reach it.
        assert os.getsid(pid) == pid
        assert launcher.stop() == 0
        assert not os.path.exists("/proc/%d" % pid)
        assert not os.path.exists(os.path.join(spool, "launcher.pid"))
    finally:
        launcher.stop()


# --- the files agree --------------------------------------------------------

def test_ports_agree_between_pipeline_haproxy_prometheus_and_run_local():
    with open(PIPELINE) as f:
        pipeline = yaml.safe_load(f)
    with open(os.path.join(EXAMPLE, "haproxy.cfg.in")) as f:
        haproxy = f.read()
    with open(os.path.join(EXAMPLE, "prometheus.yml.in")) as f:
        prometheus = yaml.safe_load(f)
    with open(os.path.join(REPO_ROOT, "tools", "run-local.sh")) as f:
        run_local = f.read()
    # HAProxy: backend <env> has server <slot> at the port of PORT_<SLOT>.
    backends = {}
    for block in re.split(r"^backend ", haproxy, flags=re.M)[1:]:
        name = block.split()[0]
        backends[name] = dict(re.findall(r"server (\S+) 127\.0\.0\.1:(\d+)", block))
    targets = {}
    for job in prometheus["scrape_configs"]:
        for group in job["static_configs"]:
            if "env" in group["labels"]:
                targets[(group["labels"]["env"], group["labels"]["slot"])] = group["targets"]
    slots = {}
    for env, spec in pipeline["environments"].items():
        ports = {k[len("PORT_"):].lower(): v for k, v in spec["vars"].items()
                 if k.startswith("PORT_")}
        slots[env] = ports
        assert spec["vars"]["HAPROXY_BACKEND"] == env
        assert backends[env] == ports, env
        for slot, port in ports.items():
            assert targets.pop((env, slot)) == ["127.0.0.1:" + port]
            assert re.search(r"\bPORT_%s=%s\b" % (slot.upper(), port), run_local), slot
            assert port in run_local.split('ports="')[1].split('"')[0].split()
    assert targets == {}
    admin = pipeline["vars"]["HAPROXY_ADMIN"]
    assert "stats socket ipv4@%s level admin" % admin in haproxy
    assert "admin=%s\n" % admin in run_local
    for env in ("staging", "production"):
        assert pipeline["environments"][env]["traffic"]["socket"] == admin
        assert pipeline["environments"][env]["traffic"]["backend"] == env
    assert pipeline["vars"]["REGISTRY"] == run_local.split("\nregistry=")[1].split("\n")[0]
