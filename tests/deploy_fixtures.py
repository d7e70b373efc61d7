"""The servers of a deployment, real and on loopback, for tests and
benchmarks: the example deployment's demo service, HAProxy in front of its
instances, Prometheus scraping them, and a Docker registry.

Each class starts its process in the constructor, on free loopback ports,
with its files and its log (<root>/<name>.log) under the directory root
(created when missing), and returns once the server answers; a server that
does not start raises RuntimeError with the tail of its log. stop() stops
the process (idempotent) and returns its exit status; a `with` block calls
it. Standard library only; tests/ must be on sys.path (harness.py).

    DemoService(root, version, track="stable", fail_rate=None, script=SERVER_PY)
        config/examples/mint-replica/app/server.py (or script, e.g. from an
        unpacked image) as one instance; fail_rate goes in $DEMO_FAIL_RATE,
        None leaves it to the script's fail-rate file (none: 0).
        .port .url .address ("127.0.0.1:PORT")
    HAProxy(root, servers, backend="app", init_weights=None, init_states=None)
        servers {name: port or "host:port"} in one roundrobin backend behind one
        frontend; every server weighs 100 and is ready unless init_weights
        {name: 0..256} or init_states {name: "ready"|"drain"|"maint"} say
        otherwise.
        Answers carry the server's name in X-Served-By.
        .port .url (the frontend) .socket (runtime API, level admin) .backend
        .command(line) -> reply; .weights() -> {server: weight};
        .states() -> {server: "ready"|"drain"|"maint"} (from "show servers state");
        .traffic(n, by="server"|"version") -> {server or version: requests},
        n requests one after another; those HAProxy answered itself (no server
        available) count under None.
    Prometheus(root, targets, scrape_interval="1s")
        Debian's prometheus scraping targets ["host:port", ...] as job "demo",
        rules evaluated as often.  .url; .query(expr) -> the result list of an
        instant query; .wait_for_series(expr, timeout=30) -> that list once it is
        not empty; .set_targets(targets) reloads the configuration with others.
    Registry(root)
        Debian's docker-registry (storage in root, deletes enabled).  .url .host_port
    Load(url, interval=0.01)
        a thread sending GET url until stop(), to give Prometheus something to
        measure.  .counts {status: requests}
    get(url, timeout=5) -> (status, {header: value}, body text)
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.parse

from harness import Proc, free_port, wait_for

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SERVER_PY = os.path.join(REPO_ROOT, "config", "examples", "mint-replica", "app", "server.py")
PYTHON = "python3"

# HAProxy's SRV_ADMF_* bits in srv_admin_state: any maintenance, any drain.
# SRV_ADMF_CMAINT (0x04, "disabled" in the configuration) stays set once such
# a server is made ready: it is not maintenance.
_ADMIN_MAINT = 0x23
_ADMIN_DRAIN = 0x18
_STATES = ("ready", "drain", "maint")


def get(url, timeout=5, headers=None):
    """One GET on a fresh connection: (status, {lowercase header: value}, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", (u.path or "/") + ("?" + u.query if u.query else ""),
                     headers=dict(headers or {}, Connection="close"))
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def _answers(url, status=200):
    try:
        return get(url, timeout=1)[0] == status
    except OSError:
        return False


class _Proc(Proc):
    """harness.Proc with the child's environment changed: env's variables
    set, or removed where their value is None."""

    def __init__(self, name, argv, logdir, cwd, env):
        super().__init__(name, argv, logdir, cwd)
        self.env = dict(os.environ, **env)
        for k, v in env.items():
            if v is None:
                self.env.pop(k, None)

    def start(self):
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.cwd, env=self.env, start_new_session=True)
        return self


class _Server:
    """A process of one of the servers above, and its context manager."""

    proc = None

    def _start(self, root, name, argv, ready, timeout=30, env=None):
        os.makedirs(root, exist_ok=True)
        self.root = root
        self.proc = _Proc(name, argv, root, root, env or {})
        self.proc.start()
        try:
            wait_for("%s to answer" % name, ready, timeout, procs=[self.proc])
        except BaseException:
            self.stop()
            raise

    def stop(self):
        return self.proc.stop() if self.proc is not None else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class DemoService(_Server):
    def __init__(self, root, version, track="stable", fail_rate=None, script=SERVER_PY):
        self.version = version
        self.track = track
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.url = "http://%s" % self.address
        argv = [PYTHON, script, "--listen", self.address, "--version", version,
                "--track", track]
        rate = None if fail_rate is None else repr(float(fail_rate))
        self._start(root, "demo-%s-%d" % (track, self.port), argv,
                    lambda: _answers(self.url + "/healthz"), env={"DEMO_FAIL_RATE": rate})


