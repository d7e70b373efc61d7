"""A real sluice stack on loopback for tests and benchmarks: redis-server,
sluice-devbroker, sluice-agent and sluice-worker on free ports in one
temporary directory, a local git repository for pipelines to build, and
helpers that talk to the agent exactly as GitHub and sluicectl do.

The binaries are taken from $SLUICE_BUILD (default: build/ of this checkout),
the GitHub payload fixtures from $SLUICE_FIXTURES (default:
../shared/fixtures/github beside this checkout). Stack.stop() stops every
process the stack started. Standard library only.

$SLUICE_WRAP (e.g. "valgrind --log-file=DIR/%p.log") is put in front of the
command line of every sluice-agent, sluice-worker and sluice-devbroker
started; $SLUICE_TIME_SCALE (default 1) multiplies the harness's waits, for
binaries that run that much slower under such a wrapper. Neither changes
what the product is configured with.
"""

import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

from resp import Redis, RedisError

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.abspath(os.environ.get("SLUICE_BUILD") or os.path.join(REPO_ROOT, "build"))
FIXTURES = os.path.abspath(
    os.environ.get("SLUICE_FIXTURES")
    or os.path.join(REPO_ROOT, "..", "shared", "fixtures", "github")
)

# rejected and superseded end runs that were promoted to environments;
# aborted those whose deployment strategy aborted.
TERMINAL = ("succeeded", "failed", "cancelled", "rejected", "superseded", "aborted")
RUN_STATUSES = ("queued", "running", "waiting") + TERMINAL
STAGE_STATUSES = (
    "pending", "queued", "running", "succeeded", "failed", "timed_out",
    "cancelled", "skipped", "lost", "retrying", "paused", "aborted", "rolled_back",
)
# How an attempt in a stage's "attempts" ended; handed_back (a stopping
# worker gave it back) is never a stage's status.
ATTEMPT_STATUSES = ("succeeded", "failed", "timed_out", "cancelled", "lost", "handed_back")
HOOK_ID = "421337001"
USER_AGENT = "GitHub-Hookshot/5b4a2c1"

WRAP = shlex.split(os.environ.get("SLUICE_WRAP", ""))
WRAPPED = ("sluice-agent", "sluice-worker", "sluice-devbroker")
TIME_SCALE = float(os.environ.get("SLUICE_TIME_SCALE") or 1)


def scaled(seconds):
    """A wait of the harness, stretched by $SLUICE_TIME_SCALE."""
    return seconds * TIME_SCALE


# Every stack started and not yet stopped, for failure reports.
STACKS = []


def free_port():
    """A loopback TCP port that nobody listens on right now."""
    return free_ports(1)[0]


# Every port handed out: one given to a server not yet listening must not be
# given again, which the kernel, seeing it free, may well do.
_GIVEN_PORTS = set()

# Test processes running side by side (pytest -n) take ports of their own
# kind, by the port's number halved (the kernel hands out odd ports to
# bind() first), so that none is given one another has handed out.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _ours(port):
    return (port >> 1) % _WORKERS == _WORKER


