"""Worker concurrency and shutdown against a real stack: --concurrency 1
runs one stage at a time, and a --concurrency or --kind the worker cannot
use is refused at start; SIGTERM lets a running stage finish and the worker
exit 0; a second SIGTERM hands the stage back and another worker runs it,
unless its command had ended already; an http: stage's request in flight
is abandoned with it and sent again by the next worker. A job delivered
again after a rebalance, while its claim is still retried, is not committed
before the claim lands."""

import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import binary, pid_gone, pipeline, started_stack, wait_for
from harness import RedisMonitor
from kafkawire import envelopes
from resp import Redis

DRAIN_REPO = "sluice-it/drain"
ONE_AT_A_TIME_REPO = "sluice-it/one-at-a-time"
EXITED_REPO = "sluice-it/exited"
HOOK_REPO = "sluice-it/slow-hook"
LONG_REPO = "sluice-it/long-drain"
QUICK_REPO = "sluice-it/quick"


class SlowHook(http.server.BaseHTTPRequestHandler):
    """Answers 200 two seconds after each request; counts the requests."""
    begun = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        SlowHook.begun += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(2)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")
        except OSError:
            pass  # the worker went away


def pipelines(repo, root, hook_port):
    # A stage that fails if another stage of this pipeline runs beside it:
    # mkdir is atomic, so a second concurrent stage cannot take the lock.
    lock = os.path.join(root, "one-at-a-time.lock")
    exclusive = ('mkdir "$1" || { echo "another stage is running"; exit 9; }; '
                 'sleep 0.4; rmdir "$1"')
    return {
        "drain.yaml": pipeline("drain", DRAIN_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", "echo started; sleep 3; echo finished"],
                      "timeout": "1m"},
        }),
        "long.yaml": pipeline("long-drain", LONG_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", "echo started; sleep 15; echo finished"],
                      "timeout": "1m", "checkout": False},
        }),
        "quick.yaml": pipeline("quick", QUICK_REPO, checkout=repo.url, stages={
            "build": {"run": ["true"], "checkout": False},
        }),
        "one.yaml": pipeline("one-at-a-time", ONE_AT_A_TIME_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", exclusive, "sh", lock]},
        }),
        # Exits 0 leaving a daemon that holds its output open: the worker
        # waits a second for that output before the stage's end.
        "exited.yaml": pipeline("exited", EXITED_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", 'echo "started $$"; sleep 1; setsid sleep 300 & '
                                          'echo "daemon $!"; sleep 0.3; exit 0'],
                      "checkout": False},
        }),
        "hook.yaml": pipeline("slow-hook", HOOK_REPO, checkout=repo.url, stages={
            "build": {"http": {"method": "POST", "url": "http://127.0.0.1:%d/deploy" % hook_port,
                               "timeout": "20s"}},
        }),
    }


@pytest.fixture(scope="module")
def drain_stack():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield from started_stack("sluice-drain-",
                                 lambda repo, root: pipelines(repo, root, server.server_port),
                                 workers=(), extra_settings={"worker": {"lease": "3s"}})
    finally:
        server.shutdown()
        server.server_close()


def redis_hget(stack, key, field):
    out = subprocess.run(["redis-cli", "-p", str(stack.redis_port), "--raw", "HGET", key, field],
                         capture_output=True, text=True, timeout=5)
    return out.stdout.strip()


def start_run(stack, repository):
    status, body = stack.post_hook("push", stack.push_payload(repository))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def wait_running(stack, run_id, stage="build", timeout=30):
    """Waits until the stage runs its command; returns the worker token."""
    key = "sluice:run:%s:stage:%s" % (run_id, stage)

    def running():
        if redis_hget(stack, key, "status") != "running":
            return None
        if not any(l["line"] == "started" for l in stack.log(run_id, stage)):
            return None
        return redis_hget(stack, key, "worker")
    return wait_for("stage %s of %s to run" % (stage, run_id), running, timeout)


def worker_by_token(workers, token):
    pid = int(token.split(":")[1])
    found = [w for w in workers if w.popen.pid == pid]
    assert found, "no worker with pid %d among %s" % (pid, [w.popen.pid for w in workers])
    return found[0]


