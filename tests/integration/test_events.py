"""Events on sluice.events and the commit statuses the agent posts from them.

The events of a run are read back from the broker with the standard-library
Kafka client (tests/kafkawire.py) and checked as queue/envelope.c checks an
envelope. Commit statuses go to a local stand-in for GitHub's REST API: no
real GitHub API is reachable from the tests, so the stand-in replays the
request and response shapes GitHub documents for "Create a commit status"
(POST /repos/{owner}/{repo}/statuses/{sha} answering 201 with the status;
500 with {"message": ...}; 403 with x-ratelimit-remaining: 0 and
x-ratelimit-reset when the primary rate limit is exhausted, and with a
message saying so and no Retry-After for a secondary one) and records
every request. One stack of its own, with short GitHub back-offs.
"""

import datetime
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from conftest import free_port, pipeline, started_stack, wait_for  # noqa: E402
from kafkawire import Client  # noqa: E402
from resp import Redis  # noqa: E402

TOKEN = "ghp_" + "x1" * 18
OWNER = "sluice-st"
PARTITIONS = 4  # sluice-devbroker's default
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class GitHubStandIn:
    """Records each request; answers from a per-repository script of
    (status, headers, body) before the default 201."""

    def __init__(self):
        self.port = free_port()
        self.requests = []  # dicts: time, path, headers, body, answered
        self.scripts = {}  # "owner/repo" -> [(status, headers, body), ...]
        self.lock = threading.Lock()
        self.server = None
        self.start()

    def start(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stand_in.answer(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, h, raw):
        m = re.match(r"^/repos/([^/]+/[^/]+)/statuses/([0-9a-f]{40})$", h.path)
        with self.lock:
            script = self.scripts.get(m.group(1)) if m else None
            status, headers, body = script.pop(0) if script else (201, {}, None)
            req = {"time": time.time(), "path": h.path, "headers": dict(h.headers),
                   "body": json.loads(raw), "answered": status}
            self.requests.append(req)
        if body is None:
            b = req["body"]
            body = {
                "url": "https://api.github.com/repos/%s/statuses/%s" % (m.group(1), m.group(2)),
                "avatar_url": "https://github.com/images/error/hubot_happy.gif",
                "id": len(self.requests), "node_id": "MDY6U3RhdHVzMQ==",
                "state": b["state"], "description": b["description"],
                "target_url": b["target_url"], "context": b["context"],
                "created_at": "2012-07-20T01:19:13Z", "updated_at": "2012-07-20T01:19:13Z",
                "creator": {"login": "octocat", "id": 1, "type": "User"},
            }
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def of_run(self, run_id):
        with self.lock:
            return [r for r in self.requests if r["body"]["target_url"].endswith("/" + run_id)]


WIDE = 60


def pipelines(repo):
    def p(name, stages):
        return pipeline(name, OWNER + "/" + name, checkout=repo.url, stages=stages)
    return {
        "ok.yaml": p("ok", {
            "build": {"run": ["true"]},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
        "flaky.yaml": p("flaky", {
            "build": {"run": ["sh", "-c", "echo failing; exit 3"],
                      "retry": {"max": 1, "backoff": "100ms"}},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
        "errors.yaml": p("errors", {"build": {"run": ["true"]}}),
        "limited.yaml": p("limited", {"build": {"run": ["true"]}}),
        "no-wait.yaml": p("no-wait", {"build": {"run": ["true"]}}),
        # More statuses than a run's queue holds (64): 3 for each stage.
        "wide.yaml": p("wide", {"s%02d" % i: {"kind": "build", "run": ["true"]}
                                for i in range(WIDE)}),
        "secondary.yaml": p("secondary", {"build": {"run": ["true"]}}),
        "offline.yaml": p("offline", {
            "build": {"run": ["true"]},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
        "when.yaml": p("when", {
            "build": {"run": ["true"]},
            "release": {"kind": "build", "run": ["true"], "when": {"tags": ["v*"]}},
            "publish": {"kind": "build", "run": ["true"], "needs": ["release"]},
        }),
        # Of a kind no worker of the stack takes: its worker is started by
        # the test that needs it.
        "ordered.yaml": p("ordered", {"scan": {"kind": "scan", "run": ["true"]}}),
    }


@pytest.fixture(scope="module")
def github():
    g = GitHubStandIn()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def estack(github):
    yield from started_stack(
        "sluice-events-", lambda repo, root: pipelines(repo),
        extra_secrets={"github-token": TOKEN + "\n"},
        extra_settings={"github": {"api_url": "http://127.0.0.1:%d/" % github.port,
                                   "token_file": "pipelines.d/github-token",
                                   "backoff": "100ms", "backoff_max": "500ms"},
                        "agent": {"scheduler_interval": "100ms"}})


def start(stack, name):
    status, body = stack.post_hook("push", stack.push_payload(OWNER + "/" + name))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return body["runs"][0]


def run_events(stack, run_id):
    """Every event of the run on sluice.events, in partition order."""
    c = Client(stack.brokers)
    out = []
    try:
        for part in range(PARTITIONS):
            offset = 0
            while True:
                err, records = c.fetch("sluice.events", offset, part)
                fresh = [r for r in records if r[0] >= offset] if not err else []
                if not fresh:
                    break
                for _, _, value in fresh:
                    event = json.loads(value)
                    if event.get("data", {}).get("run") == run_id:
                        out.append(event)
                offset = fresh[-1][0] + 1
    finally:
        c.close()
    return out


def check_envelope(e):
    """What queue/envelope.c's envelope_decode requires, plus sluice's own
    attributes."""
    assert e["specversion"] == "1.0", e
    for key in ("id", "source", "type", "subject", "time"):
        assert isinstance(e[key], str) and e[key], (key, e)
    assert e["type"].startswith("dev.sluice."), e
    assert RFC3339.match(e["time"]), e
    assert e["datacontenttype"] == "application/json", e
    assert isinstance(e["data"], dict), e


def wait_statuses(github, run_id, done, timeout=20):
    return wait_for("commit statuses of %s" % run_id,
                    lambda: (lambda rs: rs if done(rs) else None)(github.of_run(run_id)),
                    timeout)


def by_context(requests):
    out = {}
    for r in requests:
        if r["answered"] == 201:
            out.setdefault(r["body"]["context"], []).append(r["body"])
    return out


def test_a_failing_stage_with_a_retry_emits_its_events_in_order(estack, github):
    run_id = start(estack, "flaky")
    run = estack.wait_run(run_id)
    assert run["status"] == "failed", run
    events = wait_for("run.finished on sluice.events", lambda: (
        lambda es: es if es and es[-1]["type"] == "dev.sluice.run.finished" else None)(
            run_events(estack, run_id)), 10)
    seen = [(e["type"][len("dev.sluice."):], e["data"].get("stage"), e["data"].get("attempt"))
            for e in events]
    assert seen == [
        ("run.created", None, None),
        ("stage.queued", "build", 1),
        ("run.started", None, None),
        ("stage.started", "build", 1),
        ("stage.finished", "build", 1),
        ("stage.retrying", "build", 2),
        ("stage.queued", "build", 2),
        ("stage.started", "build", 2),
        ("stage.finished", "build", 2),
        ("stage.skipped", "test", 1),
        ("run.finished", None, None),
    ], json.dumps(events, indent=1)
    for e in events:
        check_envelope(e)
        d = e["data"]
        assert d["run"] == run_id and d["pipeline"] == "flaky", e
        assert d["repository"] == OWNER + "/flaky" and d["sha"] == estack.repo.head, e
        assert d["ref"] == "refs/heads/main", e
        if "stage" in d:
            assert e["subject"] == "runs/%s/stages/%s/attempts/%d" % (
                run_id, d["stage"], d["attempt"]), e
        else:
            assert e["subject"] == "runs/" + run_id, e
    assert len({e["id"] for e in events}) == len(events)
    finished = [e["data"] for e in events if e["type"] == "dev.sluice.stage.finished"]
    assert [(f["status"], f["exit_code"]) for f in finished] == [("failed", 3), ("failed", 3)]
    assert events[-1]["data"]["status"] == "failed"

    # Its commit statuses: a retried failure is not final, the last one is.
    reqs = wait_statuses(github, run_id, lambda rs: any(
        r["body"]["state"] == "failure" for r in rs))
    build = by_context(reqs)["sluice/flaky/build"]
    assert [(s["state"], s["description"]) for s in build] == [
        ("pending", "queued"), ("pending", "running"), ("pending", "exit 3; retrying"),
        ("pending", "queued (attempt 2)"), ("pending", "running (attempt 2)"),
        ("failure", "exit 3")]
    assert "sluice/flaky/test" not in by_context(reqs), "a skipped stage posts nothing"


def test_the_events_of_intake_say_how_the_run_and_each_stage_start(estack):
    """intake.lua records a run's first events from texts the agent wrote,
    giving each its id and time: run.created, stage.queued for a stage that
    needs nothing, stage.skipped (with the reason) for one its `when` leaves
    out; a stage waiting for a need has no event yet."""
    run_id = start(estack, "when")
    estack.wait_run(run_id)
    events = wait_for("the run's events on sluice.events", lambda: (
        lambda es: es if es and es[-1]["type"] == "dev.sluice.run.finished" else None)(
            run_events(estack, run_id)), 10)
    first = events[:3]
    assert [(e["type"], e["subject"]) for e in first] == [
        ("dev.sluice.run.created", "runs/" + run_id),
        ("dev.sluice.stage.queued", "runs/%s/stages/build/attempts/1" % run_id),
        ("dev.sluice.stage.skipped", "runs/%s/stages/release/attempts/1" % run_id),
    ], json.dumps(events, indent=1)
    common = {"run": run_id, "pipeline": "when", "repository": OWNER + "/when",
              "sha": estack.repo.head, "ref": "refs/heads/main"}
    assert [e["data"] for e in first] == [
        dict(common, status="queued", event="push"),
        dict(common, stage="build", attempt=1),
        dict(common, stage="release", attempt=1,
             reason="when: branch main: when lists tags only"),
    ]
    for e in first:
        check_envelope(e)
        assert e["source"] == "sluice", e
        assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", e["id"]), e
    # One script, one moment: the same time, ids numbered in order.
    assert len({e["time"] for e in first}) == 1, first
    seqs = [int(e["id"].split("-")[1], 16) for e in first]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3, first


def test_the_events_a_worker_records_are_published_by_the_agent_in_order(estack, github):
    """Events have a stream of their own (outbox:events), which the agent
    holding its lease publishes in the order the scripts recorded them;
    a worker publishes its jobs and results, never events. So with the agent
    stopped while a worker runs a stage, the worker's run.started,
    stage.started and stage.finished wait in that stream and none reaches
    sluice.events; once the agent runs again they do, each once, in the
    order of their ids, after those the agent published before."""
    P = "sluice:"
    run_id = start(estack, "ordered")
    with Redis(estack.redis_port) as r:
        wait_for("the run's first events and job published", lambda: r.call(
            "XLEN", P + "outbox") == 0 and r.call("XLEN", P + "outbox:events") == 0, 10)
        first = [e["type"] for e in run_events(estack, run_id)]
        assert first == ["dev.sluice.run.created", "dev.sluice.stage.queued"], first

        os.kill(estack.agent.popen.pid, signal.SIGSTOP)
        try:
            worker = estack.start_worker("scan", 1, "events-scan")
            wait_for("the scan stage to finish", lambda: r.call(
                "HGET", P + "run:%s:stage:scan" % run_id, "status") == b"succeeded", 15)
            waiting = r.call("XLEN", P + "outbox:events")
            assert waiting >= 3, waiting
            assert [e["type"] for e in run_events(estack, run_id)] == first
        finally:
            os.kill(estack.agent.popen.pid, signal.SIGCONT)
        estack.procs.remove(worker)
        worker.stop()

        events = wait_for("run.finished on sluice.events", lambda: (
            lambda es: es if es and es[-1]["type"] == "dev.sluice.run.finished" else None)(
                run_events(estack, run_id)), 20)
        assert [e["type"][len("dev.sluice."):] for e in events] == [
            "run.created", "stage.queued", "run.started", "stage.started", "stage.finished",
            "run.finished"], json.dumps(events, indent=1)
        # Ids "<ms>-<sequence>" (hex): the sequence grows with every change.
        seqs = [int(e["id"].split("-")[1], 16) for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        wait_for("the events stream emptied", lambda: r.call(
            "XLEN", P + "outbox:events") == 0, 10)


def test_statuses_go_pending_then_success_for_every_stage_in_order(estack, github):
    run_id = start(estack, "ok")
    assert estack.wait_run(run_id)["status"] == "succeeded"
    reqs = wait_statuses(github, run_id, lambda rs: sum(
        r["body"]["state"] == "success" for r in rs) == 2)
    assert [(r["body"]["context"], r["body"]["state"]) for r in reqs] == [
        ("sluice/ok/build", "pending"), ("sluice/ok/build", "pending"),
        ("sluice/ok/build", "success"),
        ("sluice/ok/test", "pending"), ("sluice/ok/test", "pending"),
        ("sluice/ok/test", "success")]
    for r in reqs:
        assert r["path"] == "/repos/%s/ok/statuses/%s" % (OWNER, estack.repo.head), r
        assert r["headers"]["Authorization"] == "Bearer " + TOKEN
        assert r["headers"]["Accept"] == "application/vnd.github+json"
        assert r["headers"]["X-GitHub-Api-Version"] == "2022-11-28"
        assert r["headers"]["User-Agent"] == "sluice"
        assert r["body"]["target_url"] == "%s/runs/%s" % (estack.url, run_id)
        assert 0 < len(r["body"]["description"]) <= 140
    assert re.match(r"^succeeded in \d+(ms|s)$", reqs[2]["body"]["description"]), reqs[2]
    with open(os.path.join(estack.logdir, "agent.log")) as f:
        assert TOKEN not in f.read(), "the token was logged"


def test_a_status_answered_500_is_retried_until_github_takes_it(estack, github):
    with github.lock:
        github.scripts[OWNER + "/errors"] = [
            (500, {}, {"message": "Server Error"})] * 3
    run_id = start(estack, "errors")
    assert estack.wait_run(run_id)["status"] == "succeeded"
    reqs = wait_statuses(github, run_id, lambda rs: any(
        r["body"]["state"] == "success" for r in rs))
    assert [r["answered"] for r in reqs[:4]] == [500, 500, 500, 201]
    assert all(r["body"] == reqs[0]["body"] for r in reqs[:4]), "the same status, retried"
    states = [b["state"] for b in by_context(reqs)["sluice/errors/build"]]
    assert states == ["pending", "pending", "success"]


def test_a_rate_limited_status_waits_for_the_reset(estack, github):
    reset = math.ceil(time.time()) + 2
    with github.lock:
        github.scripts[OWNER + "/limited"] = [(403, {
            "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000", "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core"}, {
            "message": "API rate limit exceeded for user ID 1.",
            "documentation_url": "https://docs.github.com/rest/overview/"
                                 "resources-in-the-rest-api#rate-limiting"})]
    run_id = start(estack, "limited")
    assert estack.wait_run(run_id)["status"] == "succeeded"
    reqs = wait_statuses(github, run_id, lambda rs: any(
        r["body"]["state"] == "success" for r in rs), timeout=30)
    assert reqs[0]["answered"] == 403
    limited_at = reqs[0]["time"]
    with github.lock:
        later = [r for r in github.requests if r["time"] > limited_at]
    assert later and all(r["time"] >= reset for r in later), (
        reset, [r["time"] for r in later])
    assert later[0]["body"] == reqs[0]["body"]


def test_statuses_past_a_run_s_queue_while_github_is_down_keep_each_context_s_last(
        estack, github):
    """GitHub is down while a run of 60 stages posts 180 statuses, more
    than a run's queue holds: those dropped to make room are ones a later
    status of their context replaces, so once GitHub is back every stage's
    context ends at success."""
    github.stop()
    try:
        run_id = start(estack, "wide")
        assert estack.wait_run(run_id)["status"] == "succeeded"
    finally:
        github.start()
    contexts = {"sluice/wide/s%02d" % i for i in range(WIDE)}

    def all_final(rs):
        last = {}
        for r in rs:
            if r["answered"] == 201:
                last[r["body"]["context"]] = r["body"]["state"]
        return set(last) == contexts and set(last.values()) == {"success"}
    wait_statuses(github, run_id, all_final, timeout=60)


def test_a_wait_of_nothing_from_github_still_waits_the_back_off(estack, github):
    """GitHub asks for no wait at all: "Retry-After: 0" on a 503, or a
    rate limit whose reset is already past by the agent's clock. The status
    is posted again no sooner than github.backoff (100 ms here) later, not
    at once and again."""
    past = str(int(time.time()) - 60)
    with github.lock:
        github.scripts[OWNER + "/no-wait"] = [
            (503, {"Retry-After": "0"}, {"message": "Service Unavailable"}),
            (503, {"Retry-After": "0"}, {"message": "Service Unavailable"}),
            (403, {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                   "x-ratelimit-used": "5000", "x-ratelimit-reset": past,
                   "x-ratelimit-resource": "core"},
             {"message": "API rate limit exceeded for user ID 1."})]
    run_id = start(estack, "no-wait")
    assert estack.wait_run(run_id)["status"] == "succeeded"
    reqs = wait_statuses(github, run_id, lambda rs: any(
        r["body"]["state"] == "success" for r in rs))
    assert [r["answered"] for r in reqs[:4]] == [503, 503, 403, 201], reqs
    gaps = [b["time"] - a["time"] for a, b in zip(reqs[:4], reqs[1:4])]
    # A little less than 100 ms: the agent's timer and this clock differ.
    assert all(g >= 0.08 for g in gaps), gaps


def test_sighup_reads_the_token_again(estack, github):
    new_token = "ghp_" + "y2" * 18
    with open(os.path.join(estack.root, "pipelines.d", "github-token"), "w") as f:
        f.write(new_token + "\n")
    estack.agent.popen.send_signal(signal.SIGHUP)
    log = os.path.join(estack.logdir, "agent.log")
    wait_for("the reload", lambda: open(log).read().count("configuration reloaded") >= 1, 10,
             [estack.agent])
    run_id = start(estack, "ok")
    reqs = wait_statuses(github, run_id, lambda rs: sum(
        r["body"]["state"] == "success" for r in rs) == 2)
    assert {r["headers"]["Authorization"] for r in reqs} == {"Bearer " + new_token}
    assert new_token not in open(log).read(), "the token was logged"


def test_the_pipeline_ends_the_same_with_github_down(estack, github):
    github.stop()
    try:
        run_id = start(estack, "offline")
        run = estack.wait_run(run_id)
        assert run["status"] == "succeeded", run
        assert {s["status"] for s in run["stages"].values()} == {"succeeded"}, run
    finally:
        github.start()
    # Nothing was lost meanwhile: the statuses arrive once GitHub is back.
    reqs = wait_statuses(github, run_id, lambda rs: sum(
        r["body"]["state"] == "success" for r in rs) == 2)
    assert by_context(reqs)["sluice/offline/test"][-1]["state"] == "success"


def test_an_older_event_arriving_after_a_newer_one_posts_no_stale_status(estack, github):
    # An event whose delivery failed once is published again after those that
    # followed it, so an older one can reach sluice.events just after a
    # newer one. Produced here
    # directly, in that order, with the ids lib/events.lua writes
    # ("<ms>-<sequence>" in hex): the stage's success is posted and the
    # "running" recorded before it is not.
    run_id = "r_0123456789abcdef01234567"
    data = {"run": run_id, "pipeline": "ok", "repository": OWNER + "/ok",
            "sha": estack.repo.head, "ref": "refs/heads/main", "stage": "build",
            "attempt": 1}

    def event(kind, seq, **more):
        return json.dumps({
            "specversion": "1.0", "id": "%x-%x" % (int(time.time() * 1000), seq),
            "source": "sluice", "type": "dev.sluice." + kind,
            "subject": "runs/%s/stages/build/attempts/1" % run_id,
            "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json",
            "data": dict(data, **more)}).encode()

    c = Client(estack.brokers)
    try:
        for value in (event("stage.queued", 0x7000),
                      event("stage.finished", 0x9002, status="succeeded", duration_ms=5),
                      event("stage.started", 0x9001, status="running")):
            err, _ = c.produce("sluice.events", run_id.encode(), value)
            assert err == 0
    finally:
        c.close()
    wait_statuses(github, run_id, lambda rs: any(r["body"]["state"] == "success" for r in rs))
    # The agent handles a partition's events in order: once it has logged
    # the third as skipped, nothing more of this run is coming.
    log = os.path.join(estack.logdir, "agent.log")
    wait_for("the stale event skipped", lambda: any(
        "commit status skipped" in line and run_id in line
        and "a newer event for this context came first" in line
        for line in open(log)), 10, [estack.agent])
    states = [(b["state"], b["description"]) for b in by_context(
        github.of_run(run_id))["sluice/ok/build"]]
    assert states == [("pending", "queued"), ("success", "succeeded in 5ms")], states


def test_a_github_that_never_answers_holds_no_status_past_give_up_after():
    # A GitHub that takes the connection and never answers: a status is
    # given up after give_up_after (3 s here), not after a 30 s request,
    # and the run's statuses behind it, already as old, are not each held
    # another 30 s.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    stacks = started_stack(
        "sluice-events-silent-", lambda repo, root: {"ok.yaml": pipelines(repo)["ok.yaml"]},
        extra_secrets={"github-token": TOKEN + "\n"},
        extra_settings={"github": {"api_url": "http://127.0.0.1:%d/" % silent.getsockname()[1],
                                   "token_file": "pipelines.d/github-token",
                                   "backoff": "100ms", "give_up_after": "3s"}})
    stack = next(stacks)
    try:
        run_id = start(stack, "ok")
        assert stack.wait_run(run_id)["status"] == "succeeded"
        wait_for("the last status given up", lambda: [
            line for line in stack.agent_log_lines("commit status dropped")
            if run_id in line and "context=sluice/ok/test state=success" in line],
            15, [stack.agent])
        dropped = [line for line in stack.agent_log_lines("commit status dropped")
                   if run_id in line]
        assert "tries=1" in dropped[0], dropped
        # Each queued within a second or so of the first, none is held
        # by a request of its own (30 s each before).
        times = [datetime.datetime.strptime(re.match(r"ts=(\S+)Z", line).group(1),
                                            "%Y-%m-%dT%H:%M:%S.%f") for line in dropped]
        assert (times[-1] - times[0]).total_seconds() < 10, dropped
    finally:
        next(stacks, None)
        silent.close()


# Last: the limit holds every status of the stack for a minute.
def test_a_secondary_rate_limit_holds_statuses_a_minute_and_drops_none(estack, github):
    # GitHub's answer when content is created too fast: a 403 whose message
    # says so, with the primary limit far from exhausted and no Retry-After.
    # GitHub asks to wait a minute at least then, not to give up.
    with github.lock:
        github.scripts[OWNER + "/secondary"] = [(403, {
            "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4990",
            "x-ratelimit-used": "10", "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core"}, {
            "message": "You have exceeded a secondary rate limit and have been temporarily "
                       "blocked from content creation. Please retry your request again later.",
            "documentation_url": "https://docs.github.com/rest/overview/"
                                 "rate-limits-for-the-rest-api"})]
    run_id = start(estack, "secondary")
    assert estack.wait_run(run_id)["status"] == "succeeded"
    wait_statuses(github, run_id, lambda rs: rs and rs[0]["answered"] == 403)
    log = os.path.join(estack.logdir, "agent.log")
    retry = wait_for("the status held", lambda: [
        line for line in open(log) if run_id in line
        and ("will retry" in line or "commit status dropped" in line)], 10, [estack.agent])
    assert "will retry" in retry[0], retry
    wait_ms = int(re.search(r"retry_ms=(\d+)", retry[0]).group(1))
    assert wait_ms >= 60000, retry
    time.sleep(2)
    assert [r["answered"] for r in github.of_run(run_id)] == [403]