def free_ports(n):
    """n distinct loopback TCP ports that nobody listens on right now and
    that this process has not handed out before."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if _ours(port) and port not in _GIVEN_PORTS:
                _GIVEN_PORTS.add(port)
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(no log: %s)" % e
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:]) if text else "(empty)"


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s not found in %s: build first (make), or set SLUICE_BUILD"
                           % (name, BUILD))
    return path


def built_with_asan(name):
    """Whether the binary name was built with AddressSanitizer, whose
    allocator holds freed blocks back (and so keeps a process's memory)."""
    with open(binary(name), "rb") as f:
        return b"__asan_init" in f.read()


def rss_is_its_own(name):
    """Whether the RSS of a process of binary name measures what it holds:
    not under $SLUICE_WRAP (valgrind's own memory counts in it) nor built
    with ASan."""
    return not WRAP and not built_with_asan(name)


class Proc:
    """One child process; stdout and stderr both go to <dir>/<name>.log."""

    def __init__(self, name, argv, logdir, cwd):
        self.name = name
        wrap = WRAP if os.path.basename(argv[0]) in WRAPPED else []
        self.argv = wrap + list(argv)
        self.log = os.path.join(logdir, name + ".log")
        self.cwd = cwd
        self.popen = None
        self.exit_code = None

    def start(self):
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.cwd, start_new_session=True,
            )
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace=10.0):
        """SIGTERM, wait up to grace seconds, then SIGKILL; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(scaled(grace))
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.exit_code = self.popen.returncode
        return self.exit_code

    def describe(self):
        state = "running" if self.alive() else "exited with %s" % (
            self.popen.returncode if self.popen else "never started")
        return "--- %s (%s), %s ---\n%s" % (self.name, state, self.log, tail(self.log))


def wait_for(what, check, timeout, procs=()):
    """Polls check() until it returns a true value; fails early when one of
    procs has exited, naming it and showing its log."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for p in procs:
            if not p.alive():
                raise RuntimeError("%s: %s exited with %s\n%s" % (
                    what, p.name, p.popen.returncode, p.describe()))
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %ss waiting for %s\n%s" % (
                timeout, what, "\n".join(p.describe() for p in procs)))
        time.sleep(0.05)


def log_text(proc):
    with open(proc.log) as f:
        return f.read()


def hup_and_wait(proc, marker):
    """Sends SIGHUP and waits for a new log line containing marker."""
    before = log_text(proc).count(marker)
    proc.popen.send_signal(signal.SIGHUP)
    wait_for("%s to log %r" % (proc.name, marker),
             lambda: log_text(proc).count(marker) > before, 10, [proc])
    return log_text(proc)


def limits(pid):
    """(soft, hard) limit of open files of process pid."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open files limit for %d" % pid)


def pid_gone(pid):
    """Dead, or a zombie waiting for whoever reaps it."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# --- the Lua scripts, as the binaries embed them -----------------------------



def lua_script(name):
    """queue/scripts/NAME.lua as the build embeds it (tools/embed-lua.sh):
    the text of the C string in BUILD/gen/lua/NAME.c, which holds the
    files of lib/ the script calls ahead of its own lines."""
    with open(os.path.join(BUILD, "gen", "lua", name + ".c")) as f:
        c = f.read()
    start = c.index("[] =\n") + len("[] =\n")
    text = ""
    for line in c[start:c.index("\n;\n", start)].split("\n"):
        # Each line is "...\n" with \\ and \" escaped, nothing else.
        text += re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1),
                       line[1:-1])
    return text


def outbox_messages(r, prefix, stream="outbox"):
    """(topic, value) of each message in an outbox stream, oldest first:
    "outbox" (jobs, results) or "outbox:events" (lib/events.lua). An entry
    may hold several messages: topic, key, value repeated."""
    out = []
    for _, fields in r.call("XRANGE", prefix + stream, "-", "+"):
        topic = None
        for k, v in zip(fields[::2], fields[1::2]):
            if k == b"topic":
                topic = v.decode()
            elif k == b"value":
                out.append((topic, v.decode()))
    return out


def redis_ping(port, password=None, user=None):
    """Whether the redis-server on port answers PING (after AUTH with
    password, as user when given)."""
    try:
        with Redis(port, timeout=1, password=password, user=user) as r:
            return r.call("PING") == b"PONG"
    except (OSError, RedisError):
        return False