def retire(stack, proc, timeout=30):
    """Waits for a worker to exit by itself; returns its exit code."""
    try:
        code = proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not exit\n%s" % (proc.name, proc.describe())) from None
    stack.procs.remove(proc)
    return code


def hand_back(stack, worker):
    """Stops the worker twice, as a second SIGTERM hands its stage back; it
    exits 0 saying so."""
    worker.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.popen.send_signal(signal.SIGTERM)
    assert retire(stack, worker) == 0, worker.describe()
    with open(worker.log) as f:
        assert "stage handed back" in f.read(), worker.describe()


def test_sigterm_lets_the_running_stage_finish_and_exits_0(drain_stack):
    s = drain_stack
    worker = s.start_worker("build", 1, "drain-a")
    run_id = start_run(s, DRAIN_REPO)
    token = wait_running(s, run_id)
    sent = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    assert retire(s, worker) == 0, worker.describe()
    # It waited for the 3 s stage rather than stopping it.
    assert time.monotonic() - sent > 1.5
    run = s.wait_run(run_id, timeout=10)
    assert run["status"] == "succeeded", run
    assert run["stages"]["build"]["status"] == "succeeded", run
    assert run["stages"]["build"]["attempt"] == 1, run
    with open(worker.log) as f:
        log = f.read()
    assert "draining" in log and "handed back" not in log, log
    # With nothing pending under its name, it left the outbox's group.
    out = subprocess.run(["redis-cli", "-p", str(s.redis_port), "--raw", "XINFO", "CONSUMERS",
                          "sluice:outbox", "dispatch"], capture_output=True, text=True,
                         timeout=5).stdout
    assert token not in out.split(), out


def two_workers_one_running(stack, a, b, repository):
    """Starts two build workers ((name, concurrency) each), then a run of
    repository; returns the workers, the run and the worker running it."""
    workers = [stack.start_worker("build", a[1], a[0]), stack.start_worker("build", b[1], b[0])]
    # Both members must have joined the group before the job is published,
    # or the first one to join would be the only one that can run it.
    time.sleep(2)
    run_id = start_run(stack, repository)
    token = wait_running(stack, run_id)
    return workers, run_id, worker_by_token(workers, token)


def test_a_draining_worker_s_partitions_go_to_the_others_at_once(drain_stack):
    """A worker told to stop (one SIGTERM) finishes its 15 s stage, but
    leaves the group at once: runs pushed meanwhile, whichever partitions
    their jobs land on, all run on the other worker while it drains."""
    s = drain_stack
    workers, long_run, draining = two_workers_one_running(s, ("drain-f", 1), ("drain-g", 4),
                                                          LONG_REPO)
    other = [w for w in workers if w is not draining][0]
    draining.popen.send_signal(signal.SIGTERM)
    wait_for("the worker to drain", lambda: "draining" in open(draining.log).read(), 10)
    quick = [start_run(s, QUICK_REPO) for _ in range(6)]
    # The draining worker starts no job: every one of them ran on the other.
    for run_id in quick:
        run = s.wait_run(run_id, timeout=30)
        assert run["status"] == "succeeded", run
    assert draining.popen.poll() is None, "all ran while it still drained"
    assert retire(s, draining) == 0, draining.describe()
    assert s.wait_run(long_run, timeout=30)["status"] == "succeeded"
    retire_all(s, [other])


def test_second_sigterm_hands_the_stage_back_to_another_worker(drain_stack):
    s = drain_stack
    workers, run_id, first = two_workers_one_running(s, ("drain-b", 1), ("drain-c", 1),
                                                     DRAIN_REPO)
    hand_back(s, first)

    run = s.wait_run(run_id, timeout=40)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert build["status"] == "succeeded", run
    # The handed-back attempt is in the history; the next one ran it.
    history = [(a["attempt"], a["status"]) for a in build["attempts"]]
    assert history == [(1, "handed_back"), (2, "succeeded")], build
    assert build["attempt"] == 2, build
    assert int(build["attempts"][0]["worker"].split(":")[1]) == first.popen.pid, build
    other = [w for w in workers if w is not first][0]
    key = "sluice:run:%s:stage:%s" % (run_id, "build")
    finished_by = redis_hget(s, key, "worker") or next(
        (a["worker"] for a in build.get("attempts", []) if a["status"] == "succeeded"), "")
    assert finished_by and int(finished_by.split(":")[1]) == other.popen.pid, (finished_by, run)
    lines = [l["line"] for l in s.log(run_id, "build")]
    assert lines.count("started") == 2 and lines.count("finished") == 1, lines
    retire_all(s, workers)


