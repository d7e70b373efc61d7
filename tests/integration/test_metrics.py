"""GET /metrics on the agent and on a worker: both scrapes pass
`promtool check metrics` (format and lint), and the counters move by exactly
what real traffic — webhooks, a run through two stages — should add."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess

import pytest

from conftest import (binary, free_port, head_then_get, http_request, pipeline, recv_until_closed,
                      started_stack, wait_for)

REPO = "sluice-it/metrics"
SLOW_REPO = "sluice-it/metrics-slow"
# How often the agent reads the figures it keeps in Redis (agent_metrics.c).
REFRESH_S = 5
CONCURRENCY = 2
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{(name, frozenset of (label, value)): float} of an exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name, **labels):
    """Sum over every series of name whose labels include the given ones."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def promtool_check(text):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run make deps (Debian package prometheus)"
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        r.returncode, r.stdout, r.stderr, text)


@pytest.fixture(scope="module")
def metrics_port():
    return free_port()


@pytest.fixture(scope="module")
def mstack(metrics_port):
    def pipelines(repo, root):
        return {"metrics.yaml": pipeline("metrics", REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", "echo built"]},
            "test": {"kind": "test", "run": ["true"], "needs": ["build"]},
        }), "slow.yaml": pipeline("metrics-slow", SLOW_REPO, checkout=repo.url, stages={
            "build": {"run": ["sleep", "60"]},
        })}
    yield from started_stack(
        "sluice-metrics-", pipelines, workers=(("build,test", CONCURRENCY),),
        extra_settings={"worker": {"metrics_listen": "127.0.0.1:%d" % metrics_port}})


def answers(port, path):
    try:
        return http_request(port, "GET", path, timeout=2)[0] == 200
    except OSError:
        return False


def scrape(port, path="/metrics"):
    status, _, raw = http_request(port, "GET", path)
    assert status == 200, (status, raw)
    return raw.decode()