class RedisMonitor:
    """A MONITOR connection to the redis-server on port: every command any
    client sends, one line each, as Redis runs it."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        first = self.sock.recv(65536)
        if not first.startswith(b"+OK\r\n"):
            self.sock.close()
            raise RuntimeError("MONITOR answered %r" % first[:64])
        self.seen = first[len(b"+OK\r\n"):]

    def lines(self, linger):
        """Every line so far, after reading for linger seconds more: MONITOR
        never falls silent (the agent's timers call Redis), so it is read
        for a while after what the caller waited for."""
        until = time.monotonic() + linger
        self.sock.settimeout(0.1)
        while time.monotonic() < until:
            try:
                self.seen += self.sock.recv(65536)
            except socket.timeout:
                pass
        return self.seen.decode("utf-8", "replace").splitlines()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the local git repository ---------------------------------------------

GIT_ENV = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0")


def git(repo, *args):
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", repo] + list(args),
        env=GIT_ENV, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def git_ref_ok(name):
    return subprocess.run(["git", "check-ref-format", "--branch", name], env=GIT_ENV,
                          capture_output=True).returncode == 0


class LocalRepo:
    """A repository with three commits on main:
    first  - content.txt "content of the first commit", test.sh
    second - content.txt "content of the second commit", adds only-in-second.txt
    third  - content.txt "content of the third commit", removes only-in-second.txt (HEAD)
    """

    def __init__(self, path):
        self.path = path
        os.makedirs(path)
        git(path, "init", "-q", "-b", "main")
        # Like GitHub, serve any commit reachable from a ref, not only tips.
        git(path, "config", "uploadpack.allowReachableSHA1InWant", "true")
        self._write("test.sh", "#!/bin/sh\nset -e\ntest -f content.txt\n"
                    "echo \"tests pass for $SLUICE_SHA_SHORT\"\n", mode=0o755)
        self.first = self.commit("first", {"content.txt": "content of the first commit\n"})
        self.second = self.commit("second", {
            "content.txt": "content of the second commit\n",
            "only-in-second.txt": "only the second commit has this file\n"})
        os.unlink(os.path.join(path, "only-in-second.txt"))
        self.third = self.commit("third", {"content.txt": "content of the third commit\n"})
        self.head = self.third
        self.url = "file://" + path

    def _write(self, name, text, mode=0o644):
        p = os.path.join(self.path, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def commit(self, message, files):
        for name, text in files.items():
            self._write(name, text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def branch(self, name, at=None):
        git(self.path, "branch", name, at or self.head)
        return git(self.path, "rev-parse", "refs/heads/" + name)


# --- configuration files ---------------------------------------------------

def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def merge_settings(base, extra):
    """sluice.yaml settings: base with each section of extra merged into its
    own (a new dict; neither argument changes)."""
    settings = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in (extra or {}).items():
        settings.setdefault(k, {}).update(v)
    return settings


def to_yaml(value, indent=0):
    """Block-style YAML for nested dicts; lists of scalars in flow style."""
    pad = "  " * indent
    out = []
    for k, v in value.items():
        if isinstance(v, dict):
            out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
        elif isinstance(v, list):
            out.append("%s%s: [%s]\n" % (pad, k, ", ".join(_yaml_scalar(x) for x in v)))
        else:
            out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
    return "".join(out)


# --- HTTP ------------------------------------------------------------------

def trickle(socks, every):
    """Sends a byte to each of socks every `every` seconds, from a thread,
    until the event returned is set (slow clients)."""
    stop = threading.Event()

    def loop():
        while not stop.wait(every):
            for s in socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass
    threading.Thread(target=loop, daemon=True).start()
    return stop


def recv_until_closed(sock):
    """Every byte sock receives until its peer closes it."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def http_request(port, method, path, body=None, headers=None, timeout=30):
    """Returns (status, parsed JSON body or None, raw body). A server that
    answers before reading the whole request body (413) may reset the
    connection while we still send; the answer is read all the same."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    try:
        headers = dict(headers or {})
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            view = memoryview(body)
            try:
                for off in range(0, len(body), 1 << 16):
                    conn.sock.sendall(view[off:off + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return resp.status, parsed, raw
    finally:
        conn.close()


def head_then_get(port, path, headers=None, timeout=30):
    """HEAD path, then GET /healthz sent behind it on the same connection.
    Returns (status, Content-Length of the HEAD, status of the GET). A body
    sent after the HEAD's headers would stand where the GET's status line
    must, which then reads as None."""
    head = "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
    head += "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    get = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout)) as s:
        s.sendall((head + "\r\n" + get).encode())
        raw = recv_until_closed(s)
    top, _, rest = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    length = next((l.split(":", 1)[1].strip() for l in lines[1:]
                   if l.lower().startswith("content-length:")), None)
    after = re.match(rb"HTTP/1\.1 (\d{3}) ", rest)
    return int(lines[0].split()[1]), length, int(after.group(1)) if after else None


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fixture_payload(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


class Stack:
    """redis-server + sluice-devbroker + sluice-agent + sluice-worker(s)
    sharing one temporary directory. pipelines: {file name: pipeline dict};
    each pipeline's trigger.github.secret_file is set to the stack's secret
    unless it names one of extra_secrets. workers: (kinds, concurrency)
    pairs started with the stack; log_level is given to every sluice process.
    redis_password: redis-server wants it (as ACL user redis_user's, with its
    default user off, when that is given too), and sluice.yaml gives both as
    redis.user and redis.password_file (self.redis_password_file)."""

    def __init__(self, root, repo, pipelines, workers=(("build,test", 2),),
                 extra_settings=None, extra_secrets=None, log_level="debug",
                 redis_password=None, redis_user=None):
        self.root = root
        self.redis_password = redis_password
        self.redis_user = redis_user
        self.redis_password_file = os.path.join(root, "redis-password")
        self.repo = repo
        self.pipelines = pipelines
        self.workers = workers
        self.extra_settings = extra_settings or {}
        self.extra_secrets = extra_secrets or {}
        self.log_level = log_level
        self.secret = secrets.token_hex(20)
        self.logdir = os.path.join(root, "logs")
        self.state_dir = os.path.join(root, "worker-state")
        self.bootstrap = os.path.join(root, "devbroker.bootstrap")
        self.config = os.path.join(root, "sluice.yaml")
        self.procs = []
        self.redis = self.broker = self.agent = None
        self.redis_port = self.agent_port = None
        os.makedirs(self.logdir)

    # startup

    def _spawn(self, name, argv):
        p = Proc(name, argv, self.logdir, self.root).start()
        self.procs.append(p)
        return p

    def start(self):
        STACKS.append(self)
        self.start_redis()
        self.start_broker()
        self.write_config()
        self.start_agent()
        for i, (kinds, concurrency) in enumerate(self.workers):
            self.start_worker(kinds, concurrency, "worker-%d" % (i + 1))
        return self

    # What redis-server keeps on disk: nothing (a subclass may keep more).
    REDIS_PERSISTENCE = ["--save", "", "--appendonly", "no"]

    def start_redis(self):
        """Starts redis-server, again on its port when it ran before."""
        if self.redis_port is None:
            self.redis_port = free_port()
        data = os.path.join(self.root, "redis")
        os.makedirs(data, exist_ok=True)
        auth = []
        if self.redis_user:
            auth = ["--user", self.redis_user, "on", ">" + self.redis_password, "~*", "&*",
                    "+@all", "--user", "default", "off"]
        elif self.redis_password:
            auth = ["--requirepass", self.redis_password]
        self.redis = self._spawn("redis", [
            shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port),
            "--bind", "127.0.0.1", "--dir", data] + self.REDIS_PERSISTENCE + auth)
        wait_for("redis-server to answer PING", lambda: redis_ping(
            self.redis_port, self.redis_password, self.redis_user), 10, [self.redis])

    def start_broker(self):
        self.broker = self._spawn("devbroker", [
            binary("sluice-devbroker"), "--bootstrap-file", self.bootstrap])

        def ready():
            try:
                with open(self.bootstrap) as f:
                    return f.read().strip()
            except OSError:
                return ""
        self.brokers = wait_for("the devbroker bootstrap file", ready, 15, [self.broker])

    def write_config(self):
        self.agent_port = free_port()
        redis = {"url": "redis://127.0.0.1:%d" % self.redis_port}
        if self.redis_password:
            fd = os.open(self.redis_password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.redis_password + "\n")
            redis["password_file"] = self.redis_password_file
        if self.redis_user:
            redis["user"] = self.redis_user
        settings = merge_settings({
            "kafka": {"brokers": "@" + self.bootstrap},
            "redis": redis,
            "agent": {"listen": "127.0.0.1:%d" % self.agent_port},
            "pipelines_dir": "pipelines.d",
            "worker": {"state_dir": self.state_dir, "kill_grace": "1s"},
        }, self.extra_settings)
        with open(self.config, "w") as f:
            f.write(to_yaml(settings))
        pdir = os.path.join(self.root, "pipelines.d")
        os.makedirs(pdir)
        with open(os.path.join(pdir, "webhook-secret"), "w") as f:
            f.write(self.secret)
        for name, value in self.extra_secrets.items():
            with open(os.path.join(pdir, name), "w") as f:
                f.write(value)
        for fname, p in self.pipelines.items():
            with open(os.path.join(pdir, fname), "w") as f:
                f.write(to_yaml(p))

    def start_agent(self):
        self.agent = self._spawn("agent", [
            binary("sluice-agent"), "--config", self.config, "--log-level", self.log_level])
        self.url = "http://127.0.0.1:%d" % self.agent_port

        def healthy():
            try:
                return self.get("/healthz", timeout=2)[0] == 200
            except OSError:
                return False
        wait_for("GET /healthz to answer 200", healthy, 20, [self.agent])

    def start_worker(self, kinds, concurrency, name, config=None):
        """config: a file of its own instead of the stack's."""
        p = self._spawn(name, [
            binary("sluice-worker"), "--config", config or self.config, "--kind", kinds,
            "--concurrency", str(concurrency), "--log-level", self.log_level])
        time.sleep(0.2)
        if not p.alive():
            raise RuntimeError("%s exited at start\n%s" % (name, p.describe()))
        return p

    def stop(self):
        # Clients first, so nothing logs a lost connection to redis or the broker.
        order = [p for p in self.procs if p not in (self.redis, self.broker)]
        order += [p for p in (self.broker, self.redis) if p is not None]
        for p in order:
            p.stop()
        if self in STACKS:
            STACKS.remove(self)

    def report(self):
        return "\n".join(p.describe() for p in self.procs)

    # HTTP

    def get(self, path, timeout=30):
        status, body, _ = http_request(self.agent_port, "GET", path, timeout=timeout)
        return status, body

    def metric(self, name):
        """The value of the agent's metric `name` (one without labels)."""
        status, _, raw = http_request(self.agent_port, "GET", "/metrics", timeout=10)
        assert status == 200, (status, raw)
        for line in raw.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("%s not in the metrics:\n%s" % (name, raw.decode()))

    def agent_log_lines(self, text):
        """The lines of the agent's log that hold text."""
        with open(self.agent.log, errors="replace") as f:
            return [line for line in f if text in line]

    def post_hook(self, event, payload, *, secret=None, delivery=None, hook_id=HOOK_ID,
                  content_type="application/json", signature=None, omit=()):
        """POSTs a webhook exactly as GitHub does; returns (status, json body).
        payload is a dict or the raw bytes; signature overrides the computed
        one; omit names headers to leave out."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload, indent=2).encode()
        headers = {
            "Host": "127.0.0.1:%d" % self.agent_port,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Content-Type": content_type,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": hook_id,
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": "186853002",
            "X-Hub-Signature-256": signature or sign(secret or self.secret, body),
        }
        for h in omit:
            headers.pop(h, None)
        status, parsed, raw = http_request(self.agent_port, "POST", "/hooks/github", body, headers)
        if parsed is None and raw:
            parsed = {"_raw": raw.decode("utf-8", "replace")}
        return status, parsed

    def run(self, run_id):
        status, body = self.get("/api/v1/runs/" + run_id)
        assert status == 200, (status, body)
        return body

    def runs(self, query="limit=500"):
        status, body = self.get("/api/v1/runs?" + query)
        assert status == 200, (status, body)
        return body["runs"]

    def run_count(self):
        return len(self.runs())

    def wait_run(self, run_id, timeout=60):
        """The run once it has ended. An agent that answers 503 (its Redis
        away, or not reconnected yet) is asked again until the timeout."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            status, run = self.get("/api/v1/runs/" + run_id)
            assert status in (200, 503), (status, run)
            if status == 200 and run["status"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise AssertionError("run %s not finished after %ss: %s" % (
                    run_id, timeout, json.dumps(run, indent=2)))
            time.sleep(0.1)

    def log(self, run_id, stage):
        """Every log line of a stage, following the "next" cursor."""
        lines, after = [], None
        while True:
            q = "/api/v1/runs/%s/stages/%s/log?limit=100" % (run_id, stage)
            if after:
                q += "&after=" + after
            status, body = self.get(q)
            assert status == 200, (status, body)
            lines += body["lines"]
            if not body["lines"] or body["next"] == after:
                return lines
            after = body["next"]

    def ctl(self, *args, env=None, timeout=15):
        e = dict(os.environ)
        e.pop("SLUICE_URL", None)
        e.update(env or {})
        argv = [binary("sluicectl")]
        if "SLUICE_URL" not in (env or {}):
            argv += ["--url", self.url]
        return subprocess.run(argv + list(args), capture_output=True, text=True,
                              timeout=scaled(timeout), env=e, cwd=self.root)

    # payloads

    def push_payload(self, repository, ref="refs/heads/main", after=None):
        """The fixture push, adapted: a branch push of `after` (default HEAD).
        Its clone_url is GitHub's, as GitHub sends it: a pipeline builds the
        local repository through its checkout.url."""
        p = fixture_payload("push-payload.json")
        p["repository"]["full_name"] = repository
        p["repository"]["clone_url"] = "https://github.com/%s.git" % repository
        p["ref"] = ref
        p["before"] = self.repo.first
        p["after"] = after or self.repo.head
        p["deleted"] = False
        p["created"] = False
        p["base_ref"] = None
        return p

    def pr_payload(self, repository, fixture="pull_request-opened.payload.json", sha=None,
                   fork=False):
        """A pull request in repository from one of its own branches, or
        from the repository fork names ("someone/app"; None: from a fork
        since deleted, whose head.repo GitHub sends as null)."""
        p = fixture_payload(fixture)
        p["repository"]["full_name"] = repository
        p["repository"]["clone_url"] = "https://github.com/%s.git" % repository
        p["pull_request"]["head"]["sha"] = sha or self.repo.second
        p["pull_request"]["base"]["repo"]["full_name"] = repository
        if fork is False:
            p["pull_request"]["head"]["repo"]["full_name"] = repository
        elif fork is None:
            p["pull_request"]["head"]["repo"] = None
        else:
            p["pull_request"]["head"]["repo"]["full_name"] = fork
        return p


class DurableRedisStack(Stack):
    """Redis writes every change to its append-only file before answering,
    so that a restart loses nothing acknowledged."""

    REDIS_PERSISTENCE = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]


def pipeline(name, repository, stages, events=None, branches=None, tags=None, checkout=None,
             vars_=None, secret_file="webhook-secret"):
    trigger = {"repository": repository, "secret_file": secret_file}
    if events is not None:
        trigger["events"] = events
    if branches is not None:
        trigger["branches"] = branches
    if tags is not None:
        trigger["tags"] = tags
    p = {"name": name, "trigger": {"github": trigger}}
    if checkout:
        p["checkout"] = {"url": checkout}
    if vars_:
        p["vars"] = vars_
    p["stages"] = stages
    return p