def test_second_sigterm_hands_an_http_stage_back_with_its_request(drain_stack):
    """An http: stage waiting for its answer is handed back like a command:
    the request is abandoned, and the next worker sends it again and
    records its answer."""
    s = drain_stack
    begun = SlowHook.begun
    first = s.start_worker("build", 1, "drain-http-a")
    run_id = start_run(s, HOOK_REPO)
    key = "sluice:run:%s:stage:build" % run_id
    wait_for("the request to be sent", lambda: SlowHook.begun > begun, 30, [first])
    assert redis_hget(s, key, "status") == "running"
    hand_back(s, first)
    # Handed back while the answer was awaited, not after it.
    assert redis_hget(s, key, "status") == "queued"

    other = s.start_worker("build", 1, "drain-http-b")
    run = s.wait_run(run_id, timeout=40)
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == \
        [(1, "handed_back"), (2, "succeeded")], build
    assert SlowHook.begun == begun + 2
    assert any(l["line"].startswith("HTTP 200 from http://127.0.0.1:")
               for l in s.log(run_id, "build")), s.log(run_id, "build")
    retire_all(s, [other])


def test_a_stage_whose_command_exited_is_recorded_not_handed_back(drain_stack):
    """The hand-back comes once the command has exited 0, while the worker
    still reads the output its daemon holds open: the success is recorded,
    and the stage does not run again."""
    s = drain_stack
    worker = s.start_worker("build", 1, "drain-exited")
    run_id = start_run(s, EXITED_REPO)

    def printed(word):
        for l in s.log(run_id, "build"):
            if l["line"].startswith(word + " "):
                return int(l["line"].split()[1])
        return None
    command = wait_for("the command to start", lambda: printed("started"), 30, [worker])
    daemon = wait_for("the command's daemon", lambda: printed("daemon"), 10, [worker])
    try:
        wait_for("the command to exit", lambda: pid_gone(command), 5, [worker])
        worker.popen.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        worker.popen.send_signal(signal.SIGTERM)
        assert retire(s, worker) == 0, worker.describe()
        run = s.wait_run(run_id, timeout=10)
        build = run["stages"]["build"]
        assert [(a["attempt"], a["status"]) for a in build["attempts"]] == \
            [(1, "succeeded")], build
        assert run["status"] == "succeeded", run
        lines = [l["line"] for l in s.log(run_id, "build")]
        assert sum(l.startswith("started ") for l in lines) == 1, lines
        with open(worker.log) as f:
            assert "stage handed back" not in f.read(), worker.describe()
    finally:
        if not pid_gone(daemon):
            os.kill(daemon, signal.SIGKILL)


# A script that keeps Redis busy for 2.5 s (looking at the time every 200,000
# turns of an empty loop): every other client's command waits behind it
# (under busy-reply-threshold, 5 s, nothing is refused).
SPIN = ("local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + 2500000 "
        "repeat for i = 1, 200000 do end t = redis.call('TIME') "
        "until t[1] * 1000000 + t[2] >= stop return 1")