class HAProxy(_Server):
    def __init__(self, root, servers, backend="app", init_weights=None, init_states=None):
        init_weights = init_weights or {}
        init_states = init_states or {}
        unknown = (set(init_weights) | set(init_states)) - set(servers)
        if unknown:
            raise ValueError("not among the servers: %s" % ", ".join(sorted(unknown)))
        for name, state in init_states.items():
            if state not in _STATES:
                raise ValueError("%s: state %r is not one of %s" % (name, state, _STATES))
        os.makedirs(root, exist_ok=True)
        self.backend = backend
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        # A unix socket's path has room for about 100 bytes.
        self._sockdir = None
        self.socket = os.path.join(root, "haproxy.sock")
        if len(self.socket) > 100:
            self._sockdir = tempfile.mkdtemp(prefix="sluice-haproxy-")
            self.socket = os.path.join(self._sockdir, "admin.sock")
        lines = [
            "global",
            "  stats socket %s level admin" % self.socket,
            "defaults",
            "  mode http",
            "  timeout connect 2s",
            "  timeout client 10s",
            "  timeout server 10s",
            "frontend %s_in" % backend,
            "  bind 127.0.0.1:%d" % self.port,
            "  default_backend %s" % backend,
            "backend %s" % backend,
            "  balance roundrobin",
            "  http-response set-header X-Served-By %s",
        ]
        for name, where in servers.items():
            addr = where if isinstance(where, str) else "127.0.0.1:%d" % where
            lines.append("  server %s %s weight %d%s" % (
                name, addr, init_weights.get(name, 100),
                " disabled" if init_states.get(name) == "maint" else ""))
        cfg = os.path.join(root, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._start(root, "haproxy", ["haproxy", "-db", "-f", cfg], self._api_up)
        for name, state in init_states.items():
            if state == "drain":
                self.command("set server %s/%s state drain" % (backend, name))

    def _api_up(self):
        try:
            return "srv_admin_state" in self.command("show servers state")
        except OSError:
            return False

    def command(self, line):
        """One runtime API command; HAProxy's reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    return b"".join(chunks).decode("utf-8", "replace")
                chunks.append(data)

    def _servers_state(self):
        lines = self.command("show servers state %s" % self.backend).splitlines()
        names = next((l[1:].split() for l in lines if l.startswith("# be_id")), None)
        if names is None:
            raise RuntimeError("not a server state dump: %r" % lines[:3])
        rows = {}
        for line in lines:
            fields = line.split()
            # The dump opens with its format version, a line of one field.
            if not line.startswith("#") and len(fields) == len(names):
                row = dict(zip(names, fields))
                rows[row["srv_name"]] = row
        return rows

    def weights(self):
        return {name: int(r["srv_uweight"]) for name, r in self._servers_state().items()}

    def states(self):
        out = {}
        for name, r in self._servers_state().items():
            admin = int(r["srv_admin_state"])
            out[name] = ("maint" if admin & _ADMIN_MAINT
                         else "drain" if admin & _ADMIN_DRAIN else "ready")
        return out

    def traffic(self, n, by="server"):
        if by not in ("server", "version"):
            raise ValueError("by: expected server or version")
        counts = {}
        for _ in range(n):
            status, headers, _body = get(self.url + "/")
            key = headers.get("x-served-by" if by == "server" else "x-demo-version")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self):
        status = super().stop()
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        return status


class Prometheus(_Server):
    def __init__(self, root, targets, scrape_interval="1s"):
        os.makedirs(root, exist_ok=True)
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.config = os.path.join(root, "prometheus.yml")
        self._write_config(targets)
        argv = ["prometheus", "--config.file=" + self.config,
                "--storage.tsdb.path=" + os.path.join(root, "prometheus-data"),
                "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"]
        self._start(root, "prometheus", argv, lambda: _answers(self.url + "/-/ready"))

    def _write_config(self, targets):
        self.targets = list(targets)
        # JSON is YAML: no quoting rules to get wrong.
        config = {
            "global": {"scrape_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{"job_name": "demo",
                                "static_configs": [{"targets": self.targets}]}],
        }
        with open(self.config + ".tmp", "w") as f:
            json.dump(config, f, indent=2)
        os.replace(self.config + ".tmp", self.config)

    def set_targets(self, targets):
        """Scrapes targets from now on (SIGHUP reloads the configuration);
        returns once Prometheus lists exactly those."""
        self._write_config(targets)
        self.proc.popen.send_signal(signal.SIGHUP)

        def listed():
            status, _, body = get(self.url + "/api/v1/targets?state=active")
            active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
            return sorted(t["labels"]["instance"] for t in active) == sorted(self.targets)
        wait_for("prometheus to scrape %s" % self.targets, listed, 15, procs=[self.proc])

    def query(self, expr):
        status, _, body = get(self.url + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError("query %r: HTTP %d: %s" % (expr, status, body))
        return answer["data"]["result"]

    def wait_for_series(self, expr, timeout=30):
        return wait_for("prometheus to have %s" % expr, lambda: self.query(expr), timeout,
                        procs=[self.proc])


class Registry(_Server):
    def __init__(self, root):
        os.makedirs(root, exist_ok=True)
        self.port = free_port()
        self.host_port = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host_port
        cfg = os.path.join(root, "registry.yml")
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": os.path.join(root, "registry-data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host_port},
        }
        with open(cfg, "w") as f:
            json.dump(config, f, indent=2)
        self._start(root, "registry", ["docker-registry", "serve", cfg],
                    lambda: _answers(self.url + "/v2/"))


class Load:
    """Requests to url, one after another with interval seconds between them,
    on a thread of its own until stop()."""

    def __init__(self, url, interval=0.01):
        self.url = url
        self.interval = interval
        self.counts = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stopping.is_set():
            try:
                status = get(self.url, timeout=2)[0]
            except OSError:
                status = None
            self.counts[status] = self.counts.get(status, 0) + 1
            self._stopping.wait(self.interval)

    def stop(self):
        self._stopping.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