def test_metrics_move_with_a_webhook_and_its_run(mstack, metrics_port):
    wait_for("the worker's metrics listener", lambda: answers(metrics_port, "/healthz"), 10)
    agent_before, worker_before = scrape(mstack.agent_port), scrape(metrics_port)
    promtool_check(agent_before)
    promtool_check(worker_before)
    a0, w0 = parse(agent_before), parse(worker_before)

    status, body = mstack.post_hook("push", mstack.push_payload(REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = mstack.wait_run(body["runs"][0])
    assert run["status"] == "succeeded", run
    assert mstack.post_hook("ping", {"zen": "Keep it logically awesome.", "hook_id": 1})[0] == 200
    assert mstack.post_hook("push", mstack.push_payload(REPO), signature="sha256=" + "0" * 64
                            )[0] == 401
    # An event name made up by the sender is counted, but never as a label of its own.
    mstack.post_hook("made_up_event", {"zen": "x"})

    agent_after = scrape(mstack.agent_port)
    worker_after = scrape(metrics_port)
    promtool_check(agent_after)
    promtool_check(worker_after)
    a1, w1 = parse(agent_after), parse(worker_after)

    def moved(before, after, name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(a0, a1, "sluice_webhooks_total", event="push", code="202") == 1
    assert moved(a0, a1, "sluice_webhooks_total", event="push", code="401") == 1
    assert moved(a0, a1, "sluice_webhooks_total", event="ping", code="200") == 1
    assert total(a1, "sluice_webhooks_total", event="other") - total(
        a0, "sluice_webhooks_total", event="other") == 1
    assert not [k for k in a1 if ("event", "made_up_event") in k[1]]
    assert moved(a0, a1, "sluice_runs_created_total", pipeline="metrics") == 1
    # Routes are templates, never raw paths with run ids in them.
    assert moved(a0, a1, "sluice_http_request_duration_seconds_count",
                 route="/hooks/github", code="202") >= 2
    assert moved(a0, a1, "sluice_http_request_duration_seconds_count",
                 route="/api/v1/runs/{id}", code="200") >= 1
    assert not [k for k in a1 if any(v.startswith("/api/v1/runs/r_") for _, v in k[1])]
    assert ("sluice_outbox_depth", frozenset()) in a1
    assert ("sluice_events_outbox_depth", frozenset()) in a1
    assert ("sluice_outbox_dead_letters", frozenset()) in a1
    assert ("sluice_delayed_depth", frozenset()) in a1

    for kind in ("build", "test"):
        assert moved(w0, w1, "sluice_stage_duration_seconds_count", kind=kind,
                     status="succeeded") == 1
        assert moved(w0, w1, "sluice_stage_duration_seconds_bucket", kind=kind,
                     status="succeeded", le="+Inf") == 1
        assert moved(w0, w1, "sluice_stage_duration_seconds_sum", kind=kind,
                     status="succeeded") > 0
    assert value(w1, "sluice_jobs_running") == 0
    assert value(w1, "sluice_worker_slots") == CONCURRENCY
    assert value(w1, "sluice_lease_renewal_errors_total") == 0
    assert value(w1, "sluice_leases_lost_total") == 0


def test_finished_runs_are_counted_by_final_status_wherever_they_end(mstack):
    """Runs end in the router (succeeded) and in an operator's cancel: the
    scripts that end them count them in Redis, and the agent shows what Redis
    holds."""
    def in_redis(field):
        out = subprocess.run(["redis-cli", "-p", str(mstack.redis_port), "--raw", "HGET",
                              "sluice:runs:finished", field], capture_output=True, text=True,
                             timeout=5)
        return float(out.stdout.strip() or 0)

    # Runs of the tests before may have ended since the agent last read Redis.
    wait_for("the agent to show what Redis holds", lambda: value(
        parse(scrape(mstack.agent_port)), "sluice_runs_finished_total", pipeline="metrics",
        status="succeeded") == in_redis("metrics/succeeded"), 3 * REFRESH_S)
    before = parse(scrape(mstack.agent_port))
    status, body = mstack.post_hook("push", mstack.push_payload(REPO))
    assert status == 202, (status, body)
    assert mstack.wait_run(body["runs"][0])["status"] == "succeeded"
    status, body = mstack.post_hook("push", mstack.push_payload(SLOW_REPO))
    assert status == 202, (status, body)
    slow = body["runs"][0]
    wait_for("the slow stage to run",
             lambda: mstack.run(slow)["status"] == "running", 30)
    out = mstack.ctl("cancel", slow)
    assert out.returncode == 0, out

    def counted():
        now = parse(scrape(mstack.agent_port))
        return [value(now, "sluice_runs_finished_total", pipeline=p, status=st)
                - value(before, "sluice_runs_finished_total", pipeline=p, status=st)
                for p, st in (("metrics", "succeeded"), ("metrics-slow", "cancelled"),
                              ("metrics", "failed"))]
    wait_for("both runs counted", lambda: counted()[:2] == [1, 1], 3 * REFRESH_S)
    assert counted() == [1, 1, 0]


def test_finished_runs_of_a_pipeline_not_loaded_keep_its_name(mstack):
    """A pipeline removed from (or not yet added to) this agent's files
    keeps its own series: lumped into "other", its count would move between
    series as files come and go, and a counter would go backwards."""
    def hset(field, count):
        subprocess.run(["redis-cli", "-p", str(mstack.redis_port), "HSET",
                        "sluice:runs:finished", field, str(count)], check=True,
                       capture_output=True, timeout=5)
    hset("gone-pipeline/succeeded", 3)
    hset("not a name!/failed", 2)
    wait_for("the agent to read them", lambda: value(
        parse(scrape(mstack.agent_port)), "sluice_runs_finished_total",
        pipeline="gone-pipeline", status="succeeded") == 3, 3 * REFRESH_S)
    assert value(parse(scrape(mstack.agent_port)), "sluice_runs_finished_total",
                 pipeline="other", status="failed") >= 2


def test_an_entry_kafka_refuses_is_set_aside_and_counted(mstack):
    """An outbox entry whose message Kafka will never take (larger than the
    producer's 1 MB message.max.bytes) leaves the outbox for the dead-letter
    stream, and the agent's gauge shows it."""
    def redis(*args):
        out = subprocess.run(["redis-cli", "-p", str(mstack.redis_port), "--raw", *args],
                             capture_output=True, text=True, timeout=5)
        assert out.returncode == 0, out
        return out.stdout.strip()

    before = float(redis("XLEN", "sluice:outbox:dead"))
    big = "x" * (2 * 1024 * 1024)
    out = subprocess.run(["redis-cli", "-p", str(mstack.redis_port), "-x", "XADD",
                          "sluice:outbox", "*", "topic", "@events", "key", "r_big", "value"],
                         input=big, capture_output=True, text=True, timeout=5)
    assert out.returncode == 0, out
    entry = out.stdout.strip()
    wait_for("the entry to be set aside", lambda: float(
        redis("XLEN", "sluice:outbox:dead")) == before + 1, 10)
    assert redis("XRANGE", "sluice:outbox", entry, entry) == ""
    last = redis("XREVRANGE", "sluice:outbox:dead", "+", "-", "COUNT", "1").splitlines()
    fields = dict(zip(last[1::2], last[2::2]))
    assert fields["id"] == entry and fields["stream"] == "sluice:outbox", fields
    assert "too large" in fields["error"], fields
    wait_for("the gauge to show it", lambda: value(
        parse(scrape(mstack.agent_port)), "sluice_outbox_dead_letters") == before + 1,
        3 * REFRESH_S)


def test_consumer_lag_comes_from_kafka_statistics(mstack, metrics_port):
    """librdkafka reports statistics every 5 s; each assigned partition's lag
    then appears on the agent (results) and on the worker (jobs)."""
    def lags(port):
        s = parse(scrape(port))
        return {dict(k[1])["topic"]: v for k, v in s.items()
                if k[0] == "sluice_kafka_consumer_lag"}
    agent = wait_for("the agent's consumer lag", lambda: lags(mstack.agent_port), 12)
    worker = wait_for("the worker's consumer lag", lambda: lags(metrics_port), 12)
    assert set(agent) == {"sluice.results"}, agent
    assert set(worker) <= {"sluice.jobs.build", "sluice.jobs.test"} and worker, worker
    assert all(v >= 0 for v in list(agent.values()) + list(worker.values()))


def documented_families():
    """{family: process} of the table of docs/operations.md#metrics."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "operations.md")
    out = {}
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 4 and cells[1].startswith("`sluice_"):
                for name in re.findall(r"`(sluice_[a-z_]+)", cells[1]):
                    out[name] = cells[3]
    return out


def test_each_process_exports_the_families_the_docs_give_it(mstack, metrics_port):
    """Every family documented for a process is on its /metrics once it
    did its work (a run, its consumer statistics), and none other is."""
    status, body = mstack.post_hook("push", mstack.push_payload(REPO))
    assert status == 202, (status, body)
    mstack.wait_run(body["runs"][0])
    docs = documented_families()
    for port, process in ((mstack.agent_port, "agent"), (metrics_port, "worker")):
        want = {name for name, p in docs.items() if p in (process, "both")}

        def exported():
            return set(re.findall(r"^# TYPE (\S+) ", scrape(port), re.M))
        got = wait_for("the families of the %s" % process, lambda: (
            lambda g: g if want <= g else None)(exported()), REFRESH_S + 10)
        assert got == want, (process, sorted(got - want), sorted(want - got))


def test_worker_listener_serves_metrics_and_healthz_only(mstack, metrics_port):
    status, body, raw = http_request(metrics_port, "GET", "/healthz")
    assert status == 200 and body == {"status": "ok", "redis": "up"}, raw
    status, body, _ = http_request(metrics_port, "GET", "/api/v1/runs")
    assert status == 404 and body["error"]["code"] == "not_found", body
    assert http_request(metrics_port, "POST", "/metrics", b"")[0] == 405
    for path in ("/healthz", "/api/v1/runs"):
        status, _, raw = http_request(metrics_port, "GET", path)
        assert head_then_get(metrics_port, path) == (status, str(len(raw)), 200), path
    status, length, after = head_then_get(metrics_port, "/metrics")
    assert (status, after) == (200, 200) and int(length) > 0, length
    # Every method the agent answers 405 is answered so, in JSON and with
    # Allow (a PATCH or an OPTIONS got libevent's 501 page, none had Allow).
    for port in (mstack.agent_port, metrics_port):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                c.request(method, "/metrics", b"" if method != "OPTIONS" else None)
                r = c.getresponse()
                body = json.loads(r.read())
                assert (r.status, r.getheader("Allow")) == (405, "GET, HEAD"), (port, method)
                assert body["error"]["code"] == "method_not_allowed", (port, method, body)
            finally:
                c.close()


def test_a_rollout_that_aborts_is_timed_as_aborted(tmp_path):
    """A deployment with a strategy ends aborted (or rolled_back), outcomes
    of their own beside succeeded and failed, not "other"."""
    port = free_port()

    def pipelines(repo, root):
        d = pipeline("canary", REPO + "-canary", checkout=repo.url, stages={
            "build": {"sh": 'echo "image=app:v2" >> "$SLUICE_OUTPUT"'}})
        d["environments"] = {"prod": {
            "image": "${build.image}",
            "provider": {"type": "exec", "actions": {"apply": {"run": ["true"]}}},
            "strategy": {"type": "Canary", "steps": [{"setWeight": 20}, {"pause": {}}]}}}
        return {"canary.yaml": d}
    stacks = started_stack("sluice-metrics-rollout-", pipelines, workers=(("build,deploy", 1),),
                           extra_settings={"worker": {"metrics_listen": "127.0.0.1:%d" % port}})
    stack = next(stacks)
    try:
        status, body = stack.post_hook("push", stack.push_payload(REPO + "-canary"))
        assert status == 202, (status, body)
        run_id = body["runs"][0]
        wait_for("the rollout parked at its pause", lambda: stack.run(run_id)["stages"][
            "deploy@prod"]["status"] == "paused", 30)
        status, body, _ = http_request(
            stack.agent_port, "POST", "/api/v1/runs/%s/environments/prod/abort" % run_id, b"{}",
            {"Content-Type": "application/json"})
        assert status == 202, body
        run = stack.wait_run(run_id)
        assert run["stages"]["deploy@prod"]["status"] == "aborted", run
        s = parse(scrape(port))
        assert value(s, "sluice_stage_duration_seconds_count", kind="deploy",
                     status="aborted") == 1, s
        assert total(s, "sluice_stage_duration_seconds_count", status="other") == 0, s
    finally:
        next(stacks, None)


def test_a_bad_metrics_address_is_a_configuration_error(tmp_path):
    config = tmp_path / "sluice.yaml"
    config.write_text("worker:\n  metrics_listen: \"localhost:http\"\n")
    r = subprocess.run([binary("sluice-worker"), "--config", str(config), "--kind", "build"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "sluice.yaml:2:19: worker.metrics_listen: expected IP:PORT" in r.stderr, r.stderr


def test_metrics_are_text_format_0_0_4(mstack, metrics_port):
    for port in (mstack.agent_port, metrics_port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read().decode()
            assert r.status == 200
            assert r.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
            assert body.endswith("\n")
        finally:
            c.close()


def worker_rss_kib(stack):
    pid = [p for p in stack.procs if p.name.startswith("worker")][0].popen.pid
    with open("/proc/%d/status" % pid) as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmRSS:")][0]


def test_the_worker_listener_reads_no_large_body_or_headers(mstack, metrics_port):
    """Only GETs are served there: a body over 4 KiB is refused with 413 (as
    soon as its declared length is read), and headers over 16 KiB with 400,
    rather than held in the worker's memory, which its stages share."""
    wait_for("the worker's metrics listener", lambda: answers(metrics_port, "/healthz"), 10)
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
        answer = recv_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # A chunked body declares no length: the worker stops at 4 KiB of it
    # and closes the connection, rather than read 64 MiB.
    before = worker_rss_kib(mstack)
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
        try:
            for _ in range(1024):
                s.sendall(chunk)
            recv_until_closed(s)
        except OSError:
            pass
        else:
            raise AssertionError("the worker read a 64 MiB body to its end")
    assert worker_rss_kib(mstack) - before < 8 * 1024
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 32768 + b"\r\n\r\n")
        try:
            answer = recv_until_closed(s)
        except ConnectionResetError:
            answer = b""
    assert answer.startswith(b"HTTP/1.1 400 ") or answer == b"", answer[:200]
    assert answers(metrics_port, "/healthz")