def test_hand_back_behind_a_slow_redis_sends_no_renewal_after_it(drain_stack):
    """The hand-back's script waits behind a busy Redis while the lease's
    renewals fall due (lease 3 s: one a second). No renewal may follow the
    hand-back: its reply would reach a job already freed. The worker hands
    the stage back and exits 0."""
    s = drain_stack
    worker = s.start_worker("build", 1, "drain-slow")
    time.sleep(2)
    run_id = start_run(s, DRAIN_REPO)
    wait_running(s, run_id)
    with RedisMonitor(s.redis_port) as monitor:
        spin = subprocess.Popen(["redis-cli", "-p", str(s.redis_port), "EVAL", SPIN, "0"],
                                stdout=subprocess.DEVNULL)
        time.sleep(0.2)
        worker.popen.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        worker.popen.send_signal(signal.SIGTERM)
        spin.wait(10)
        assert retire(s, worker) == 0, worker.describe()
        lines = monitor.lines(0.5)
    with open(worker.log) as f:
        assert "stage handed back" in f.read(), worker.describe()

    # The worker's scripts for this stage, in the order Redis ran them: a
    # renewal's arguments end with the lease (3000) and the time, the
    # hand-back's with the next attempt's topic and job, then the result's
    # topic and message (for a cancelled run's deployment).
    calls = [re.findall(r'"((?:[^"\\]|\\.)*)"', l) for l in lines if '"EVALSHA"' in l]
    calls = [c[c.index("EVALSHA"):] for c in calls]
    ours = [c for c in calls if len(c) > 4 and c[4] == run_id]
    renewals = [i for i, c in enumerate(ours) if len(c) == 10 and c[8] == "3000"]
    handbacks = [i for i, c in enumerate(ours) if len(c) == 13 and c[9] == "sluice.jobs.build"]
    assert len(handbacks) == 1, ours
    assert all(i < handbacks[0] for i in renewals), ours

    # Another worker runs the attempt handed back.
    other = s.start_worker("build", 1, "drain-after-slow")
    run = s.wait_run(run_id, timeout=40)
    assert run["status"] == "succeeded", run
    retire_all(s, [other])


def test_a_job_delivered_again_while_its_worker_runs_it_runs_once(drain_stack):
    """Kafka delivers at least once: the same job reaches the worker again
    while it runs the stage. The worker's claim of it would be answered
    "claimed" (claim.lua takes a worker's repeated claim for one whose reply
    was lost), so the worker itself skips the attempt it holds. Two slots,
    so that the second delivery is taken up while the first runs."""
    s = drain_stack
    worker = s.start_worker("build", 2, "drain-twice")
    time.sleep(2)
    run_id = start_run(s, DRAIN_REPO)
    wait_running(s, run_id)
    data = {"run": run_id, "stage": "build", "attempt": 1, "kind": "build"}
    job = json.dumps({"specversion": "1.0", "id": "again-1", "source": "sluice-agent",
                      "type": "dev.sluice.job.requested",
                      "subject": "runs/%s/stages/build/attempts/1" % run_id,
                      "datacontenttype": "application/json", "data": data})
    subprocess.run(["redis-cli", "-p", str(s.redis_port), "XADD", "sluice:outbox", "*",
                    "topic", "sluice.jobs.build", "key", run_id, "value", job],
                   check=True, capture_output=True, timeout=5)

    def skipped():
        with open(worker.log) as f:
            return "reason=held" in f.read()
    wait_for("the worker to skip the job it holds", skipped, 20)
    run = s.wait_run(run_id, timeout=40)
    assert run["status"] == "succeeded", run
    lines = [l["line"] for l in s.log(run_id, "build")]
    assert lines.count("started") == 1 and lines.count("finished") == 1, lines
    retire_all(s, [worker])


def worker_whose_claim_is_refused(s, run_id, name):
    """A build worker started once run_id's job is in Kafka and Redis
    refuses writes (maxmemory 1): its claim is refused and retried. The
    caller sets maxmemory back."""
    wait_for("the job in Kafka", lambda: any(
        e["data"]["run"] == run_id for e in envelopes(s.brokers, "sluice.jobs.build")), 10)
    with Redis(s.redis_port) as r:
        assert r.call("CONFIG", "SET", "maxmemory", "1") == b"OK"
    worker = s.start_worker("build", 2, name)
    wait_for("the claim to be refused", lambda: "job not claimed yet" in open(
        worker.log).read(), 20)
    return worker


def test_a_job_given_back_by_a_rebalance_during_its_claim_is_consumed_again():
    """Kafka gives a worker its partition back (here: the worker was stopped
    past its session timeout, so the group dropped it and took it in again)
    while its claim of a job is still retried (Redis refuses writes:
    maxmemory). The job arrives a second time; that delivery must keep its
    offset uncommitted until the claim lands. The worker killed before then,
    the next one consumes the job again and runs it, instead of the stage
    waiting for the agent's requeue (10 minutes here)."""
    stack = started_stack("sluice-rebalance-", lambda repo, root: pipelines(repo, root, 1),
                          workers=(), extra_settings={"agent": {"requeue_after": "10m"}})
    s = next(stack)
    try:
        run_id = start_run(s, QUICK_REPO)
        try:
            first = worker_whose_claim_is_refused(s, run_id, "rebalance-first")
            os.kill(first.popen.pid, signal.SIGSTOP)
            time.sleep(9)  # kafka.session_timeout is 6 s
            os.kill(first.popen.pid, signal.SIGCONT)
            wait_for("the job delivered again", lambda: "reason=held" in open(
                first.log).read(), 30)
            time.sleep(3)  # offsets stored are committed every second
            first.popen.kill()
            first.popen.wait(10)
            s.procs.remove(first)
        finally:
            with Redis(s.redis_port) as r:
                r.call("CONFIG", "SET", "maxmemory", "0")
        second = s.start_worker("build", 2, "rebalance-second")
        run = s.wait_run(run_id, timeout=30)
        assert run["status"] == "succeeded", run
        build = run["stages"]["build"]
        assert build["attempt"] == 1, build
        token = redis_hget(s, "sluice:run:%s:stage:build" % run_id, "worker")
        assert worker_by_token([second], token) is second
    finally:
        next(stack, None)


def test_a_stopping_worker_gives_up_a_claim_redis_keeps_refusing(drain_stack):
    """A claim Redis refuses (maxmemory) is retried; a worker told to stop
    twice gives it up instead of waiting for Redis for good, and exits. Its
    offset unstored, another worker consumes the job again and runs it."""
    s = drain_stack
    run_id = start_run(s, QUICK_REPO)
    try:
        first = worker_whose_claim_is_refused(s, run_id, "claim-refused")
        first.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        first.popen.send_signal(signal.SIGTERM)
        assert retire(s, first, timeout=10) == 0, first.describe()
        with open(first.log) as f:
            assert "job left unclaimed: the worker stops" in f.read(), first.describe()
    finally:
        with Redis(s.redis_port) as r:
            r.call("CONFIG", "SET", "maxmemory", "0")
    second = s.start_worker("build", 2, "claim-second")
    run = s.wait_run(run_id, timeout=30)
    assert run["status"] == "succeeded" and run["stages"]["build"]["attempt"] == 1, run
    retire_all(s, [second])


def retire_all(stack, workers):
    for w in workers:
        if w in stack.procs:
            w.stop()
            stack.procs.remove(w)


def test_concurrency_one_runs_one_stage_at_a_time(drain_stack):
    s = drain_stack
    worker = s.start_worker("build", 1, "one-at-a-time")
    runs = [start_run(s, ONE_AT_A_TIME_REPO) for _ in range(3)]
    for run_id in runs:
        run = s.wait_run(run_id, timeout=40)
        assert run["status"] == "succeeded", (run, s.log(run_id, "build"))
    stages = sorted((s.run(r)["stages"]["build"] for r in runs), key=lambda b: b["started"])
    for before, after in zip(stages, stages[1:]):
        assert before["finished"] <= after["started"], stages
    retire_all(s, [worker])


@pytest.mark.parametrize("args,error", [
    (["--kind", "bulid"], "bad --kind bulid"),
    (["--kind", "BUILD"], "bad --kind BUILD"),
    (["--kind", ","], "bad --kind ,"),
    (["--kind", "build", "--concurrency", "5abc"], "--concurrency takes 1..1024"),
    (["--kind", "build", "--metrics-listen", "localhost:9101"],
     "bad --metrics-listen localhost:9101: expected IP:PORT"),
    (["--kind", "build", "--metrics-listen", "127.0.0.1"],
     "bad --metrics-listen 127.0.0.1: expected IP:PORT"),
], ids=["unknown-kind", "upper-case", "no-kind", "concurrency-not-a-number",
        "metrics-listen-a-name", "metrics-listen-without-port"])
def test_an_argument_the_worker_cannot_use_is_refused_with_status_2(tmp_path, args, error):
    # A kind no stage can have would leave the worker waiting on a topic no
    # job reaches; "5abc" is not 5.
    r = subprocess.run([binary("sluice-worker"), "--config", str(tmp_path / "none.yaml")] + args,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "sluice-worker: " + error in r.stderr, r.stderr
